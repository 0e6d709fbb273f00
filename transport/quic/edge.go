package quic

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/distrirender/distrirender/transport"
)

// coalesceMax is the largest frame Send copies into one write together with
// its length. Larger frames are written in place after a separate length
// write: the copy would cost more than the extra call.
const coalesceMax = 4096

// readBuffer is the size of an edge's read buffer: small frames and length
// prefixes are read from it; larger frames are read straight into the slice
// Receive returns.
const readBuffer = 32 << 10

// aLongTimeAgo is a deadline in the past, to interrupt a blocked Read or
// Write.
var aLongTimeAgo = time.Unix(1, 0)

var _ transport.Edge = (*Edge)(nil)

// Edge is one QUIC connection with one stream, carrying length-prefixed
// frames. It implements transport.Edge: Send and Receive may run
// concurrently with each other and with Close; concurrent Sends are
// serialized, as are concurrent Receives.
type Edge struct {
	t             *Transport
	conn          *quicgo.Conn
	st            *quicgo.Stream
	local, remote string
	maxFrame      int

	closed atomic.Bool // no more Send or Receive: closed by either side
	once   sync.Once
	why    atomic.Pointer[string] // why the edge closed, for errors

	smu  sync.Mutex // serializes Send, and the FIN after it
	wbuf []byte     // small frames with their lengths, written at once
	wr   interrupter

	rmu   sync.Mutex // serializes Receive, and the drain after Close
	br    *bufio.Reader
	rhdr  [4]byte // the length of the frame being read
	rhn   int     // bytes of rhdr read
	frame []byte  // the frame being read, nil between frames
	rfn   int     // bytes of frame read
	rd    interrupter
}

func newEdge(t *Transport, conn *quicgo.Conn, st *quicgo.Stream) *Edge {
	e := &Edge{
		t:        t,
		conn:     conn,
		st:       st,
		local:    conn.LocalAddr().String(),
		remote:   conn.RemoteAddr().String(),
		maxFrame: t.maxFrame,
		br:       bufio.NewReaderSize(st, readBuffer),
	}
	e.wr.set = st.SetWriteDeadline
	e.rd.set = st.SetReadDeadline
	return e
}

// LocalAddr returns the local address of the edge's socket. For a transport
// bound to 0.0.0.0 or :: that is the unspecified address with the port.
func (e *Edge) LocalAddr() string { return e.local }

// RemoteAddr returns the address of the peer's socket, "ip:port".
func (e *Edge) RemoteAddr() string { return e.remote }

// String returns "local->remote".
func (e *Edge) String() string { return e.local + "->" + e.remote }

// Send writes frame, prefixed with its length, to the edge's stream. It
// keeps no reference to frame once it returns.
//
// It returns an error wrapping transport.ErrFrameTooLarge for a frame over
// MaxFrame (the edge stays usable), one wrapping transport.ErrClosed once
// the edge is closed by either side or broken, and ctx's error if ctx ends
// while Send waits for flow control. If ctx ends after part of the frame was
// written, the stream can no longer be parsed by the peer: the edge is
// closed (the frames sent before are still delivered) and Send returns ctx's
// error.
func (e *Edge) Send(ctx context.Context, frame []byte) error {
	one := [1][]byte{frame}
	return e.send(ctx, "Send", one[:])
}

// SendBatch writes frames, each prefixed with its length, to the edge's
// stream: small frames are gathered into one buffer and written together
// (up to batchBuffer bytes per write), so that quic-go packs them into as
// few packets as it can; a frame over coalesceMax is written in place after
// the buffer. It implements transport.BatchSender, with Send's errors; a
// batch holding a frame over MaxFrame is refused before any of it is
// written, and a batch cut short by ctx after any of it was written closes
// the edge.
func (e *Edge) SendBatch(ctx context.Context, frames [][]byte) error {
	return e.send(ctx, "SendBatch", frames)
}

var _ transport.BatchSender = (*Edge)(nil)

// batchBuffer is how many bytes of small frames SendBatch gathers before it
// writes them.
const batchBuffer = 64 << 10

func (e *Edge) send(ctx context.Context, op string, frames [][]byte) error {
	for _, f := range frames {
		if len(f) > e.maxFrame {
			return fmt.Errorf("quic: %s on edge %s: %d bytes over limit %d: %w", op, e, len(f), e.maxFrame, transport.ErrFrameTooLarge)
		}
	}
	if e.closed.Load() {
		return e.errClosed(op)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	e.smu.Lock()
	defer e.smu.Unlock()
	e.wr.watch(ctx)
	e.wr.reset()
	if e.closed.Load() { // checked after reset: a Close from now on interrupts the write
		return e.errClosed(op)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	started := false
	buf := e.wbuf[:0]
	defer func() {
		if cap(buf) <= 2*batchBuffer {
			e.wbuf = buf[:0]
		}
	}()
	for _, f := range frames {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(f)))
		if len(f) <= coalesceMax {
			buf = append(buf, f...)
			if len(buf) < batchBuffer {
				continue
			}
		}
		if err := e.write(ctx, buf, &started); err != nil {
			return err
		}
		buf = buf[:0]
		if len(f) > coalesceMax {
			if err := e.write(ctx, f, &started); err != nil {
				return err
			}
		}
	}
	if len(buf) == 0 {
		return nil
	}
	return e.write(ctx, buf, &started)
}

