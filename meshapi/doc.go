// Package meshapi is the local HTTP JSON API of a mesh node, as the meshnode
// daemon serves it (Server), and a Go client for it (Client). Programs that
// talk to a running daemon import this package:
//
//	cl := meshapi.NewClient("127.0.0.1:7070")
//	st, err := cl.Status(ctx)                    // ID, neighbours, counters
//	_, err = cl.Send(ctx, peer, []byte("hello")) // queued for delivery: 202
//	err = cl.Stream(ctx, true, func(ev meshapi.StreamEvent) error {
//		... // "ready", then "message" and node events as they happen
//	})
//
// The API is unauthenticated: whoever can reach it can send messages as the
// node and read everything it receives. Serve it on loopback (the meshnode
// default) or behind something that authenticates. openapi.json in this
// directory describes it (and the server serves that document at
// GET /v1/openapi.json); docs/CLUSTER.md is the reference. In short:
//
//	GET  /v1/status        the node's ID, name, epoch, addresses, neighbours and counters
//	GET  /v1/topology      every node the link-state database knows, with names and routes
//	POST /v1/send          {"to": NODE, "body": text} or {"to": NODE, "body_base64": ...}
//	POST /v1/broadcast     {"body": text} or {"body_base64": ...}
//	GET  /v1/recv          Server-Sent Events: received messages; ?events=1 adds node events
//	POST /v1/connect       {"addr": "host:port"}: open an edge to the node at a transport address
//	GET  /v1/openapi.json  the OpenAPI 3.1 description of the API
//	GET  /v1/live          Server-Sent Events for the topology page: snapshots and node events
//	GET  /ui/              the live topology page (embedded, no external resources)
//
// NODE is a UUID, a unique prefix of one (at least 4 hex digits) or a
// unique node name, resolved against the node's topology (ResolveNode).
//
// Errors are JSON {"error": "..."} with a 4xx or 5xx status, unknown paths
// included (404), as are wrong methods (405, with Allow). POST bodies must
// be sent with Content-Type: application/json.
//
// Exactly one goroutine (Server.Run) calls the node's Receive and drains its
// Events; it fans both out to the open /v1/recv streams through a bounded
// buffer per stream. A stream that reads too slowly loses messages (counted,
// and announced to it by a "dropped" event); the node is never blocked.
package meshapi

import _ "embed" // openapi.json

// openAPI is the OpenAPI 3.1 document of the API (go:embed needs a package
// variable; OpenAPI hands out copies).
//
//go:embed openapi.json
var openAPI []byte

// topologyPage is the live topology page, GET /ui/.
//
//go:embed topology.html
var topologyPage []byte

// OpenAPI returns the OpenAPI 3.1 document that describes the API, as JSON.
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }
