// Command hello is the example service: an HTTP server on :8080 whose
// /healthz answers 200, the probe that distroless images (no shell) need.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime"
)

func main() {
	addr := ":8080"
	if port := os.Getenv("PORT"); port != "" {
		addr = ":" + port
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		fmt.Fprintf(w, "ok %s/%s\n", runtime.GOOS, runtime.GOARCH)
	})
	log.Printf("hello listening on %s (%s/%s)", addr, runtime.GOOS, runtime.GOARCH)
	log.Fatal(http.ListenAndServe(addr, mux))
}