// write writes all of p, resuming after a stale interruption. started
// records whether any byte of the current frame went out.
func (e *Edge) write(ctx context.Context, p []byte, started *bool) error {
	for len(p) > 0 {
		n, err := e.st.Write(p)
		p = p[n:]
		if n > 0 {
			*started = true
		}
		if err == nil {
			continue
		}
		switch {
		case e.closed.Load():
			return e.errClosed("Send")
		case errors.Is(err, os.ErrDeadlineExceeded):
			if cerr := ctx.Err(); cerr != nil {
				if *started {
					e.shutdownWhy("a Send was interrupted mid-frame")
				}
				return cerr
			}
			e.wr.reset() // a stale interruption from an earlier context
		default:
			return e.fail("Send", err)
		}
	}
	return nil
}

// Receive returns the next frame, a new slice the caller owns.
//
// After the peer closes the edge it returns the frames sent before the
// close, then an error wrapping transport.ErrClosed; after this side closes
// it returns that error at once. A broken link (idle timeout, the peer's
// transport gone) and a peer that violates the framing also give an error
// wrapping transport.ErrClosed, which wraps the cause as well (quic-go's
// error, or transport.ErrFrameTooLarge for a frame over MaxFrame). In every
// such case the edge is closed. Receive returns ctx's error if ctx ends
// first; the edge stays usable, and a frame partly read is resumed by the
// next Receive.
func (e *Edge) Receive(ctx context.Context) ([]byte, error) {
	return e.receive(ctx, nil)
}

// ReceiveBuffer is Receive, reading the frame into buf(n) for a frame of n
// bytes. It implements transport.BufferReceiver.
func (e *Edge) ReceiveBuffer(ctx context.Context, buf func(n int) []byte) ([]byte, error) {
	return e.receive(ctx, buf)
}

var _ transport.BufferReceiver = (*Edge)(nil)

