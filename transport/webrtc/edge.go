package webrtc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/datachannel"
	"github.com/pion/webrtc/v4"

	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/webrtc/internal/bpack"
)

var _ transport.Edge = (*Edge)(nil)

// Edge is one side of an edge: a peer connection with one data channel,
// a PeerJS DataConnection. It implements transport.Edge.
type Edge struct {
	t       *Transport
	c       *conn
	dc      *webrtc.DataChannel
	rw      datachannel.ReadWriteCloser
	ser     string
	ordered bool
	limit   int // the largest frame Send takes
	chunk   int // the largest piece of a chunked frame

	// Reading: readLoop puts frames on frames, and when it stops sets rerr
	// and closes rdone.
	frames chan []byte
	rdone  chan struct{}
	rerr   error

	closed      chan struct{} // closed when Close starts
	closeOnce   sync.Once
	releaseOnce sync.Once

	// Writing: wsem is held by the Send in progress, and by Close for
	// good; it guards chunkID and wbuf.
	wsem    chan struct{}
	low     chan struct{} // a token when the send buffer has drained to half
	chunkID int
	wbuf    []byte
}

func newEdge(c *conn, dc *webrtc.DataChannel, rw datachannel.ReadWriteCloser) *Edge {
	e := &Edge{
		t:       c.t,
		c:       c,
		dc:      dc,
		rw:      rw,
		ser:     c.ser,
		ordered: dc.Ordered(),
		limit:   c.t.maxFrame,
		chunk:   ChunkSize,
		frames:  make(chan []byte, receiveQueue),
		rdone:   make(chan struct{}),
		closed:  make(chan struct{}),
		wsem:    make(chan struct{}, 1),
		low:     make(chan struct{}, 1),
	}
	// The peer's a=max-message-size, or 65535 if it advertised none (as
	// Chromium's answers do); this transport advertises MaxMessage.
	peerMax := int(c.pc.SCTP().GetCapabilities().MaxMessageSize)
	if peerMax <= 0 {
		peerMax = 65535
	}
	if e.ser == SerializationRaw {
		e.limit = min(e.limit, peerMax)
	} else {
		e.chunk = max(1024, min(ChunkSize, peerMax-bpack.ChunkOverhead))
	}
	dc.SetBufferedAmountLowThreshold(sendBuffer / 2)
	dc.OnBufferedAmountLow(func() {
		select {
		case e.low <- struct{}{}:
		default:
		}
	})
	return e
}

// LocalAddr returns this transport's peer ID.
func (e *Edge) LocalAddr() string { return e.t.id }

// RemoteAddr returns the peer ID of the other side, at which it can be
// dialled.
func (e *Edge) RemoteAddr() string { return e.c.key.peer }

// ConnectionID returns the peerjs connectionId of the edge ("dc_" and a
// random token for edges this transport dialled).
func (e *Edge) ConnectionID() string { return e.c.key.id }

// Serialization returns the edge's serialization: SerializationBinary or
// SerializationRaw.
func (e *Edge) Serialization() string { return e.ser }

// Ordered reports whether the data channel delivers messages in order: it
// does on edges this transport dialled; a browser's peerjs connection is
// ordered only if it was opened with reliable: true.
func (e *Edge) Ordered() bool { return e.ordered }

// MaxFrame returns the largest frame Send takes on this edge: the
// transport's MaxFrame, or less on a "raw" edge to a peer that accepts only
// smaller messages.
func (e *Edge) MaxFrame() int { return e.limit }

// String names the edge by the two peer IDs and its connectionId, for logs.
func (e *Edge) String() string { return e.t.id + "->" + e.c.key.peer + "/" + e.c.key.id }

func (e *Edge) isClosed() bool {
	select {
	case <-e.closed:
		return true
	default:
		return false
	}
}

func (e *Edge) errClosed(op string) error {
	return fmt.Errorf("webrtc: %s on edge %s: %w", op, e, transport.ErrClosed)
}

