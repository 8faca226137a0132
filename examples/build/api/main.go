// Command api is the public API: JSON under /api/, reached through the gateway.
package main

import (
	"encoding/json"
	"net/http"
	"runtime"

	"kiln.example/build/util"
)

func main() {
	util.RunServiceCommand(util.Service{
		Name:     "api",
		Defaults: util.Config{"greeting": "hello from api"},
		Register: func(mux *http.ServeMux, cfg util.Config) error {
			mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(map[string]string{
					"service":  "api",
					"path":     r.URL.Path,
					"message":  cfg.Get("greeting"),
					"platform": runtime.GOOS + "/" + runtime.GOARCH,
				})
			})
			return nil
		},
	})
}