func (e *Edge) receive(ctx context.Context, buf func(int) []byte) ([]byte, error) {
	if e.closed.Load() {
		return nil, e.errClosed("Receive")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e.rmu.Lock()
	defer e.rmu.Unlock()
	e.rd.watch(ctx)
	e.rd.reset()
	if e.closed.Load() {
		return nil, e.errClosed("Receive")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for {
		f, err := e.readFrame(buf)
		if err == nil {
			return f, nil
		}
		switch {
		case e.closed.Load():
			return nil, e.errClosed("Receive")
		case errors.Is(err, os.ErrDeadlineExceeded):
			if cerr := ctx.Err(); cerr != nil {
				return nil, cerr
			}
			e.rd.reset()
		case errors.Is(err, transport.ErrFrameTooLarge):
			e.abort(codeFrameTooLarge, "frame too large", "peer sent a frame over the limit")
			return nil, fmt.Errorf("quic: Receive on edge %s: %w: %w", e, transport.ErrClosed, err)
		default:
			return nil, e.fail("Receive", err)
		}
	}
}

// readFrame reads the rest of the current frame, into buf(size) if buf is
// not nil. It keeps its progress across errors, so that a Receive
// interrupted by its context loses nothing.
func (e *Edge) readFrame(buf func(int) []byte) ([]byte, error) {
	for e.rhn < len(e.rhdr) {
		n, err := e.br.Read(e.rhdr[e.rhn:])
		e.rhn += n
		if err != nil && e.rhn < len(e.rhdr) {
			if err == io.EOF && e.rhn > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	if e.frame == nil {
		size := binary.BigEndian.Uint32(e.rhdr[:])
		if uint64(size) > uint64(e.maxFrame) {
			return nil, fmt.Errorf("peer sent a %d-byte frame, over limit %d: %w", size, e.maxFrame, transport.ErrFrameTooLarge)
		}
		e.frame, e.rfn = transport.FrameBuffer(buf, int(size)), 0
	}
	for e.rfn < len(e.frame) {
		n, err := e.br.Read(e.frame[e.rfn:])
		e.rfn += n
		if err != nil && e.rfn < len(e.frame) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	f := e.frame
	e.frame, e.rhn, e.rfn = nil, 0, 0
	return f, nil
}

// fail closes the edge after an error from the stream and returns the error
// for op, wrapping transport.ErrClosed and the cause.
func (e *Edge) fail(op string, err error) error {
	var why string
	var appErr *quicgo.ApplicationError
	var streamErr *quicgo.StreamError
	var transErr *quicgo.TransportError
	switch {
	case errors.Is(err, io.EOF):
		why = "closed by peer"
	case errors.Is(err, io.ErrUnexpectedEOF):
		why = "closed by peer mid-frame"
	case errors.As(err, &appErr) && appErr.Remote:
		why = "closed by peer"
		if appErr.ErrorCode != codeClosed {
			why = fmt.Sprintf("closed by peer with error 0x%x %q", uint64(appErr.ErrorCode), appErr.ErrorMessage)
		}
	case errors.As(err, &transErr) && transErr.Remote:
		why = "closed by peer with transport error " + transErr.ErrorCode.String()
	case errors.As(err, &streamErr) && streamErr.Remote:
		why = "stream reset by peer"
	case errors.Is(err, quicgo.ErrTransportClosed):
		why = "transport closed"
	default:
		why = "link broken"
	}
	e.abort(codeClosed, "", why)
	return fmt.Errorf("quic: %s on edge %s: %s: %w: %w", op, e, why, transport.ErrClosed, err)
}

func (e *Edge) errClosed(op string) error {
	why := "closed"
	if p := e.why.Load(); p != nil {
		why = *p
	}
	return fmt.Errorf("quic: %s on edge %s: %s: %w", op, e, why, transport.ErrClosed)
}

// Close closes the edge gracefully and returns at once. Pending and later
// Send and Receive calls fail with an error wrapping transport.ErrClosed.
// Every frame whose Send returned before Close is delivered to the peer
// before its Receive reports the close, provided the peer reads within
// Linger; then the connection is closed. Close is idempotent and returns
// nil.
func (e *Edge) Close() error {
	e.shutdownWhy("closed")
	return nil
}

// shutdown closes the edge gracefully. It returns once the lingering
// goroutine has started (or, if the edge was closed already, once that
// close has done as much).
func (e *Edge) shutdown() { e.shutdownWhy("closed") }

func (e *Edge) shutdownWhy(why string) {
	e.once.Do(func() {
		e.why.Store(&why)
		e.closed.Store(true)
		e.wr.close(aLongTimeAgo)
		e.rd.close(aLongTimeAgo)
		e.t.goLinger(e.linger)
	})
}

// linger finishes a graceful close: it waits for a Send in progress to give
// up, ends the send direction after the last frame (FIN), then discards what
// the peer sends until the peer's own FIN or close, or Linger passes, and
// closes the connection.
func (e *Edge) linger() {
	defer e.t.edges.Untrack(e)
	e.smu.Lock()
	_ = e.st.Close()
	e.smu.Unlock()

	e.rmu.Lock()
	defer e.rmu.Unlock()
	e.rd.setLocked(time.Now().Add(Linger))
	_, _ = e.br.WriteTo(io.Discard)
	_ = e.conn.CloseWithError(codeClosed, "")
}

// abort closes the edge and its connection at once, without lingering: the
// peer has closed, the link is broken, or the peer broke the protocol. code
// and msg go to the peer; why explains later errors on this side.
func (e *Edge) abort(code quicgo.ApplicationErrorCode, msg, why string) {
	e.once.Do(func() {
		e.why.Store(&why)
		e.closed.Store(true)
		e.wr.close(aLongTimeAgo)
		e.rd.close(aLongTimeAgo)
		_ = e.conn.CloseWithError(code, msg)
		e.t.edges.Untrack(e)
	})
}

// interrupter interrupts a blocked stream Read or Write when the caller's
// context ends, or the edge closes, by moving the stream's deadline into
// the past. It remembers the last context it watched, so that a caller that
// passes the same long-lived context every time (as a mesh node does) costs
// no allocation per call.
type interrupter struct {
	set func(time.Time) error // the stream's SetReadDeadline or SetWriteDeadline

	mu     sync.Mutex
	ctx    context.Context // watched now
	stop   func() bool     // stops watching ctx
	kicked bool            // the deadline is in the past because of a kick
	closed bool            // the edge is closed: the deadline stays as close set it
}

// watch arranges for ctx's end to interrupt the stream. Only the one caller
// holding the edge's send (or receive) mutex calls it.
func (w *interrupter) watch(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || sameContext(ctx, w.ctx) {
		return
	}
	if w.stop != nil {
		w.stop()
	}
	w.ctx, w.stop = ctx, nil
	if ctx.Done() != nil {
		w.stop = context.AfterFunc(ctx, w.kick)
	}
}

// sameContext reports whether a and b are the same context, without
// panicking on a context type that is not comparable.
func sameContext(a, b context.Context) bool {
	if a == nil || b == nil {
		return false
	}
	ta := reflect.TypeOf(a)
	return ta == reflect.TypeOf(b) && ta.Comparable() && a == b
}

func (w *interrupter) kick() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.kicked = true
		_ = w.set(aLongTimeAgo)
	}
}

// reset clears the deadline after a kick, unless the edge is closed.
func (w *interrupter) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.kicked && !w.closed {
		w.kicked = false
		_ = w.set(time.Time{})
	}
}

// close stops watching and sets the deadline for good.
func (w *interrupter) close(deadline time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.stop != nil {
		w.stop()
		w.ctx, w.stop = nil, nil
	}
	_ = w.set(deadline)
}

// setLocked sets the deadline of a closed edge, for the drain.
func (w *interrupter) setLocked(deadline time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.set(deadline)
}
