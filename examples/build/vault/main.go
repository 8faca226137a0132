// Command vault hands out a fingerprint of its sealed key, never the key.
package main

import (
	"crypto/sha256"
	"fmt"
	"net/http"

	"kiln.example/build/util"
)

func main() {
	util.RunServiceCommand(util.Service{
		Name:     "vault",
		Defaults: util.Config{"key": "dev-only-key"},
		Register: func(mux *http.ServeMux, cfg util.Config) error {
			sum := sha256.Sum256([]byte(cfg.Get("key")))
			mux.HandleFunc("/fingerprint", func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "%x\n", sum[:8])
			})
			return nil
		},
	})
}
