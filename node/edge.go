package node

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/transport"
)

// peer is one neighbour: an edge that completed the handshake. The loop owns
// the fields; the reader and writer goroutines touch only edge, heard and the
// channels.
type peer struct {
	id     uuid.UUID
	epoch  uint64
	addrs  []string
	edge   transport.Edge
	dialed bool   // this node dialled the edge
	dialTo string // the address it dialled, for redialling after a failure

	ctrl  chan []byte   // control frames: sent before data
	data  chan []byte   // data frames, this node's and forwarded ones
	stop  chan struct{} // closed by the loop: the writer flushes ctrl and exits
	wdone chan struct{} // closed by the writer when it exits

	lastRecv time.Time
	lastSent time.Time
	silence  time.Duration // how long it may stay silent: see patience
	// heard is when the reader last decoded a frame from this neighbour,
	// as time since Node.born. Failure detection reads it besides lastRecv:
	// a frame waiting in the inbox behind a busy loop is a sign of life.
	heard atomic.Int64
}

// inFrame is a decoded frame from a neighbour; frame owns the bytes m aliases.
// With err set it is instead the end of p's edge, queued behind the frames
// read before it, so that a goodbye is handled before the close after it.
type inFrame struct {
	p     *peer
	m     message.Message
	frame []byte
	err   error
}

// startPeer launches the edge's reader and writer goroutines.
func (n *Node) startPeer(p *peer) {
	n.wg.Add(2)
	go n.reader(p)
	go n.writer(p)
}

func (n *Node) reader(p *peer) {
	defer n.wg.Done()
	for {
		f, err := p.edge.Receive(n.ctx)
		if err != nil {
			select {
			case n.inbox <- inFrame{p: p, err: err}:
			case <-n.quit:
			}
			return
		}
		n.stats.framesIn.Add(1)
		m, err := message.Decode(f, n.cfg.maxBody)
		if err != nil {
			n.hostile(p.id, "undecodable frame", err)
			continue
		}
		p.heard.Store(int64(time.Since(n.born)))
		select {
		case n.inbox <- inFrame{p: p, m: m, frame: f}:
		case <-n.quit:
			return
		}
	}
}

func (n *Node) writer(p *peer) {
	defer n.wg.Done()
	defer close(p.wdone)
	send := func(f []byte) bool {
		if err := p.edge.Send(n.ctx, f); err != nil {
			n.post(func() { n.st.edgeFailed(p, err) })
			return false
		}
		return true
	}
	for {
		// Control frames go first: acks and link state must not queue behind data.
		select {
		case f := <-p.ctrl:
			if !send(f) {
				return
			}
			continue
		default:
		}
		select {
		case f := <-p.ctrl:
			if !send(f) {
				return
			}
		case f := <-p.data:
			if !send(f) {
				return
			}
		case <-p.stop:
			for {
				select {
				case f := <-p.ctrl:
					if !send(f) {
						return
					}
				default:
					return
				}
			}
		}
	}
}

// post hands f to the loop unless the node is shutting down.
func (n *Node) post(f func()) {
	select {
	case n.reqs <- f:
	case <-n.quit:
	}
}

// hostile counts and logs bad input from a neighbour. Logging is thinned to
// powers of two so that a flood of garbage cannot flood the log.
func (n *Node) hostile(from uuid.UUID, what string, err error) {
	c := n.stats.hostile.Add(1)
	if c&(c-1) == 0 {
		n.log.Warn("hostile input", "from", from, "what", what, "err", err, "total", c)
	}
}

func (n *Node) acceptLoop(t transport.Transport) {
	defer n.wg.Done()
	for {
		e, err := t.Accept(n.ctx)
		if err != nil {
			if !errors.Is(err, transport.ErrClosed) && n.ctx.Err() == nil {
				n.log.Warn("accept failed; no longer accepting on this transport", "err", err)
			}
			return
		}
		n.wg.Add(1)
		go n.acceptHandshake(e)
	}
}

