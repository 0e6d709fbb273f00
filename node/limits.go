package node

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/distrirender/distrirender/transport"
)

// Limits on incoming edges that have not completed their handshake. Each
// holds a goroutine and the transport's buffers for up to the handshake
// timeout, so a host re-opening idle connections could otherwise grow the
// node without bound (issue 13 saw 0.6–1.08 GB under 500 connections a
// second) and starve real joins.
const (
	// DefaultMaxHandshakes bounds the handshakes under way at once, from
	// all sources: a joining cluster of a few hundred nodes never needs
	// more, and each costs a few KiB before it completes.
	DefaultMaxHandshakes = 128
	// DefaultMaxHandshakesPerSource bounds those from one source host (the
	// remote address without its port): a node dials a given node once at
	// a time, so a few cover retries and several nodes behind one NAT.
	DefaultMaxHandshakesPerSource = 8
)

// WithHandshakeLimits sets how many incoming handshakes may be under way at
// once, in all (default 128) and from one source host (default 8; loopback
// addresses are not limited per source). An edge beyond either is closed at
// once, counted in Stats.HandshakesRefused.
func WithHandshakeLimits(total, perSource int) Option {
	return func(c *config) error {
		if total < 1 || perSource < 1 || perSource > total {
			return fmt.Errorf("%w: handshake limits %d in all, %d per source", ErrInvalidOption, total, perSource)
		}
		c.maxHandshakes, c.maxPerSource = total, perSource
		return nil
	}
}

// helloWait is how long an incoming edge may stay silent before its hello:
// half the handshake timeout (2.5 s by default). A dialler says hello as
// soon as its loop answers (which takes a while on a loaded node: a fifth
// of the timeout slowed the 50-node join test under -race) and again after
// 100, 200, 400 ms..., so on a link that loses frames some copy arrives
// well within it.
func helloWait(handshake time.Duration) time.Duration { return handshake / 2 }

// gate counts the incoming handshakes under way, in all and per source.
type gate struct {
	mu        sync.Mutex
	total     int
	bySource  map[string]int
	max, each int
}

func newGate(max, each int) *gate {
	return &gate{bySource: make(map[string]int), max: max, each: each}
}

// source is the host part of a remote address, or the whole address for a
// transport whose addresses have no port. Loopback addresses are no
// source: many nodes of one machine (tests, demos) dial from there, and no
// host on the network can send from them.
func source(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return ""
	}
	return host
}

// enter reserves a place for a handshake from src ("": only the total
// applies), or reports false.
func (g *gate) enter(src string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.total >= g.max || src != "" && g.bySource[src] >= g.each {
		return false
	}
	g.total++
	g.bySource[src]++
	return true
}

// leave frees the place of a handshake from src.
func (g *gate) leave(src string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total--
	if g.bySource[src]--; g.bySource[src] <= 0 {
		delete(g.bySource, src)
	}
}

// refuseEdge closes an incoming edge over the handshake limits.
func (n *Node) refuseEdge(e transport.Edge) {
	if c := n.refused.Add(1); c&(c-1) == 0 {
		n.log.Warn("too many handshakes under way: closing new edges", "remote", e.RemoteAddr(), "total", c)
	}
	e.Close()
}

// receiveFailed counts a Receive that failed because the other side
// announced a frame over the transport's limit: the edge ends, and the
// input was hostile (a length prefix of 4 GB is not an accident).
func (n *Node) receiveFailed(err error) {
	if errors.Is(err, transport.ErrFrameTooLarge) {
		n.hostileFrame(err)
	}
}
