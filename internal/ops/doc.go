// Package ops is what the programs share for being operated: the version
// line of --version from the binary's build information, a Prometheus
// collector of a mesh node's public counters and state, and the operations
// endpoints (/metrics, /healthz, /readyz and, when asked for, pprof).
//
// Nothing here is global: each program makes its own prometheus.Registry
// (NewRegistry), registers what it exports, and mounts the endpoints on its
// own mux (Mount). A scrape reads the node's counters at that moment
// (NodeCollector): there is no goroutine and no copy to keep in step.
package ops