// Send sends the frame: on a "raw" edge as one data-channel message, on a
// "binary" edge as one BinaryPack raw value, in chunks of ChunkSize bytes if
// it is larger than that. It does not keep frame. Concurrent Sends on one
// edge are serialised. Send blocks while 1 MiB is queued on the data channel
// and not yet acknowledged, until half of it is. It returns an error
// wrapping transport.ErrFrameTooLarge for a frame over MaxFrame (the edge
// stays usable), one wrapping transport.ErrClosed once either side has
// closed the edge or the connection broke, and ctx's error if ctx ends
// first. A chunked frame cut short by ctx never completes: the receiver
// drops it, and the edge stays usable.
func (e *Edge) Send(ctx context.Context, frame []byte) error {
	if len(frame) > e.limit {
		return fmt.Errorf("webrtc: Send on edge %s: %d bytes over limit %d: %w", e, len(frame), e.limit, transport.ErrFrameTooLarge)
	}
	if e.isClosed() {
		return e.errClosed("Send")
	}
	select {
	case e.wsem <- struct{}{}:
	default:
		select {
		case e.wsem <- struct{}{}:
		case <-e.closed:
			return e.errClosed("Send")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer func() { <-e.wsem }()
	if e.isClosed() {
		return e.errClosed("Send")
	}
	select {
	case <-e.rdone: // the peer closed, or the edge broke
		return e.sendErr(nil)
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if e.ser == SerializationRaw {
		return e.write(ctx, frame)
	}
	var hdr [5]byte
	head := bpack.AppendRawHeader(hdr[:0], len(frame))
	if len(head)+len(frame) <= e.chunk {
		e.wbuf = append(append(e.wbuf[:0], head...), frame...)
		return e.write(ctx, e.wbuf)
	}
	// The packed frame is head+frame; piece n of it is bytes
	// [n*chunk, (n+1)*chunk), the header in the first.
	total := (len(head) + len(frame) + e.chunk - 1) / e.chunk
	e.chunkID = e.chunkID%(1<<31) + 1
	off := 0
	for n := range total {
		room := e.chunk
		var h []byte
		if n == 0 {
			h = head
			room -= len(head)
		}
		end := min(off+room, len(frame))
		e.wbuf = bpack.AppendChunk(e.wbuf[:0], e.chunkID, n, total, h, frame[off:end])
		off = end
		if err := e.write(ctx, e.wbuf); err != nil {
			return err
		}
	}
	return nil
}

// write sends one message, once the send buffer has room.
func (e *Edge) write(ctx context.Context, msg []byte) error {
	for e.dc.BufferedAmount() >= sendBuffer {
		select {
		case <-e.low:
		case <-e.closed:
			return e.errClosed("Send")
		case <-e.rdone:
			return e.sendErr(nil)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if _, err := e.rw.WriteDataChannel(msg, false); err != nil {
		if e.isClosed() {
			return e.errClosed("Send")
		}
		return e.sendErr(err)
	}
	return nil
}

// sendErr is the error of a Send after the edge ended in some other way
// than Close on this side: err from the data channel, or why reading
// ended (not wrapped: a frame too large from the peer is not this Send's).
func (e *Edge) sendErr(err error) error {
	select {
	case <-e.rdone:
		return fmt.Errorf("webrtc: Send on edge %s: %w (%v)", e, transport.ErrClosed, e.rerr)
	default:
	}
	return fmt.Errorf("webrtc: Send on edge %s: %w: %w", e, transport.ErrClosed, err)
}

// Receive returns the next frame, in a slice of its own. After the peer
// closes the edge it returns the frames that arrived before, then an error
// wrapping transport.ErrClosed; after this side closes, that error at once.
// A broken connection ends the edge with an error wrapping
// transport.ErrClosed and the cause; a message over the frame limit with
// one wrapping transport.ErrFrameTooLarge too, and a message the edge
// cannot read with one wrapping ErrProtocol. If ctx ends first Receive
// returns ctx's error and the edge stays usable.
func (e *Edge) Receive(ctx context.Context) ([]byte, error) {
	if e.isClosed() {
		return nil, e.errClosed("Receive")
	}
	select {
	case f := <-e.frames:
		return f, nil
	default:
	}
	select {
	case f := <-e.frames:
		return f, nil
	case <-e.rdone:
		// Every frame read is queued before rdone is closed.
		select {
		case f := <-e.frames:
			return f, nil
		default:
		}
		if e.isClosed() {
			return nil, e.errClosed("Receive")
		}
		return nil, e.rerr
	case <-e.closed:
		return nil, e.errClosed("Receive")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// readLoop reads the data channel until it ends, queueing frames for
// Receive (and discarding them once the edge is closed), then frees the
// connection.
func (e *Edge) readLoop() {
	defer e.t.wg.Done()
	e.rerr = e.read()
	close(e.rdone)
	e.release()
}

// read reads messages until the data channel ends and returns why.
func (e *Edge) read() error {
	buf := make([]byte, MaxMessage)
	ignored := false // a message that is not a frame was logged
	var u *bpack.Unpacker
	if e.ser != SerializationRaw {
		u = bpack.NewUnpacker(e.t.maxFrame)
	}
	for {
		n, _, err := e.rw.ReadDataChannel(buf)
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return fmt.Errorf("webrtc: Receive on edge %s: closed by peer: %w", e, transport.ErrClosed)
		case errors.Is(err, io.ErrShortBuffer):
			return fmt.Errorf("webrtc: Receive on edge %s: a message over %d bytes: %w: %w",
				e, MaxMessage, transport.ErrClosed, transport.ErrFrameTooLarge)
		default:
			return fmt.Errorf("webrtc: Receive on edge %s: %w: %w", e, transport.ErrClosed, err)
		}
		var frame []byte
		if u == nil {
			if n > e.t.maxFrame {
				return fmt.Errorf("webrtc: Receive on edge %s: a %d-byte frame, over limit %d: %w: %w",
					e, n, e.t.maxFrame, transport.ErrClosed, transport.ErrFrameTooLarge)
			}
			frame = bytes.Clone(buf[:n])
		} else {
			f, r, what, err := u.Unpack(buf[:n])
			switch {
			case errors.Is(err, bpack.ErrTooLarge):
				return fmt.Errorf("webrtc: Receive on edge %s: %w: %w: %w", e, err, transport.ErrClosed, transport.ErrFrameTooLarge)
			case err != nil:
				return fmt.Errorf("webrtc: Receive on edge %s: %w: %w: %w", e, ErrProtocol, transport.ErrClosed, err)
			case r == bpack.Close:
				// peerjs's close({flush: true}): it asks us to close.
				_ = e.rw.Close()
				return fmt.Errorf("webrtc: Receive on edge %s: closed by peer: %w", e, transport.ErrClosed)
			case r == bpack.Nothing:
				if what != "" {
					// Once per edge at Info: the peer may send many.
					level := slog.LevelDebug
					if !ignored {
						level, ignored = slog.LevelInfo, true
					}
					e.c.log.Log(context.Background(), level, "ignoring a message that is not a frame", "message", what)
				}
				continue
			}
			frame = f
		}
		select {
		case e.frames <- frame:
		case <-e.closed:
		}
	}
}

// Close ends the edge: a Send or Receive in progress returns an error
// wrapping transport.ErrClosed, the frames already sent reach the peer before
// it sees the close (the data channel's stream is reset after them), and
// the connection is freed once the peer closes its side too, or after
// Config.Linger. Close does not wait for that; Transport.Close does. Close is
// idempotent and returns nil.
func (e *Edge) Close() error {
	e.closeOnce.Do(e.shutdown)
	return nil
}

func (e *Edge) shutdown() {
	close(e.closed)
	e.wsem <- struct{}{} // wait out a Send in progress; keep it for good
	_ = e.rw.Close()
	e.t.lingers.Add(1) // before Transport.Close waits: see there
	go e.linger()
}

// linger waits for the peer to close its side, then frees the connection.
func (e *Edge) linger() {
	defer e.t.lingers.Done()
	timer := time.NewTimer(e.t.linger)
	defer timer.Stop()
	select {
	case <-e.rdone:
	case <-timer.C:
	case <-e.t.cut.Done():
	}
	e.release()
}

// broken ends an edge whose connection failed. It runs on a goroutine of
// pion's, so it leaves the closing to one of the transport's.
func (e *Edge) broken() {
	if e.t.goTracked(e.release) {
		e.c.log.Info("peer connection failed")
	}
}

// release closes the peer connection, which ends readLoop, and forgets the
// edge.
func (e *Edge) release() {
	e.releaseOnce.Do(func() {
		_ = e.c.pc.GracefulClose()
		e.t.forget(e.c, e)
	})
}
