package libp2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/distrirender/distrirender/transport"
)

var _ transport.Edge = (*Edge)(nil)

// prefixLen is the size of the length prefix before every frame.
const prefixLen = 4

// readBuffer is the size of an edge's read buffer: frames this small or
// smaller arrive several per read from the stream.
const readBuffer = 32 << 10

// longAgo is a deadline in the past, which interrupts a blocked Read or Write.
var longAgo = time.Unix(1, 0)

// Edge is one side of an edge: a libp2p stream of ProtocolID. It implements
// transport.Edge.
type Edge struct {
	t      *Transport
	s      network.Stream
	peer   peer.ID
	local  string
	remote string

	closed    chan struct{} // closed when Close starts
	closeOnce sync.Once

	// The writing side. wsem is held by the Send in progress, and by Close
	// from the moment it has interrupted that Send; it guards the fields
	// that follow.
	wsem   chan struct{}
	wwatch watch
	wbroke error // set when a Send stopped inside a frame

	// The reading side, in the same way: rsem is held by the Receive in
	// progress and then by the linger. The partial frame survives a Receive
	// whose ctx ended, for the next Receive to finish.
	rsem   chan struct{}
	rwatch watch
	rerr   error // the error that ended reading
	br     *bufio.Reader
	hdr    [prefixLen]byte
	hdrN   int    // bytes of hdr read
	body   []byte // the frame being read, once its length is known
	bodyN  int    // bytes of body read
}

func newEdge(t *Transport, s network.Stream) *Edge {
	c := s.Conn()
	e := &Edge{
		t:      t,
		s:      s,
		peer:   c.RemotePeer(),
		local:  c.LocalMultiaddr().String() + "/p2p/" + c.LocalPeer().String(),
		remote: c.RemoteMultiaddr().String() + "/p2p/" + c.RemotePeer().String(),
		closed: make(chan struct{}),
		wsem:   make(chan struct{}, 1),
		rsem:   make(chan struct{}, 1),
	}
	e.wwatch.set = s.SetWriteDeadline
	e.rwatch.set = s.SetReadDeadline
	e.br = bufio.NewReaderSize(s, readBuffer)
	return e
}

// LocalAddr returns this side's multiaddr of the connection, with /p2p/ and
// this host's peer ID.
func (e *Edge) LocalAddr() string { return e.local }

// RemoteAddr returns the other side's multiaddr of the connection, with /p2p/
// and its peer ID: the identity of the link.
func (e *Edge) RemoteAddr() string { return e.remote }

// RemotePeer returns the peer ID of the host on the other side.
func (e *Edge) RemotePeer() peer.ID { return e.peer }

// String names the edge by the two peer IDs, abbreviated, for logs.
func (e *Edge) String() string { return shortID(e.t.h.ID()) + "->" + shortID(e.peer) }

func (e *Edge) isClosed() bool {
	select {
	case <-e.closed:
		return true
	default:
		return false
	}
}

func (e *Edge) errClosed(op string) error {
	return fmt.Errorf("libp2p: %s on edge %s: %w", op, e, transport.ErrClosed)
}

