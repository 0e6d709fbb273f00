package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/distrirender/distrirender/internal/ops"
	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/render"
)

// opsFlags are the worker's operations flags: --metrics and --pprof.
type opsFlags struct {
	metrics string
	pprof   bool
}

func (o *opsFlags) register(fs interface {
	StringVar(p *string, name, value, usage string)
	BoolVar(p *bool, name string, value bool, usage string)
}) {
	fs.StringVar(&o.metrics, "metrics", "", "serve /metrics (Prometheus), /healthz and /readyz on TCP `HOST:PORT`, e.g. 127.0.0.1:9464 (default: none)")
	fs.BoolVar(&o.pprof, "pprof", false, "with --metrics, also serve the Go runtime profiles under /debug/pprof/ (keep that address private)")
}

func (o *opsFlags) validate() error {
	if o.metrics == "" {
		if o.pprof {
			return usagef("--pprof is served on the --metrics address: give --metrics too")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(o.metrics); err != nil {
		return usagef("--metrics %q: want HOST:PORT, such as 127.0.0.1:9464", o.metrics)
	}
	return nil
}

// errNotJoined is /readyz's answer while a worker told to join has no
// neighbour.
var errNotJoined = errors.New("distrirender: not joined: no neighbours")

// serveOps serves the worker's operations endpoints on ln until ctx ends;
// call the returned function after that to wait for the server.
func serveOps(ctx context.Context, ln net.Listener, pprof bool, n *node.Node, w *render.Worker, joining bool) func() {
	reg := ops.NewRegistry()
	stat := func(f func(render.WorkerStats) float64) func() float64 {
		return func() float64 { return f(w.Stats()) }
	}
	counter := func(name, help string, f func(render.WorkerStats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "distrirender", Subsystem: "worker", Name: name, Help: help}, stat(f))
	}
	reg.MustRegister(
		ops.NewNodeCollector(n),
		counter("jobs_total", "Jobs the worker took part in.", func(s render.WorkerStats) float64 { return float64(s.Jobs) }),
		counter("tiles_total", "Tiles the worker rendered and sent.", func(s render.WorkerStats) float64 { return float64(s.Tiles) }),
		counter("render_seconds_total", "Time spent rendering tiles, summed over the worker's slots.", func(s render.WorkerStats) float64 { return s.Render.Seconds() }),
		counter("declined_jobs_total", "Jobs the worker refused.", func(s render.WorkerStats) float64 { return float64(s.Declined) }),
		counter("ignored_messages_total", "Job messages that were malformed or out of place.", func(s render.WorkerStats) float64 { return float64(s.Ignored) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "distrirender", Subsystem: "worker", Name: "active_jobs", Help: "Jobs the worker holds now."},
			stat(func(s render.WorkerStats) float64 { return float64(s.Active) })),
	)
	mux := http.NewServeMux()
	ops.Mount(mux, ops.Endpoints{Registry: reg, Pprof: pprof, Ready: func() error {
		if joining && len(n.Neighbors()) == 0 {
			return errNotJoined
		}
		return nil
	}})
	return ops.Serve(ctx, ln, mux)
}

// listenOps opens the --metrics listener before anything else starts, so
// that a taken port fails the command at once.
func listenOps(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics: %w", err)
	}
	return ln, nil
}
