package memory

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distrirender/distrirender/transport"
)

var _ transport.Edge = (*Edge)(nil)

// conn is one edge seen from above: its two sides and two directions.
type conn struct {
	net   *Network
	key   pair
	sides [2]*Edge      // 0: dialler, 1: acceptor
	stop  chan struct{} // closed when either side closes or dies
	once  sync.Once
	wg    sync.WaitGroup // delivery goroutines
}

// pipe is one direction of a conn: the receiver's queue and the sender's
// fault state.
type pipe struct {
	c       *conn
	ch      chan []byte // frames delivered, waiting for Receive
	faults  atomic.Pointer[Faults]
	blocked atomic.Bool
	timed   atomic.Bool // frames go through the delivery goroutine

	mu      sync.Mutex // guards rng, line, stopped and senders.Add
	rng     *mrand.Rand
	line    chan item // input of the delivery goroutine, nil until started
	stopped bool
	// senders counts Sends between their check of stopped and the end of
	// their enqueue: the delivery goroutine waits for them before it counts
	// what is left in line, so no frame escapes the Stats.
	senders sync.WaitGroup
}

// Edge is one side of an edge between two memory transports. It implements
// transport.Edge.
type Edge struct {
	c             *conn
	tr            *Transport
	local, remote string
	out           *pipe // frames this side sends
	in            chan []byte
	peer          *Edge

	closed chan struct{} // closed by Close or Kill: this side's calls fail
	fin    chan struct{} // closed by Close only: the peer sees the close
	dead   atomic.Bool   // killed: frames to this side are discarded
	once   sync.Once
}

func newConn(n *Network, from, to *Transport, k uint64) *conn {
	c := &conn{net: n, key: pairOf(from.addr, to.addr), stop: make(chan struct{})}
	mk := func(tr *Transport, local, remote string) *Edge {
		return &Edge{c: c, tr: tr, local: local, remote: remote, closed: make(chan struct{}), fin: make(chan struct{})}
	}
	d, a := mk(from, from.addr, to.addr), mk(to, to.addr, from.addr)
	d.peer, a.peer = a, d
	d.out = &pipe{c: c, ch: make(chan []byte, n.queueLen), rng: n.rngFor(from.addr, to.addr, true, k)}
	a.out = &pipe{c: c, ch: make(chan []byte, n.queueLen), rng: n.rngFor(to.addr, from.addr, false, k)}
	d.in, a.in = a.out.ch, d.out.ch
	c.sides = [2]*Edge{d, a}
	return c
}

func (c *conn) setFaults(f Faults) {
	var p *Faults
	if f != (Faults{}) {
		p = &f
	}
	for _, e := range c.sides {
		e.out.faults.Store(p)
	}
}

func (c *conn) setBlocked(b bool) {
	for _, e := range c.sides {
		e.out.blocked.Store(b)
	}
}

// stopDelivery stops the delivery goroutines of both directions and waits for
// them to exit.
func (c *conn) stopDelivery() {
	c.once.Do(func() {
		for _, e := range c.sides {
			e.out.mu.Lock()
			e.out.stopped = true
			e.out.mu.Unlock()
		}
		close(c.stop)
		c.net.forget(c)
	})
	c.wg.Wait()
}

// abort closes both sides of an edge that never reached its owners.
func (c *conn) abort() {
	c.sides[0].shutdown(false)
	c.sides[1].shutdown(false)
}

// shutdown closes this side of the edge, or kills it.
func (e *Edge) shutdown(kill bool) {
	e.once.Do(func() {
		if kill {
			e.dead.Store(true)
		}
		close(e.closed)
		if !kill {
			close(e.fin)
		}
		e.c.stopDelivery()
		e.tr.edges.Untrack(e)
	})
}

// Close closes the edge. The peer's Receive returns the frames already
// delivered to it, then an error wrapping transport.ErrClosed; frames still
// delayed in flight are lost. Close is idempotent and returns nil.
func (e *Edge) Close() error {
	e.shutdown(false)
	return nil
}

// LocalAddr returns the address of this side's transport.
func (e *Edge) LocalAddr() string { return e.local }

// RemoteAddr returns the address of the peer's transport.
func (e *Edge) RemoteAddr() string { return e.remote }

func (e *Edge) String() string { return e.local + "->" + e.remote }

func (e *Edge) errClosed(op string) error {
	return fmt.Errorf("memory: %s on edge %s: %w", op, e, transport.ErrClosed)
}

