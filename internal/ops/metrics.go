package ops

import (
	"strconv"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/routing"
)

// Namespace prefixes every metric of the mesh node ("mesh_...").
const Namespace = "mesh"

// NewRegistry returns a fresh registry holding the Go runtime, process and
// build information collectors, for a program to add its own to. It is
// never the global default registry.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
	)
	return reg
}

// Node is what NodeCollector reads of a mesh node; *node.Node implements it.
type Node interface {
	ID() uuid.UUID
	Epoch() uint64
	Stats() node.Stats
	Neighbors() []uuid.UUID
	Topology() routing.Topology
}

var _ Node = (*node.Node)(nil)

// counterDesc is one node.Stats counter as a Prometheus counter.
type counterDesc struct {
	desc  *prometheus.Desc
	value func(node.Stats) uint64
	label string // the value of the desc's one variable label, if it has one
}

// NodeCollector exports a node's public counters (node.Stats) and the shape
// of its view of the mesh (node.Topology) at every scrape. It implements
// prometheus.Collector.
type NodeCollector struct {
	n        Node
	counters []counterDesc
	info     *prometheus.Desc
	gauges   struct {
		neighbors, known, reachable, diameter, version *prometheus.Desc
	}
}

// NewNodeCollector returns a collector for n. Register it once per node.
func NewNodeCollector(n Node) *NodeCollector {
	c := &NodeCollector{n: n}
	name := func(s string) string { return prometheus.BuildFQName(Namespace, "", s) }
	counter := func(metric, help string, value func(node.Stats) uint64) {
		c.counters = append(c.counters, counterDesc{desc: prometheus.NewDesc(name(metric), help, nil, nil), value: value})
	}
	dropped := prometheus.NewDesc(name("frames_dropped_total"),
		"Frames this node dropped, by reason: forward_buffer_full (a neighbour's forwarding buffer was full), no_route, hop_limit.",
		[]string{"reason"}, nil)
	counter("frames_received_total", "Frames received from neighbours.", func(s node.Stats) uint64 { return s.FramesIn })
	counter("frames_sent_total", "Frames queued to neighbours.", func(s node.Stats) uint64 { return s.FramesOut })
	counter("frames_forwarded_total", "Frames relayed for other nodes.", func(s node.Stats) uint64 { return s.Forwarded })
	c.counters = append(c.counters,
		counterDesc{desc: dropped, label: "forward_buffer_full", value: func(s node.Stats) uint64 { return s.DroppedForward }},
		counterDesc{desc: dropped, label: "no_route", value: func(s node.Stats) uint64 { return s.DroppedNoRoute }},
		counterDesc{desc: dropped, label: "hop_limit", value: func(s node.Stats) uint64 { return s.DroppedHopLimit }},
	)
	counter("hostile_frames_total", "Malformed, invalid, forged or oversized frames from neighbours, dropped.", func(s node.Stats) uint64 { return s.Hostile })
	counter("auth_failures_total", "Handshakes refused, on either side, for want of a proved cluster secret or identity.", func(s node.Stats) uint64 { return s.AuthFailures })
	counter("handshakes_refused_total", "Incoming edges closed at once because too many handshakes were under way.", func(s node.Stats) uint64 { return s.HandshakesRefused })
	counter("forged_frames_total", "Hostile frames not signed or sealed by the node they claim to come from (closed clusters).", func(s node.Stats) uint64 { return s.Forged })
	counter("rate_limited_total", "Control frames dropped over a neighbour's rate limits (bulk link-state requests, or any beyond the control limit).", func(s node.Stats) uint64 { return s.RateLimited })
	counter("messages_delivered_total", "Messages handed to the application.", func(s node.Stats) uint64 { return s.Delivered })
	counter("duplicate_frames_total", "Data frames received again and dropped.", func(s node.Stats) uint64 { return s.Duplicates })
	counter("retransmissions_total", "End-to-end retransmissions.", func(s node.Stats) uint64 { return s.Retransmits })
	counter("delivery_failures_total", "Messages reported as failed (retry budget spent, destination gone, sender closed).", func(s node.Stats) uint64 { return s.Failed })
	counter("events_dropped_total", "Node events lost because the application did not drain them.", func(s node.Stats) uint64 { return s.EventsDropped })
	counter("neighbors_up_total", "Edges established.", func(s node.Stats) uint64 { return s.NeighborsUp })
	counter("neighbors_down_total", "Edges lost.", func(s node.Stats) uint64 { return s.NeighborsDown })
	counter("link_state_frames_sent_total", "Link-state frames sent (network_state, its request, new_edge, destroy_edge).", func(s node.Stats) uint64 { return s.TopologyFrames })

	c.info = prometheus.NewDesc(name("node_info"), "Always 1: the node's UUID and epoch (incarnation) as labels.", []string{"id", "epoch"}, nil)
	c.gauges.neighbors = prometheus.NewDesc(name("neighbors"), "Current direct neighbours.", nil, nil)
	c.gauges.known = prometheus.NewDesc(name("nodes_known"), "Nodes in the link-state database, this one included.", nil, nil)
	c.gauges.reachable = prometheus.NewDesc(name("nodes_reachable"), "Nodes with a route, this one included.", nil, nil)
	c.gauges.diameter = prometheus.NewDesc(name("diameter_hops"), "Longest shortest path between reachable nodes, in hops.", nil, nil)
	c.gauges.version = prometheus.NewDesc(name("routes_version"), "Version of the routing table; it changes whenever a route changes, so its rate is the rate of route changes.", nil, nil)
	return c
}

// Describe sends the descriptors of every metric the collector exports.
func (c *NodeCollector) Describe(ch chan<- *prometheus.Desc) {
	seen := map[*prometheus.Desc]bool{}
	for _, cd := range c.counters {
		if !seen[cd.desc] {
			seen[cd.desc] = true
			ch <- cd.desc
		}
	}
	for _, d := range []*prometheus.Desc{c.info, c.gauges.neighbors, c.gauges.known, c.gauges.reachable, c.gauges.diameter, c.gauges.version} {
		ch <- d
	}
}

// Collect reads the node's counters and topology and sends them.
func (c *NodeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.n.Stats()
	for _, cd := range c.counters {
		var labels []string
		if cd.label != "" {
			labels = []string{cd.label}
		}
		ch <- prometheus.MustNewConstMetric(cd.desc, prometheus.CounterValue, float64(cd.value(st)), labels...)
	}
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, c.n.ID().String(), formatUint(c.n.Epoch()))
	ch <- prometheus.MustNewConstMetric(c.gauges.neighbors, prometheus.GaugeValue, float64(len(c.n.Neighbors())))
	tp := c.n.Topology()
	reachable := 0
	for _, ni := range tp.Nodes {
		if ni.Distance >= 0 {
			reachable++
		}
	}
	ch <- prometheus.MustNewConstMetric(c.gauges.known, prometheus.GaugeValue, float64(len(tp.Nodes)))
	ch <- prometheus.MustNewConstMetric(c.gauges.reachable, prometheus.GaugeValue, float64(reachable))
	ch <- prometheus.MustNewConstMetric(c.gauges.diameter, prometheus.GaugeValue, float64(tp.Diameter()))
	ch <- prometheus.MustNewConstMetric(c.gauges.version, prometheus.GaugeValue, float64(tp.Version))
}

func formatUint(v uint64) string { return strconv.FormatUint(v, 10) }
