package memory

import (
	"context"
	"fmt"
	"sync"

	"github.com/distrirender/distrirender/transport"
)

// acceptBacklog is the number of dialled edges that wait for Accept before
// Dial blocks.
const acceptBacklog = 128

var _ transport.Transport = (*Transport)(nil)

// Transport is one address on a Network. It implements transport.Transport
// and is safe for concurrent use.
type Transport struct {
	net    *Network
	addr   string
	accept chan *Edge
	done   chan struct{} // closed by Close or Kill

	mu     sync.Mutex
	closed bool
	edges  map[*Edge]struct{} // this transport's sides of its open edges
}

// Dial opens an edge to the transport listening at addr. It fails with an
// error wrapping transport.ErrUnreachable if nothing listens there or the link
// is cut or partitioned, and with ctx's error if the listener's accept backlog
// stays full until ctx ends. The edge is ready to carry frames when Dial
// returns, even before the other side calls Accept.
func (t *Transport) Dial(ctx context.Context, addr string) (transport.Edge, error) {
	if t.isClosed() {
		return nil, t.errClosed("Dial")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, dst, err := t.net.dial(t, addr)
	if err != nil {
		return nil, err
	}
	local, remote := c.sides[0], c.sides[1]
	if !t.track(local) {
		c.abort()
		return nil, t.errClosed("Dial")
	}
	if !dst.track(remote) {
		c.abort()
		return nil, fmt.Errorf("memory: dial %q: listener closed: %w", addr, transport.ErrUnreachable)
	}
	select {
	case dst.accept <- remote:
		return local, nil
	default:
	}
	select {
	case dst.accept <- remote:
		return local, nil
	case <-ctx.Done():
		c.abort()
		return nil, ctx.Err()
	case <-dst.done:
		c.abort()
		return nil, fmt.Errorf("memory: dial %q: listener closed: %w", addr, transport.ErrUnreachable)
	case <-t.done:
		c.abort()
		return nil, t.errClosed("Dial")
	}
}

// Accept waits for the next edge dialled to this transport. It returns an
// error wrapping transport.ErrClosed once the transport is closed, and ctx's
// error if ctx ends first.
func (t *Transport) Accept(ctx context.Context) (transport.Edge, error) {
	if t.isClosed() {
		return nil, t.errClosed("Accept")
	}
	select {
	case e := <-t.accept:
		return e, nil
	case <-t.done:
		return nil, t.errClosed("Accept")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Addrs returns the transport's one address, the name it listens at.
func (t *Transport) Addrs() []string { return []string{t.addr} }

// MaxFrame returns the largest frame its edges' Send accepts.
func (t *Transport) MaxFrame() int { return t.net.maxFrame }

// Close stops accepting, frees the address for a new Listen and closes every
// edge of the transport; their peers' Receive fails once drained. When Close
// returns, the delivery goroutines of those edges have stopped. Close is
// idempotent and returns nil.
func (t *Transport) Close() error {
	t.shutdown(false)
	return nil
}

// shutdown closes the transport, or kills it: its edges go silent for the
// peers instead of closing.
func (t *Transport) shutdown(kill bool) {
	// Free the address first: once the owner can see the transport closed,
	// it may Listen again at once.
	t.net.mu.Lock()
	if t.net.listeners[t.addr] == t {
		delete(t.net.listeners, t.addr)
	}
	t.net.mu.Unlock()

	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	close(t.done)
	edges := make([]*Edge, 0, len(t.edges))
	for e := range t.edges {
		edges = append(edges, e)
	}
	t.mu.Unlock()

	for _, e := range edges {
		e.shutdown(kill)
	}
}

func (t *Transport) isClosed() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

func (t *Transport) errClosed(op string) error {
	return fmt.Errorf("memory: %s on %q: %w", op, t.addr, transport.ErrClosed)
}

// track records e as one of t's edges, or reports false if t is closed.
func (t *Transport) track(e *Edge) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.edges[e] = struct{}{}
	return true
}

func (t *Transport) untrack(e *Edge) {
	t.mu.Lock()
	delete(t.edges, e)
	t.mu.Unlock()
}