func (e *Edge) errPeerClosed(op string) error {
	return fmt.Errorf("memory: %s on edge %s: closed by peer: %w", op, e, transport.ErrClosed)
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Send copies frame and transmits it, subject to the link's faults. It
// returns an error wrapping transport.ErrFrameTooLarge for a frame over the
// network's MaxFrame, one wrapping transport.ErrClosed if either side has
// closed the edge, and ctx's error if ctx ends while the peer's queue is full.
// A frame dropped by a fault, a cut, a partition or a dead peer is a
// successful Send.
func (e *Edge) Send(ctx context.Context, frame []byte) error {
	n := e.c.net
	if len(frame) > n.maxFrame {
		return fmt.Errorf("memory: Send on edge %s: %d bytes over limit %d: %w", e, len(frame), n.maxFrame, transport.ErrFrameTooLarge)
	}
	if isDone(e.closed) {
		return e.errClosed("Send")
	}
	if e.peer.dead.Load() {
		n.stats.sent.Add(1)
		n.stats.discarded.Add(1)
		return nil
	}
	if isDone(e.peer.fin) {
		return e.errPeerClosed("Send")
	}
	p := e.out
	if p.blocked.Load() {
		n.stats.sent.Add(1)
		n.stats.blocked.Add(1)
		return nil
	}
	f := p.faults.Load()
	if f == nil && !p.timed.Load() {
		// Perfect link: a copy and a channel send.
		if err := e.put(ctx, clone(frame)); err != nil {
			return err
		}
		n.stats.sent.Add(1)
		return nil
	}
	return e.sendFaulty(ctx, f, frame)
}

func clone(b []byte) []byte {
	c := make([]byte, len(b))
	copy(c, b)
	return c
}

// put places buf in the peer's queue, waiting for room.
func (e *Edge) put(ctx context.Context, buf []byte) error {
	n := e.c.net
	select {
	case e.out.ch <- buf:
		n.stats.delivered.Add(1)
		return nil
	default:
	}
	select {
	case e.out.ch <- buf:
		n.stats.delivered.Add(1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-e.closed:
		return e.errClosed("Send")
	case <-e.peer.closed:
		if e.peer.dead.Load() {
			n.stats.discarded.Add(1)
			return nil
		}
		return e.errPeerClosed("Send")
	}
}

// decision is the fate of one frame.
type decision struct {
	lost, dup, hold bool
	delay, dupDelay time.Duration
}

// decide draws a frame's fate. Every frame consumes exactly five draws, so a
// link's fault sequence depends only on its seed and the number of frames.
func decide(r *mrand.Rand, f *Faults) decision {
	u1, u2, u3, u4, u5 := r.Float64(), r.Float64(), r.Float64(), r.Float64(), r.Float64()
	return decision{
		lost:     u1 < f.Loss,
		dup:      u2 < f.Duplicate,
		hold:     u3 < f.Reorder,
		delay:    f.Delay + time.Duration(u4*float64(f.Jitter)),
		dupDelay: f.Delay + time.Duration(u5*float64(f.Jitter)),
	}
}

func (e *Edge) sendFaulty(ctx context.Context, f *Faults, frame []byte) error {
	n := e.c.net
	p := e.out
	var d decision
	p.mu.Lock()
	if f != nil {
		d = decide(p.rng, f)
		if f.timed() && p.line == nil && !p.stopped {
			// From now on every frame of this direction goes through the
			// delivery goroutine, so that frames stay in order when the
			// faults change.
			p.line = make(chan item, n.queueLen)
			p.timed.Store(true)
			e.c.wg.Add(1)
			go p.run()
		}
	}
	line := p.line
	if line != nil {
		if p.stopped {
			p.mu.Unlock()
			return e.sendStopped()
		}
		p.senders.Add(1)
		defer p.senders.Done()
	}
	p.mu.Unlock()

	if d.lost {
		n.stats.sent.Add(1)
		n.stats.lost.Add(1)
		return nil
	}
	if line == nil {
		if err := e.put(ctx, clone(frame)); err != nil {
			return err
		}
		n.stats.sent.Add(1)
		if d.dup {
			n.stats.duplicated.Add(1)
			if err := e.put(ctx, clone(frame)); err != nil {
				n.stats.discarded.Add(1)
			}
		}
		return nil
	}
	now := time.Now()
	if err := e.enqueue(ctx, line, item{frame: clone(frame), at: now.Add(d.delay), hold: d.hold}); err != nil {
		return err
	}
	n.stats.sent.Add(1)
	if d.hold {
		n.stats.reordered.Add(1)
	}
	if d.dup {
		n.stats.duplicated.Add(1)
		if err := e.enqueue(ctx, line, item{frame: clone(frame), at: now.Add(d.dupDelay)}); err != nil {
			n.stats.discarded.Add(1)
		}
	}
	return nil
}

// sendStopped is Send on an edge whose delivery goroutine has stopped, because
// one side closed or died after Send's first checks.
func (e *Edge) sendStopped() error {
	if e.peer.dead.Load() {
		n := e.c.net
		n.stats.sent.Add(1)
		n.stats.discarded.Add(1)
		return nil
	}
	if isDone(e.closed) {
		return e.errClosed("Send")
	}
	return e.errPeerClosed("Send")
}

// enqueue hands it to the delivery goroutine, waiting for room.
func (e *Edge) enqueue(ctx context.Context, line chan<- item, it item) error {
	select {
	case line <- it:
		return nil
	default:
	}
	select {
	case line <- it:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-e.closed:
		return e.errClosed("Send")
	case <-e.peer.closed:
		if e.peer.dead.Load() {
			e.c.net.stats.discarded.Add(1)
			return nil
		}
		return e.errPeerClosed("Send")
	}
}

// Receive returns the next frame delivered to this side. After the peer
// closes the edge it returns the frames already delivered, then an error
// wrapping transport.ErrClosed; after this side is closed (or killed) it
// returns that error at once. It returns ctx's error if ctx ends first. A
// killed peer, a cut or a partition makes Receive wait: the transport cannot
// tell silence from failure.
func (e *Edge) Receive(ctx context.Context) ([]byte, error) {
	if isDone(e.closed) {
		return nil, e.errClosed("Receive")
	}
	select {
	case f := <-e.in:
		return f, nil
	default:
	}
	select {
	case f := <-e.in:
		return f, nil
	case <-e.closed:
		return nil, e.errClosed("Receive")
	case <-e.peer.fin:
		// Drain what was delivered before the close.
		select {
		case f := <-e.in:
			return f, nil
		default:
			return nil, e.errPeerClosed("Receive")
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
