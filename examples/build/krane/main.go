// Command krane answers which registry it mirrors.
package main

import (
	"fmt"
	"net/http"

	"kiln.example/build/util"
)

func main() {
	util.RunServiceCommand(util.Service{
		Name:     "krane",
		Defaults: util.Config{"registry": "127.0.0.1:5000"},
		Register: func(mux *http.ServeMux, cfg util.Config) error {
			mux.HandleFunc("/registry", func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintln(w, cfg.Get("registry"))
			})
			return nil
		},
	})
}
