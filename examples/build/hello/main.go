// Command hello is the example service: an HTTP server on :8080 whose
// /healthz answers 200, the probe that distroless images (no shell) need.
package main

import (
	"crypto/x509"
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
	// /whoami shows what the base image gives the service: its user and the
	// CA bundle that Go's TLS client trusts.
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		roots := 0
		if pool, err := x509.SystemCertPool(); err == nil {
			roots = len(pool.Subjects()) //nolint:staticcheck // a count is all we need
		}
		fmt.Fprintf(w, "uid=%d gid=%d ca_roots=%d\n", os.Getuid(), os.Getgid(), roots)
	})
	log.Printf("hello listening on %s (%s/%s)", addr, runtime.GOOS, runtime.GOARCH)
	log.Fatal(http.ListenAndServe(addr, mux))
}
