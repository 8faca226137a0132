// A registry with the OCI Referrers API, for the supply_chain suite:
// go-containerregistry's pkg/registry (Debian's
// golang-github-google-go-containerregistry-dev) with referrers support on,
// which `crane registry serve` leaves off. Logs every request to stderr.
package main

import (
	"flag"
	"log"
	"net/http"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	addr := flag.String("address", "127.0.0.1:0", "host:port to listen on")
	flag.Parse()
	handler := registry.New(registry.WithReferrersSupport(true))
	log.Printf("listening on %s", *addr)
	log.Fatal(http.ListenAndServe(*addr, handler))
}