// acceptHandshake reads the dialer's hello, asks the loop for admission and
// answers with welcome (sent by the loop, first on the new peer's queue) or
// with reject.
func (n *Node) acceptHandshake(e transport.Edge) {
	defer n.wg.Done()
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.handshake)
	defer cancel()
	m, h, err := n.readHello(ctx, e, message.TypeHello)
	if err != nil {
		n.log.Debug("incoming handshake failed", "remote", e.RemoteAddr(), "err", err)
		e.Close()
		return
	}
	var rej *message.Reject
	var admitted bool
	var wait <-chan []string
	err = n.do(ctx, func() { admitted, rej, wait = n.st.admit(m.UID.Node, m.Header.Epoch, h, e) })
	if err != nil || admitted {
		if err != nil {
			e.Close()
		}
		return
	}
	if wait != nil {
		// Full, and no entry point known: the mesh was asked for one.
		select {
		case eps := <-wait:
			rej.EntryPoints = eps
		case <-ctx.Done():
		}
	}
	if rej != nil {
		f := n.frame(message.TypeReject, 0, uuid.Nil, rej.Append(nil))
		_ = e.Send(ctx, f)
	}
	e.Close()
}

// readHello reads one handshake frame of the wanted type (or a reject, for
// the dialer) and decodes its body.
func (n *Node) readHello(ctx context.Context, e transport.Edge, want message.Type) (message.Message, message.Hello, error) {
	f, err := e.Receive(ctx)
	if err != nil {
		return message.Message{}, message.Hello{}, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	m, err := message.Decode(f, n.cfg.maxBody)
	if err != nil {
		n.hostile(uuid.Nil, "undecodable handshake", err)
		return m, message.Hello{}, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	if m.UID.Node == uuid.Nil {
		return m, message.Hello{}, fmt.Errorf("%w: nil node ID", ErrHandshake)
	}
	if m.Header.Type == message.TypeReject && want == message.TypeWelcome {
		r, err := message.DecodeReject(m.Body)
		if err != nil {
			return m, message.Hello{}, fmt.Errorf("%w: %w", ErrHandshake, err)
		}
		if r.Reason == message.RejectDuplicate {
			return m, message.Hello{}, fmt.Errorf("%w: %s", ErrDuplicateEdge, m.UID.Node)
		}
		return m, message.Hello{}, &RejectedError{Peer: m.UID.Node, Reason: r.Reason, EntryPoints: r.EntryPoints}
	}
	if m.Header.Type != want {
		return m, message.Hello{}, fmt.Errorf("%w: got %s, want %s", ErrHandshake, m.Header.Type, want)
	}
	h, err := message.DecodeHello(m.Body)
	if err != nil {
		return m, message.Hello{}, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	return m, h, nil
}

// connectOnce dials addr on each transport in turn and runs the handshake
// on the first edge that opens.
func (n *Node) connectOnce(ctx context.Context, addr string) error {
	select {
	case <-n.closing:
		return ErrClosed
	default:
	}
	var errs []error
	for _, t := range n.trs {
		e, err := t.Dial(ctx, addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return n.dialHandshake(ctx, e, addr)
	}
	return fmt.Errorf("node: connect %s: %w", addr, errors.Join(errs...))
}

func (n *Node) dialHandshake(ctx context.Context, e transport.Edge, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.handshake)
	defer cancel()
	var hello []byte
	if err := n.do(ctx, func() { hello = n.frame(message.TypeHello, 0, uuid.Nil, n.st.hello().Append(nil)) }); err != nil {
		e.Close()
		return err
	}
	if err := e.Send(ctx, hello); err != nil {
		e.Close()
		return fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	m, h, err := n.readHello(ctx, e, message.TypeWelcome)
	if err != nil {
		e.Close()
		return err
	}
	var regErr error
	if err := n.do(ctx, func() { regErr = n.st.register(m.UID.Node, m.Header.Epoch, h, e, addr) }); err != nil {
		e.Close()
		return err
	}
	if errors.Is(regErr, ErrDuplicateEdge) {
		// The other side welcomed this edge, so it may hold it as its
		// neighbour until it installs the edge it dialled itself, which
		// wins; closed now, the edge could look failed to it first.
		n.closeLater(e)
		return regErr
	}
	if errors.Is(regErr, ErrFull) {
		// The other side took this node as a neighbour: tell it this is a
		// hang-up, not a failure.
		_ = e.Send(ctx, n.frame(message.TypeGoodbye, 0, uuid.Nil, nil))
	}
	if regErr != nil {
		e.Close()
	}
	return regErr
}

// closeLater closes e after the handshake timeout, or when the node shuts
// down: an edge this node no longer uses, which the other side is expected
// to close itself once it has installed the edge that replaces it (see
// state.retire).
func (n *Node) closeLater(e transport.Edge) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		t := time.NewTimer(n.cfg.handshake)
		defer t.Stop()
		select {
		case <-t.C:
		case <-n.quit:
		}
		e.Close()
	}()
}
