package ops

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Endpoints configures Mount.
type Endpoints struct {
	// Registry is what /metrics serves; nil serves no /metrics.
	Registry *prometheus.Registry
	// Live, if set, reports whether the program is alive (/healthz); an
	// error answers 503 with it. nil: alive while it answers at all.
	Live func() error
	// Ready, if set, reports whether the program can do its work
	// (/readyz); an error answers 503 with it. nil: ready when alive.
	Ready func() error
	// Pprof mounts the runtime profiles under /debug/pprof/. They show the
	// program's memory and command line and cost CPU while profiling: keep
	// them off, or on loopback.
	Pprof bool
	// Timeout bounds a scrape of /metrics. Zero means 10 seconds.
	Timeout time.Duration
}

// Handler is the one method of *http.ServeMux that Mount uses.
type Handler interface {
	Handle(pattern string, h http.Handler)
}

// Routes returns the patterns Mount registers for e, for documents and
// tests that list a server's routes (the pprof profiles as one).
func Routes(e Endpoints) []string {
	var r []string
	if e.Registry != nil {
		r = append(r, "GET /metrics")
	}
	r = append(r, "GET /healthz", "GET /readyz")
	if e.Pprof {
		r = append(r, "GET /debug/pprof/")
	}
	return r
}

// Mount registers the operations endpoints on mux:
//
//	GET /metrics        Prometheus text exposition of e.Registry
//	GET /healthz        200 {"status":"ok"} while alive, else 503 {"status":"down","error":...}
//	GET /readyz         200 {"status":"ready"} when ready, else 503 {"status":"not ready","error":...}
//	GET /debug/pprof/   the runtime profiles (only with e.Pprof)
func Mount(mux Handler, e Endpoints) {
	if e.Registry != nil {
		timeout := e.Timeout
		if timeout <= 0 {
			timeout = 10 * time.Second
		}
		mux.Handle("GET /metrics", promhttp.HandlerFor(e.Registry, promhttp.HandlerOpts{Timeout: timeout, ErrorHandling: promhttp.ContinueOnError}))
	}
	mux.Handle("GET /healthz", probe(e.Live, nil, "ok", "down"))
	mux.Handle("GET /readyz", probe(e.Live, e.Ready, "ready", "not ready"))
	if e.Pprof {
		// Registered one by one on this mux: importing net/http/pprof also
		// registers them on http.DefaultServeMux, which no program serves.
		mux.Handle("GET /debug/pprof/", http.HandlerFunc(pprof.Index))
		mux.Handle("GET /debug/pprof/cmdline", http.HandlerFunc(pprof.Cmdline))
		mux.Handle("GET /debug/pprof/profile", http.HandlerFunc(pprof.Profile))
		mux.Handle("GET /debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
		mux.Handle("GET /debug/pprof/trace", http.HandlerFunc(pprof.Trace))
	}
}

// ProbeResult is the JSON body of /healthz and /readyz.
type ProbeResult struct {
	// Status is "ok" or "down" (/healthz), "ready" or "not ready" (/readyz).
	Status string `json:"status"`
	// Error says why the probe failed.
	Error string `json:"error,omitempty"`
}

// probe answers with the first failing check of live and ready.
func probe(live, ready func() error, ok, failed string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, code := ProbeResult{Status: ok}, http.StatusOK
		for _, check := range []func() error{live, ready} {
			if check == nil {
				continue
			}
			if err := check(); err != nil {
				res, code = ProbeResult{Status: failed, Error: err.Error()}, http.StatusServiceUnavailable
				break
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(res)
	})
}

// Serve serves h on ln until ctx ends, for a program whose only HTTP server
// is the operations one (distrirender worker --metrics), then shuts the
// server down. The function it returns waits for that; call it after ctx
// has ended.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) (wait func()) {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(ln)
	}()
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if hs.Shutdown(sctx) != nil {
			hs.Close()
		}
	})
	return func() {
		<-done
		stop()
	}
}
