package main

import (
	"errors"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/distrirender/distrirender/internal/ops"
	"github.com/distrirender/distrirender/meshapi"
	"github.com/distrirender/distrirender/node"
)

// daemonMetrics are the daemon's own metrics besides the node's
// (ops.NodeCollector): node events by kind, and the API's counters.
type daemonMetrics struct {
	events *prometheus.CounterVec
}

// newDaemonMetrics registers on reg the node's metrics and the daemon's.
func newDaemonMetrics(reg *prometheus.Registry, n *node.Node, api *meshapi.Server) *daemonMetrics {
	m := &daemonMetrics{events: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ops.Namespace, Name: "events_total",
		Help: "Node events by kind: neighbor-up, neighbor-down, topology-changed (a route changed), delivery-failed, connected, disconnected, redirected.",
	}, []string{"kind"})}
	// Every kind from 0, so that rate() works from the start; kinds added
	// to node later appear at their first event.
	for _, k := range []node.EventKind{node.NeighborUp, node.NeighborDown, node.TopologyChanged, node.DeliveryFailed, node.Connected, node.Disconnected, node.Redirected} {
		m.events.WithLabelValues(k.String())
	}
	stat := func(f func(meshapi.APIStats) float64) func() float64 {
		return func() float64 { return f(api.Stats()) }
	}
	reg.MustRegister(
		ops.NewNodeCollector(n),
		m.events,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "meshapi", Name: "streams",
			Help: "Open GET /v1/recv streams."}, stat(func(s meshapi.APIStats) float64 { return float64(s.Subscribers) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "meshapi", Name: "received_total",
			Help: "Messages the API took from the node."}, stat(func(s meshapi.APIStats) float64 { return float64(s.Received) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "meshapi", Name: "unsubscribed_total",
			Help: "Received messages that no stream was open to take."}, stat(func(s meshapi.APIStats) float64 { return float64(s.Unsubscribed) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "meshapi", Name: "stream_dropped_total",
			Help: "Messages and events dropped because a stream read too slowly."}, stat(func(s meshapi.APIStats) float64 { return float64(s.StreamDropped) })),
	)
	return m
}

// event counts e.
func (m *daemonMetrics) event(e node.Event) {
	m.events.WithLabelValues(e.Kind.String()).Inc()
}

// probes are the daemon's answers to /healthz and /readyz.
type probes struct {
	closed  atomic.Bool // the node is shutting down
	joining bool        // the daemon was told to join (--join or --discover)
	n       *node.Node
}

var (
	errShuttingDown = errors.New("meshnode: shutting down")
	errNoNeighbours = errors.New("meshnode: not joined: no neighbours yet")
)

// live fails once the daemon is shutting down.
func (p *probes) live() error {
	if p.closed.Load() {
		return errShuttingDown
	}
	return nil
}

// ready fails while a node that was told to join has no neighbour. A node
// with nowhere to join (the first of a cluster) is ready alone.
func (p *probes) ready() error {
	if p.joining && len(p.n.Neighbors()) == 0 {
		return errNoNeighbours
	}
	return nil
}