// acquire takes a one-slot semaphore unless ctx ends or the edge closes
// first.
func (e *Edge) acquire(ctx context.Context, sem chan struct{}, op string) error {
	select {
	case sem <- struct{}{}:
		return nil
	default:
	}
	select {
	case sem <- struct{}{}:
		return nil
	case <-e.closed:
		return e.errClosed(op)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// watch interrupts the operations of one direction of a stream when their
// context ends, by setting a deadline in the past. It stays registered while
// calls pass contexts that end together (the same Done channel: the node
// passes one context to every call), so that a Send or Receive allocates
// nothing for it; a call with another context replaces it, and the edge's
// close removes it. Its fields are guarded by the direction's semaphore.
type watch struct {
	set   func(time.Time) error // SetReadDeadline or SetWriteDeadline
	done  <-chan struct{}       // Done of the context watched, nil if none
	stop  func() bool
	fired chan struct{} // closed once the deadline is set
	dl    bool          // a deadline may be set: clear it before the next call
}

// arm watches ctx, and makes sure no deadline of an earlier context is left
// on the stream.
func (w *watch) arm(ctx context.Context) {
	if done := ctx.Done(); done != w.done {
		w.disarm()
		if done != nil {
			fired := make(chan struct{})
			w.done, w.fired = done, fired
			w.stop = context.AfterFunc(ctx, func() {
				_ = w.set(longAgo)
				close(fired)
			})
		}
	}
	if w.dl {
		_ = w.set(time.Time{})
		w.dl = false
	}
}

// disarm stops watching. If the watched context has ended, it waits until
// the deadline is set and notes it.
func (w *watch) disarm() {
	if w.stop == nil {
		return
	}
	if !w.stop() {
		<-w.fired
		w.dl = true
	}
	w.done, w.stop, w.fired = nil, nil, nil
}

// getBuf takes a write buffer (prefix and frame) of length n from the
// transport's pool (Transport.bufs), so that a Send allocates nothing in the
// steady state and keeps no buffer per edge.
func (t *Transport) getBuf(n int) *[]byte {
	if p, ok := t.bufs.Get().(*[]byte); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, max(n, 512))
	return &b
}

// Send writes the frame, after its length prefix, in one Write on the stream.
// It does not keep frame. Concurrent Sends on one edge are serialised. Send
// blocks while the stream's flow control window is full; it returns an error
// wrapping transport.ErrFrameTooLarge for a frame over MaxFrame (the edge
// stays usable), one wrapping transport.ErrClosed once either side has closed
// the edge or the connection broke, and ctx's error if ctx ends first. A Send
// cut short by ctx after part of the frame went out leaves the edge unusable
// for sending: later Sends fail with an error wrapping transport.ErrClosed.
func (e *Edge) Send(ctx context.Context, frame []byte) error {
	one := [1][]byte{frame}
	return e.send(ctx, "Send", one[:])
}

var _ transport.BatchSender = (*Edge)(nil)

// batchBuffer is how many bytes of frames SendBatch gathers into one Write.
const batchBuffer = 64 << 10

// SendBatch writes frames, each after its length prefix, gathered into as
// few Writes on the stream as batchBuffer allows (one for a batch of small
// frames). It implements transport.BatchSender with Send's errors: a batch
// holding a frame over MaxFrame is refused before any of it is written, and
// one cut short inside a frame leaves the edge unusable for sending.
func (e *Edge) SendBatch(ctx context.Context, frames [][]byte) error {
	return e.send(ctx, "SendBatch", frames)
}

func (e *Edge) send(ctx context.Context, op string, frames [][]byte) error {
	for _, f := range frames {
		if len(f) > e.t.maxFrame {
			return fmt.Errorf("libp2p: %s on edge %s: %d bytes over limit %d: %w", op, e, len(f), e.t.maxFrame, transport.ErrFrameTooLarge)
		}
	}
	if e.isClosed() {
		return e.errClosed(op)
	}
	if err := e.acquire(ctx, e.wsem, op); err != nil {
		return err
	}
	defer func() { <-e.wsem }()
	// Clear a deadline left by an ended context before looking at closed:
	// Close sets closed first and then its own deadline, which then wins.
	e.wwatch.arm(ctx)
	if e.isClosed() {
		return e.errClosed(op)
	}
	if e.wbroke != nil {
		return e.wbroke
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	size := 0
	for _, f := range frames {
		size += prefixLen + len(f)
	}
	p := e.t.getBuf(min(size, batchBuffer))
	defer e.t.bufs.Put(p)
	b := (*p)[:0]
	for i, f := range frames {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
		if len(b) < batchBuffer && i < len(frames)-1 {
			continue
		}
		if err := e.write(ctx, op, b); err != nil {
			return err
		}
		b = b[:0]
	}
	if cap(b) <= 2*batchBuffer {
		*p = b[:0]
	}
	return nil
}

// write writes b, whole frames with their prefixes, in one Write on the
// stream.
func (e *Edge) write(ctx context.Context, op string, b []byte) error {
	n, err := e.s.Write(b)
	if err == nil {
		return nil
	}
	if n > 0 && n < len(b) {
		// The peer has part of a frame; nothing more can follow it.
		e.wbroke = fmt.Errorf("libp2p: %s on edge %s: an earlier Send stopped inside a frame: %w", op, e, transport.ErrClosed)
	}
	switch {
	case e.isClosed():
		return e.errClosed(op)
	case ctx.Err() != nil && isTimeout(err):
		return ctx.Err()
	}
	e.wbroke = fmt.Errorf("libp2p: %s on edge %s: %w: %w", op, e, transport.ErrClosed, err)
	return e.wbroke
}

// Receive returns the next frame, in a slice of its own. After the peer
// closes the edge it returns the frames that arrived before, then an error
// wrapping transport.ErrClosed; after this side closes, that error at once. A
// reset stream, a broken connection or a frame that breaks off also end the
// edge with an error wrapping transport.ErrClosed (and the cause), and a
// length prefix over MaxFrame with one wrapping transport.ErrFrameTooLarge.
// If ctx ends first Receive returns ctx's error and the edge stays usable: a
// frame half read is finished by the next Receive.
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
	if e.isClosed() {
		return nil, e.errClosed("Receive")
	}
	if err := e.acquire(ctx, e.rsem, "Receive"); err != nil {
		return nil, err
	}
	defer func() { <-e.rsem }()
	e.rwatch.arm(ctx)
	if e.isClosed() {
		return nil, e.errClosed("Receive")
	}
	if e.rerr != nil {
		return nil, e.rerr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	frame, err := e.readFrame(buf)
	if err == nil {
		return frame, nil
	}
	switch {
	case e.isClosed():
		return nil, e.errClosed("Receive")
	case ctx.Err() != nil && isTimeout(err):
		return nil, ctx.Err()
	}
	e.rerr = err
	return nil, err
}

// readFrame reads the rest of the current frame, into buf(size) if buf is
// not nil. On an error it keeps what it has read, so a call after a timeout
// resumes where this one stopped.
func (e *Edge) readFrame(buf func(int) []byte) ([]byte, error) {
	for e.hdrN < prefixLen {
		n, err := e.br.Read(e.hdr[e.hdrN:])
		e.hdrN += n
		if err != nil && e.hdrN < prefixLen {
			if errors.Is(err, io.EOF) && e.hdrN == 0 {
				return nil, fmt.Errorf("libp2p: Receive on edge %s: closed by peer: %w", e, transport.ErrClosed)
			}
			return nil, e.readErr(err)
		}
	}
	if e.body == nil {
		size := binary.BigEndian.Uint32(e.hdr[:])
		if uint64(size) > uint64(e.t.maxFrame) {
			return nil, fmt.Errorf("libp2p: Receive on edge %s: peer announced a %d-byte frame, over limit %d: %w", e, size, e.t.maxFrame, transport.ErrFrameTooLarge)
		}
		e.body = transport.FrameBuffer(buf, int(size))
	}
	for e.bodyN < len(e.body) {
		n, err := e.br.Read(e.body[e.bodyN:])
		e.bodyN += n
		if err != nil && e.bodyN < len(e.body) {
			return nil, e.readErr(err)
		}
	}
	frame := e.body
	e.hdrN, e.body, e.bodyN = 0, nil, 0
	return frame, nil
}

// readErr classifies a read error: a timeout is returned as it is (the
// caller knows why it happened); anything else ends the edge.
func (e *Edge) readErr(err error) error {
	switch {
	case isTimeout(err):
		return err
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("libp2p: Receive on edge %s: closed by peer inside a frame: %w: %w", e, transport.ErrClosed, io.ErrUnexpectedEOF)
	default:
		return fmt.Errorf("libp2p: Receive on edge %s: %w: %w", e, transport.ErrClosed, err)
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// Close ends the edge: a Send or Receive in progress returns an error
// wrapping transport.ErrClosed, the frames already sent reach the peer before
// it sees the close, and the stream is freed once the peer closes its side
// too, or after Config.Linger. Close does not wait for that; Transport.Close
// does. Close is idempotent and returns nil.
func (e *Edge) Close() error {
	e.closeOnce.Do(e.shutdown)
	return nil
}

func (e *Edge) shutdown() {
	close(e.closed)
	// Interrupt a Send and a Receive in progress, then take their places
	// for good. (A quic-go stream must not be closed during a Write.)
	_ = e.s.SetWriteDeadline(longAgo)
	_ = e.s.SetReadDeadline(longAgo)
	e.wsem <- struct{}{}
	e.wwatch.disarm()
	_ = e.s.SetWriteDeadline(time.Time{})
	_ = e.s.CloseWrite()

	e.t.lingers.Add(1) // before Transport.Close waits: see there
	go e.linger()
}

// linger keeps reading, and discarding, until the peer closes its side or
// the linger ends, then frees the stream.
func (e *Edge) linger() {
	t := e.t
	defer t.lingers.Done()
	e.rsem <- struct{}{}
	e.rwatch.disarm()
	_ = e.s.SetReadDeadline(time.Now().Add(t.linger))
	// The cut comes after the deadline above, so it wins.
	stop := context.AfterFunc(t.cut, func() { _ = e.s.SetReadDeadline(longAgo) })
	_, _ = io.Copy(io.Discard, e.s)
	stop()
	// Close rather than Reset even when the peer has not finished: a reset
	// could discard frames of ours it has not read yet.
	_ = e.s.Close()
	t.untrack(e)
}
