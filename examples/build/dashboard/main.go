// Command dashboard serves the operators' page, titled from its config.
package main

import (
	"fmt"
	"html"
	"net/http"

	"kiln.example/build/util"
)

func main() {
	util.RunServiceCommand(util.Service{
		Name:     "dashboard",
		Defaults: util.Config{"title": "kiln dashboard"},
		Register: func(mux *http.ServeMux, cfg util.Config) error {
			mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "<!doctype html><title>%[1]s</title><h1>%[1]s</h1>\n", html.EscapeString(cfg.Get("title")))
			})
			return nil
		},
	})
}
