// Command gateway is the edge: /api/* goes to the api service, whose
// address comes from its config (api_addr).
package main

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"

	"kiln.example/build/util"
)

func main() {
	util.RunServiceCommand(util.Service{
		Name:     "gateway",
		Defaults: util.Config{"api_addr": "http://127.0.0.1:8081"},
		Register: func(mux *http.ServeMux, cfg util.Config) error {
			api, err := url.Parse(cfg.Get("api_addr"))
			if err != nil || api.Scheme == "" || api.Host == "" {
				return fmt.Errorf("api_addr: %q is not an http://host:port address", cfg.Get("api_addr"))
			}
			mux.Handle("/api/", httputil.NewSingleHostReverseProxy(api))
			return nil
		},
	})
}
