// Package transport defines the two small interfaces every mesh transport
// implements: a Transport dials and accepts Edges, and an Edge carries whole
// frames to and from one neighbour.
//
// Edges are message-oriented: one Send is one Receive on the other side, never
// split or merged. Stream-based transports (QUIC, libp2p) put length-prefixed
// framing over their streams; the memory transport passes frames as they are.
//
// Delivery on an Edge is best-effort: a transport may lose, duplicate, reorder
// or delay frames (the memory transport does so on purpose). Everything above
// (routing, end-to-end reliability) is built to survive that.
package transport

import (
	"context"
	"errors"
)

// Errors that transports return, wrapped with %w where more context helps.
var (
	// ErrClosed is returned by every call on a closed Transport or Edge.
	ErrClosed = errors.New("transport: closed")
	// ErrFrameTooLarge is returned by Send for a frame over the transport's limit.
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrUnreachable is returned by Dial when nothing answers at the address.
	ErrUnreachable = errors.New("transport: address unreachable")
)

// DefaultMaxFrame is the largest frame a transport accepts unless configured
// otherwise: 1 MiB of body plus a header.
const DefaultMaxFrame = 1<<20 + 1024

// Transport makes Edges: outgoing by Dial, incoming by Accept.
//
// All methods are safe for concurrent use.
type Transport interface {
	// Dial opens an edge to the transport listening at addr.
	// It returns when the edge is ready to carry frames, or ctx ends.
	Dial(ctx context.Context, addr string) (Edge, error)
	// Accept waits for the next incoming edge. It returns ErrClosed once the
	// Transport is closed.
	Accept(ctx context.Context) (Edge, error)
	// Addrs returns the addresses at which other transports can dial this one.
	Addrs() []string
	// Close stops accepting and closes every edge this transport made.
	// Pending Accept calls return ErrClosed.
	Close() error
}

// Edge is a frame-oriented connection to one neighbour.
//
// Send and Receive may be called concurrently with each other and with Close;
// at most one goroutine should Send and at most one should Receive at a time.
type Edge interface {
	// Send transmits one frame. The transport does not retain frame after Send
	// returns, so the caller may reuse it. Send may block for flow control;
	// it returns when ctx ends, with ctx's error.
	Send(ctx context.Context, frame []byte) error
	// Receive returns the next frame. The returned slice belongs to the caller.
	// After the edge is closed, by either side, Receive returns an error
	// wrapping ErrClosed (or the transport's own error for a broken link).
	Receive(ctx context.Context) ([]byte, error)
	// Close closes the edge. Frames sent before Close are delivered before
	// the other side sees the close (so a last goodbye or reject arrives);
	// after them the other side's Receive fails, unless the link is broken
	// in a way the transport cannot see.
	Close() error
	// LocalAddr is this side's address of the edge.
	LocalAddr() string
	// RemoteAddr is the other side's address of the edge.
	RemoteAddr() string
}

// BatchSender is an optional capability of an Edge: it sends several frames
// as one batch, which a stream transport writes with one buffered write
// (each frame still length-prefixed, so that the peer's Receive returns
// them one by one, in order), where a loop of Send would write them one by
// one. Callers discover it with a type assertion; SendBatch falls back to
// such a loop for edges without it.
//
// SendBatch follows Send's contract for every frame of the batch: the frames
// are delivered in order, as if sent by consecutive Sends, and the transport
// keeps none of them once it returns. It refuses a batch holding a frame over
// the transport's limit with an error wrapping ErrFrameTooLarge, before
// sending any of it. It returns ctx's error if ctx ends first (a batch cut
// short after part of it went out leaves the edge closed, as a Send cut
// short mid-frame does), and an error wrapping ErrClosed once the edge is
// closed. It is serialized with Send.
type BatchSender interface {
	SendBatch(ctx context.Context, frames [][]byte) error
}

// BufferReceiver is an optional capability of an Edge: it reads the next
// frame into a buffer the caller supplies, so that a caller that reuses its
// buffers (a pool, or one buffer it reads every frame into) saves the
// allocation Receive makes for every frame, which at tens of KiB per frame
// costs more than the transport itself. Callers discover it with a type
// assertion; ReceiveBuffer falls back to Receive for edges without it.
//
// ReceiveBuffer(ctx, buf) is Receive(ctx), with one difference: once the edge
// knows the frame's length n, it calls buf(n) and reads the frame into the
// slice buf returns, and that slice is the frame it returns. A slice whose
// length is not n is not used (the edge allocates one instead). A call cut
// short by ctx keeps the slice, and the call that completes the frame returns
// it without calling its own buf for that frame. Once ReceiveBuffer has
// returned a frame the transport keeps no reference to it: the caller may
// reuse it at once.
type BufferReceiver interface {
	ReceiveBuffer(ctx context.Context, buf func(n int) []byte) ([]byte, error)
}

// ReceiveBuffer receives the next frame on e into a slice buf returns, when e
// is a BufferReceiver, and with Receive otherwise.
func ReceiveBuffer(ctx context.Context, e Edge, buf func(n int) []byte) ([]byte, error) {
	if r, ok := e.(BufferReceiver); ok {
		return r.ReceiveBuffer(ctx, buf)
	}
	return e.Receive(ctx)
}

// FrameBuffer returns the slice a BufferReceiver reads an n-byte frame into:
// buf(n) when buf is not nil and returns a slice of length n, and a new slice
// otherwise. It is for transports.
func FrameBuffer(buf func(n int) []byte, n int) []byte {
	if buf != nil {
		if b := buf(n); len(b) == n && b != nil {
			return b
		}
	}
	return make([]byte, n)
}

// SendBatch sends frames on e in order: with one call of e's SendBatch if e
// is a BatchSender, otherwise with one Send per frame, stopping at the first
// error.
func SendBatch(ctx context.Context, e Edge, frames [][]byte) error {
	if b, ok := e.(BatchSender); ok {
		return b.SendBatch(ctx, frames)
	}
	for _, f := range frames {
		if err := e.Send(ctx, f); err != nil {
			return err
		}
	}
	return nil
}
