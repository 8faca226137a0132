// Command worker counts the jobs it has been handed (POST /jobs).
package main

import (
	"fmt"
	"net/http"
	"sync/atomic"

	"kiln.example/build/util"
)

func main() {
	var done atomic.Int64
	util.RunServiceCommand(util.Service{
		Name:     "worker",
		Defaults: util.Config{"queue": "default"},
		Register: func(mux *http.ServeMux, cfg util.Config) error {
			mux.HandleFunc("/jobs", func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost {
					done.Add(1)
				}
				fmt.Fprintf(w, "%s: %d jobs\n", cfg.Get("queue"), done.Load())
			})
			return nil
		},
	})
}
