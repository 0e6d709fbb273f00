package memory

import (
	"context"
	"fmt"

	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/internal/edgeset"
)

// acceptBacklog is the number of dialled edges that wait for Accept before
// Dial blocks.
const acceptBacklog = 128

var _ transport.Transport = (*Transport)(nil)

// Transport is one address on a Network. It implements transport.Transport
// and is safe for concurrent use.
type Transport struct {
	net  *Network
	addr string
	// edges are this transport's sides of its open edges, and the ones
	// dialled to it that wait for Accept; closed by Close or Kill.
	edges *edgeset.Set[*Edge]
}

// Dial opens an edge to the transport listening at addr. It fails with an
// error wrapping transport.ErrUnreachable if nothing listens there or the link
// is cut or partitioned, and with ctx's error if the listener's accept backlog
// stays full until ctx ends. The edge is ready to carry frames when Dial
// returns, even before the other side calls Accept.
func (t *Transport) Dial(ctx context.Context, addr string) (transport.Edge, error) {
	if t.edges.Closed() {
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
	if !t.edges.Track(local) {
		c.abort()
		return nil, t.errClosed("Dial")
	}
	if !dst.edges.Track(remote) {
		c.abort()
		return nil, fmt.Errorf("memory: dial %q: listener closed: %w", addr, transport.ErrUnreachable)
	}
	select {
	case dst.edges.Queue() <- remote:
		return local, nil
	default:
	}
	select {
	case dst.edges.Queue() <- remote:
		return local, nil
	case <-ctx.Done():
		c.abort()
		return nil, ctx.Err()
	case <-dst.edges.Done():
		c.abort()
		return nil, fmt.Errorf("memory: dial %q: listener closed: %w", addr, transport.ErrUnreachable)
	case <-t.edges.Done():
		c.abort()
		return nil, t.errClosed("Dial")
	}
}

// Accept waits for the next edge dialled to this transport. It returns an
// error wrapping transport.ErrClosed once the transport is closed, and ctx's
// error if ctx ends first.
func (t *Transport) Accept(ctx context.Context) (transport.Edge, error) {
	return t.edges.Accept(ctx, t.errClosed)
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

	edges, _ := t.edges.Close() // none if t was closed already
	for _, e := range edges {
		e.shutdown(kill)
	}
}

func (t *Transport) errClosed(op string) error {
	return fmt.Errorf("memory: %s on %q: %w", op, t.addr, transport.ErrClosed)
}
