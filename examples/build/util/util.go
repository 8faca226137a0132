// Package util is what every service's main.go calls: RunServiceCommand
// reads the service's settings (defaults, then a TOML file, then flags),
// serves /healthz next to the service's own routes, and shuts down
// gracefully on SIGTERM or SIGINT (what `docker stop` and Kubernetes send).
package util

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"syscall"
	"time"
)

// Config is a service's settings: flat keys ("listen", "api_addr"; a TOML
// table [t] prefixes its keys with "t.").
type Config map[string]string

// Get returns the setting, or "" when it is unset.
func (c Config) Get(key string) string { return c[key] }

// Service describes one service to RunServiceCommand.
type Service struct {
	// Name is the binary's name, in logs and /healthz.
	Name string
	// Defaults are the settings the service knows, with their defaults;
	// each is also a flag (-listen, -api_addr). "listen" is always there.
	Defaults Config
	// Register adds the service's routes.
	Register func(mux *http.ServeMux, cfg Config) error
}

// Version is the services' release; `<service> --version` prints it.
const Version = "0.1.0"

// VersionLine is what `<service> --version` prints: the name, Version, the
// Go release and the platform the binary was built for.
func VersionLine(name string) string {
	return fmt.Sprintf("%s %s (%s %s/%s)", name, Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// RunServiceCommand runs svc until SIGTERM or SIGINT, then drains it; it
// exits the process on a configuration or listen error. `--version` (or
// `-version`) prints VersionLine and exits.
func RunServiceCommand(svc Service) {
	if len(os.Args) == 2 && (os.Args[1] == "--version" || os.Args[1] == "-version") {
		fmt.Println(VersionLine(svc.Name))
		return
	}
	if err := run(svc, os.Args[1:]); err != nil {
		log.Fatalf("%s: %v", svc.Name, err)
	}
}

func run(svc Service, args []string) error {
	cfg, err := LoadConfig(svc.Name, svc.Defaults, args)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		fmt.Fprintf(w, "ok %s %s/%s\n", svc.Name, runtime.GOOS, runtime.GOARCH)
	})
	// /whoami shows what the base image gives the service: its user and
	// the CA bundle Go's TLS client trusts.
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		roots := 0
		if pool, err := x509.SystemCertPool(); err == nil {
			roots = len(pool.Subjects()) //nolint:staticcheck // a count is all we need
		}
		fmt.Fprintf(w, "uid=%d gid=%d ca_roots=%d\n", os.Getuid(), os.Getgid(), roots)
	})
	if svc.Register != nil {
		if err := svc.Register(mux, cfg); err != nil {
			return err
		}
	}
	srv := &http.Server{Addr: cfg.Get("listen"), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	log.Printf("%s listening on %s (%s/%s)", svc.Name, srv.Addr, runtime.GOOS, runtime.GOARCH)
	select {
	case err := <-served:
		return err
	case sig := <-stop:
		log.Printf("%s: %v: draining", svc.Name, sig)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// LoadConfig merges defaults, the TOML file of -config and the flags given
// (in that order of precedence, last wins).
func LoadConfig(name string, defaults Config, args []string) (Config, error) {
	cfg := Config{"listen": ":8080"}
	for k, v := range defaults {
		cfg[k] = v
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	configFile := fs.String("config", "", "TOML file with the service's settings")
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	values := map[string]*string{}
	for _, k := range keys {
		values[k] = fs.String(k, cfg[k], "setting "+k)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *configFile != "" {
		text, err := os.ReadFile(*configFile)
		if err != nil {
			return nil, err
		}
		fromFile, err := ParseTOML(string(text))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", *configFile, err)
		}
		for k, v := range fromFile {
			if _, known := cfg[k]; !known {
				return nil, fmt.Errorf("%s: unknown setting %q (known: %v)", *configFile, k, keys)
			}
			cfg[k] = v
		}
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "config" {
			cfg[f.Name] = *values[f.Name]
		}
	})
	return cfg, nil
}
