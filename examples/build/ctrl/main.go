// Command ctrl is the control plane: it reports the desired replica count.
package main

import (
	"fmt"
	"net/http"

	"kiln.example/build/util"
)

func main() {
	util.RunServiceCommand(util.Service{
		Name:     "ctrl",
		Defaults: util.Config{"replicas": "3"},
		Register: func(mux *http.ServeMux, cfg util.Config) error {
			mux.HandleFunc("/replicas", func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintln(w, cfg.Get("replicas"))
			})
			return nil
		},
	})
}
