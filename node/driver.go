package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/node/internal/core"
	"github.com/distrirender/distrirender/routing"
	"github.com/distrirender/distrirender/transport"
)

// The driver: one loop goroutine that owns the core and applies its Ready,
// a reader and a writer per edge, an accept goroutine per transport, a
// goroutine per handshake and per dial. Nothing but the loop touches the
// core; the others talk to it over the typed channels of Node.

// sendReq is one Send, Multicast or Broadcast on its way through the loop.
type sendReq struct {
	core.SendRequest
	one       [1]uuid.UUID // Dsts' storage for a Send
	frame1    [1][]byte    // Frames' storage for a Send or Broadcast
	cancelled atomic.Bool  // the caller gave up: the loop must not offer it
	fast      bool         // accepted by Send's fast path: nobody waits for the answer
	// done gets exactly one signal per use, from the loop, once err is set
	// (a send, not a close, so that the request can be used again).
	done chan struct{}
	err  error
}

// getReq takes a send request from the node's pool (Node.reqPool): requests,
// and their done channels, are recycled so that a Send allocates nothing but
// its frame in the steady state. A request goes back only once its answer
// was received: the loop holds no reference then.
func (n *Node) getReq() *sendReq {
	if r, ok := n.reqPool.Get().(*sendReq); ok {
		return r
	}
	return &sendReq{done: make(chan struct{}, 1)}
}

// putReq returns r to the pool; r's done signal must have been received.
func (n *Node) putReq(r *sendReq) {
	r.SendRequest = core.SendRequest{}
	r.one = [1]uuid.UUID{}
	r.frame1 = [1][]byte{}
	r.cancelled.Store(false)
	r.fast = false
	r.err = nil
	n.reqPool.Put(r)
}

// finish answers r: the one signal its submitter waits for.
func (r *sendReq) finish(err error) {
	r.err = err
	r.done <- struct{}{}
}

// outFrame copies body into a new buffer with room for the frame header in
// front of it: the core's first transmission writes the header in place, so
// a message is copied once on its way from Send to the transport.
func outFrame(body []byte) []byte {
	f := make([]byte, message.HeaderSize+len(body))
	copy(f[message.HeaderSize:], body)
	return f
}

// outFrame is outFrame for a unicast message: a large frame comes from the
// node's buffers, and goes back to them once the core hands it back
// (Ready.Free: every copy acknowledged, and written).
func (n *Node) outFrame(body []byte) []byte {
	f := n.bufs.get(message.HeaderSize + len(body))
	copy(f[message.HeaderSize:], body)
	return f
}

// submit hands a send request to the loop and waits until the core accepts
// or refuses it. When ctx ends first, the loop is asked to withdraw it:
// exactly one of acceptance and withdrawal wins, so a message is never both
// reported as not sent and sent.
//
// r comes from getReq; submit returns it to the pool unless the loop may
// still hold it (the node closed under it).
func (n *Node) submit(ctx context.Context, r *sendReq) error {
	select {
	case n.ctl <- r:
	case <-n.quit:
		n.putReq(r)
		return ErrClosed
	case <-ctx.Done():
		n.putReq(r)
		return ctx.Err()
	}
	select {
	case <-r.done:
		err := r.err
		n.putReq(r)
		return err
	case <-n.loopDone:
		return n.answered(r)
	case <-ctx.Done():
	}
	r.cancelled.Store(true)
	select {
	case n.ctl <- (*cancelReq)(r):
	case <-n.loopDone:
		return n.answered(r)
	}
	select {
	case <-r.done:
	case <-n.loopDone:
		return n.answered(r)
	}
	err := r.err
	n.putReq(r)
	if errors.Is(err, core.ErrCancelled) {
		return ctx.Err()
	}
	return err
}

// answered returns the loop's answer to r once the loop has stopped: it
// answered every request it took before it stopped, and one it never took
// was not sent.
func (n *Node) answered(r *sendReq) error {
	select {
	case <-r.done:
		if errors.Is(r.err, core.ErrCancelled) {
			return ErrClosed
		}
		return r.err
	default:
		return ErrClosed
	}
}

// ---- queries ----

type queryKind uint8

const (
	queryStats queryKind = iota
	queryNeighbors
	queryTopology
	queryDebug
	queryHello
)

// query reads the core's state on the loop goroutine.
type query struct {
	kind      queryKind
	done      chan struct{}
	stats     core.Stats
	neighbors []uuid.UUID
	topology  routing.Topology
	text      string
	hello     []byte
}

// ask runs a query on the loop, or returns nil once the loop has stopped.
func (n *Node) ask(kind queryKind) *query {
	q := &query{kind: kind, done: make(chan struct{})}
	select {
	case n.ctl <- q:
	case <-n.loopDone:
		return nil
	}
	<-q.done
	return q
}

func (n *Node) answer(q *query) {
	c := n.core
	switch q.kind {
	case queryStats:
		q.stats = c.Stats()
	case queryNeighbors:
		q.neighbors = c.Neighbors()
	case queryTopology:
		q.topology = c.Topology()
	case queryDebug:
		q.text = c.String()
	case queryHello:
		q.hello = c.HelloFrame()
	}
	close(q.done)
}

// ---- the loop ----

// maxBatch bounds the inputs the loop handles before it applies a Ready.
const maxBatch = 256

// loop is the node's event loop: the only goroutine that touches the core.
func (n *Node) loop() {
	defer n.wg.Done()
	defer close(n.loopDone)
	c := n.core
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var armed time.Time // the deadline the timer is set for; zero once it fired
	for {
		n.apply(c.Ready())
		c.Advance()
		n.fast.publish(c, nil)
		// A deadline in the past means: tick now.
		if d := c.Deadline(); armed.IsZero() || !d.Equal(armed) {
			timer.Reset(max(0, time.Until(d)))
			armed = d
		}
		// Room in the inbound queue matters only while deliveries wait for it.
		var space <-chan struct{}
		if c.Blocked() {
			space = n.in.Space()
		}
		select {
		case f := <-n.inbox:
			n.onFrame(time.Now(), f)
			n.batch()
		case w := <-n.written:
			n.onWritten(time.Now(), w)
			n.batch()
		case x := <-n.ctl:
			n.onCtl(time.Now(), x)
			n.batch()
		case <-n.fast.wake:
			n.drainFast(time.Now())
			n.batch()
		case <-timer.C:
			armed = time.Time{}
			// Frames already read are signs of life: handle them before
			// the failure detector looks at the neighbours.
			n.batch()
			c.Tick(time.Now())
		case <-space:
			c.SetRoom(time.Now(), n.in.Cap()-n.in.Len())
		case <-n.closing:
			n.shutdown()
			return
		}
	}
}

// batch handles the frames, write completions and send requests already
// waiting, up to a bound, so that one Ready (and one ack per stream) covers
// them all.
func (n *Node) batch() {
	for range maxBatch {
		select {
		case f := <-n.inbox:
			n.onFrame(time.Now(), f)
		case w := <-n.written:
			n.onWritten(time.Now(), w)
		case x := <-n.ctl:
			n.onCtl(time.Now(), x)
		case <-n.fast.wake:
			n.drainFast(time.Now())
		default:
			return
		}
	}
}

// cancelReq is a send request whose caller gave up (on n.ctl).
type cancelReq sendReq

// onCtl handles an input of n.ctl: every input of the loop but frames,
// written batches and the fast path's wake-ups, which have channels of their
// own. One channel for them keeps the loop's select small: its cost grows
// with the number of channels it waits on.
func (n *Node) onCtl(now time.Time, x any) {
	switch x := x.(type) {
	case *sendReq:
		n.onSend(now, x)
	case *cancelReq:
		n.core.Cancel(now, x.ID)
	case *handshake:
		n.onHandshake(now, x)
	case dialResult:
		n.core.DialDone(now, x.token, x.addr, x.err)
	case *query:
		n.answer(x)
	case Event:
		n.emit(x)
	default:
		panic(fmt.Sprintf("node: unknown loop input %T", x))
	}
}

func (n *Node) onFrame(now time.Time, f inFrame) {
	if f.err != nil {
		n.core.EdgeFailed(now, f.link, f.err)
		return
	}
	n.core.Frame(now, f.link, f.m, f.frame)
}

func (n *Node) onWritten(now time.Time, w writeResult) {
	if l := n.links[w.link]; l != nil {
		l.pending = false
	}
	if w.err != nil {
		n.core.EdgeFailed(now, w.link, w.err)
		return
	}
	n.core.WriteDone(now, w.link)
}

func (n *Node) onSend(now time.Time, r *sendReq) {
	// What Send's fast path queued before r goes first: one goroutine's
	// messages keep their order.
	n.drainFast(now)
	if r.cancelled.Load() {
		r.finish(core.ErrCancelled)
		return
	}
	n.offer(now, r)
	if len(r.Dsts) == 1 && !r.Bcast {
		n.fast.publish(n.core, r.Dsts) // the fast path may take the next ones
	}
}

// drainFast offers the core what Send's fast path queued.
func (n *Node) drainFast(now time.Time) {
	for _, r := range n.fast.take() {
		n.offer(now, r)
	}
}

// offer hands r to the core, which answers it in a Ready.
func (n *Node) offer(now time.Time, r *sendReq) {
	n.reqID++
	r.ID = n.reqID
	n.reqs[r.ID] = r
	n.core.Send(now, &r.SendRequest)
}

// apply carries out a Ready, in the order the core documents.
func (n *Node) apply(rd core.Ready) {
	for _, w := range rd.Writes {
		l := n.links[w.Link]
		if l == nil {
			continue // closed meanwhile: the core learns it from the reader
		}
		l.pending = true
		l.writes <- w.Frames // never blocks: one Write per edge at a time
	}
	for _, id := range rd.Close {
		if l := n.links[id]; l != nil {
			delete(n.links, id)
			l.close()
		}
	}
	for _, d := range rd.Deliveries {
		dv := Delivery{From: d.From, Body: d.Body, Broadcast: d.Broadcast, Index: d.Index}
		if cap(d.Body) > len(d.Body) {
			dv.bufs = &n.bufs // read into the pool (reader); other bodies are left to the GC
		}
		n.in.TryPush(dv)
	}
	for _, a := range rd.Answers {
		if r := n.reqs[a.ID]; r != nil {
			delete(n.reqs, a.ID)
			if !r.fast {
				r.finish(a.Err)
				continue
			}
			// Send has returned: a message refused now (the node is
			// closing) is reported as a failure, as an accepted one is.
			if a.Err != nil {
				for i, d := range r.Dsts {
					n.emit(Event{Kind: DeliveryFailed, Peer: d, Body: r.Frames[i][message.HeaderSize:], Err: a.Err})
				}
			}
			n.putReq(r)
		}
	}
	for _, e := range rd.Events {
		n.emit(Event{Kind: EventKind(e.Kind), Peer: e.Peer, Broadcast: e.Broadcast, Index: e.Index, Body: e.Body, Err: e.Err, Addr: e.Addr})
	}
	for _, a := range rd.EntryAnswers {
		if ch := n.waits[a.Link]; ch != nil {
			delete(n.waits, a.Link)
			ch <- a.Addrs
		}
	}
	for _, d := range rd.Dials {
		n.wg.Add(1)
		go n.dial(d)
	}
	for _, f := range rd.Free {
		n.bufs.put(f)
	}
}

// shutdown says goodbye, gives the writers a moment to put the goodbyes on
// the wire, and stops everything.
func (n *Node) shutdown() {
	c := n.core
	// Sends already accepted by the fast path go to the core, which
	// reports them failed with the rest.
	for _, r := range n.fast.close() {
		n.offer(time.Now(), r)
	}
	c.Shutdown(time.Now())
	grace := time.NewTimer(time.Second)
	defer grace.Stop()
flush:
	for {
		n.apply(c.Ready())
		c.Advance()
		if !n.writing() {
			break
		}
		select {
		case w := <-n.written:
			n.onWritten(time.Now(), w)
		case <-grace.C:
			break flush
		}
	}
	n.final = c.Stats()
	close(n.quit)
	n.cancel()
	for _, l := range n.links {
		l.close()
	}
	for _, t := range n.trs {
		t.Close()
	}
	n.in.Close()
	close(n.events)
}

// writing reports whether a writer still has a Write.
func (n *Node) writing() bool {
	for _, l := range n.links {
		if l.pending {
			return true
		}
	}
	return false
}

// ---- edges ----

// link is an edge the core knows: a neighbour's, or one waiting to be
// closed. The loop owns it; the reader and writer touch only edge and the
// channels.
type link struct {
	id      core.LinkID
	edge    transport.Edge
	writes  chan [][]byte // one Write at a time, from the loop
	stop    chan struct{}
	pending bool // a Write is with the writer
	closed  bool
}

func (n *Node) newLink(e transport.Edge) *link {
	return &link{
		id:     core.LinkID(n.nextLink.Add(1)),
		edge:   e,
		writes: make(chan [][]byte, 1),
		stop:   make(chan struct{}),
	}
}

func (l *link) close() {
	if !l.closed {
		l.closed = true
		close(l.stop)
		l.edge.Close()
	}
}

// inFrame is a decoded frame from an edge; frame owns the bytes m aliases.
// With err set it is instead the end of the edge, queued behind the frames
// read before it, so that a goodbye is handled before the close after it.
type inFrame struct {
	link  core.LinkID
	m     message.Message
	frame []byte
	err   error
}

// writeResult reports that a writer finished a Write, or failed.
type writeResult struct {
	link core.LinkID
	err  error
}

// start launches the edge's reader and writer.
func (n *Node) start(l *link) {
	n.wg.Add(2)
	go n.reader(l)
	go n.writer(l)
}

func (n *Node) reader(l *link) {
	defer n.wg.Done()
	var lent []byte // the last buffer get gave the edge
	get := func(size int) []byte {
		lent = n.bufs.get(size)
		return lent
	}
	for {
		f, err := transport.ReceiveBuffer(n.ctx, l.edge, get)
		if err != nil {
			n.receiveFailed(err)
			select {
			case n.inbox <- inFrame{link: l.id, err: err}:
			case <-n.quit:
			}
			return
		}
		pooled := len(f) > 0 && len(lent) > 0 && &f[0] == &lent[0]
		m, err := message.Decode(f, n.cfg.core.MaxBody)
		if err != nil {
			n.hostileFrame(err)
			if pooled {
				n.bufs.put(f)
			}
			continue
		}
		if pooled {
			// The frame is alone in a buffer of the pool: the body's
			// capacity reaches the buffer's end, which tells apply that
			// Delivery.Release may give it back, and makes it worth
			// reusing.
			m.Body = f[message.HeaderSize:len(f):cap(f)]
		}
		select {
		case n.inbox <- inFrame{link: l.id, m: m, frame: f}:
		case <-n.quit:
			return
		}
	}
}

// hostileFrame counts and logs a frame that did not decode. Logging is
// thinned to powers of two so that a flood of garbage cannot flood the log.
func (n *Node) hostileFrame(err error) {
	if c := n.undecodable.Add(1); c&(c-1) == 0 {
		n.log.Warn("hostile input", "what", "undecodable frame", "err", err, "total", c)
	}
}

func (n *Node) writer(l *link) {
	defer n.wg.Done()
	for {
		select {
		case frames := <-l.writes:
			// One batch per Write: a stream transport gathers it into one
			// buffered write (transport.BatchSender).
			err := transport.SendBatch(n.ctx, l.edge, frames)
			select {
			case n.written <- writeResult{link: l.id, err: err}:
			case <-n.quit:
				return
			}
			if err != nil {
				return
			}
		case <-l.stop:
			return
		}
	}
}

// ---- handshakes ----

// handshake asks the loop to admit an incoming edge (addr empty) or to
// register one this node dialled at addr.
type handshake struct {
	edge  transport.Edge
	id    uuid.UUID
	epoch uint64
	hello message.Hello
	addr  string
	dial  bool
	early []inFrame // frames that overtook the welcome (dial)

	done chan struct{}
	adm  core.Admission
	wait chan []string // entry points, when adm.Wait
	err  error         // Register's answer
}

func (n *Node) onHandshake(now time.Time, h *handshake) {
	defer close(h.done)
	l := n.newLink(h.edge)
	if !h.dial {
		h.adm = n.core.Admit(now, l.id, h.id, h.epoch, h.hello)
		switch {
		case h.adm.Accepted:
			n.links[l.id] = l
			n.start(l)
		case h.adm.Wait:
			h.wait = make(chan []string, 1)
			n.waits[l.id] = h.wait
		}
		return
	}
	h.err = n.core.Register(now, l.id, h.id, h.epoch, h.hello, h.addr)
	switch {
	case h.err == nil:
		n.links[l.id] = l
		for _, f := range h.early {
			n.core.Frame(now, l.id, f.m, f.frame)
		}
		n.start(l)
	case errors.Is(h.err, ErrDuplicateEdge):
		n.links[l.id] = l // the core closes it after the handshake timeout
	}
}

// handshakeWith runs h on the loop.
func (n *Node) handshakeWith(ctx context.Context, h *handshake) error {
	h.done = make(chan struct{})
	select {
	case n.ctl <- h:
	case <-n.quit:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	<-h.done
	return nil
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
		src := source(e.RemoteAddr())
		if !n.gate.enter(src) {
			n.refuseEdge(e)
			continue
		}
		n.wg.Add(1)
		go func() {
			defer n.gate.leave(src)
			n.acceptHandshake(e)
		}()
	}
}

// acceptHandshake reads the dialer's hello, asks the loop for admission and
// answers with welcome (queued by the core, first on the new edge) or with
// reject.
func (n *Node) acceptHandshake(e transport.Edge) {
	defer n.wg.Done()
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.core.Handshake)
	defer cancel()
	m, hello, err := n.readHello(ctx, e, helloWait(n.cfg.core.Handshake))
	if err == nil {
		m, hello, err = n.admitAuth(ctx, e, m, hello)
	}
	if err != nil {
		if isAuth(err) {
			n.authFailed(e.RemoteAddr(), err)
		}
		n.log.Debug("incoming handshake failed", "remote", e.RemoteAddr(), "err", err)
		e.Close()
		return
	}
	h := &handshake{edge: e, id: m.UID.Node, epoch: m.Header.Epoch, hello: hello}
	if err := n.handshakeWith(ctx, h); err != nil || h.adm.Accepted {
		if err != nil {
			e.Close()
		}
		return
	}
	rej := h.adm.Reject
	if h.wait != nil {
		// Full, and no entry point known: the mesh was asked for one.
		select {
		case eps := <-h.wait:
			rej.EntryPoints = eps
		case <-ctx.Done():
		}
	}
	_ = e.Send(ctx, n.control(message.TypeReject, rej.Append(nil)))
	e.Close()
}

// control encodes a link-local control frame for a handshake.
func (n *Node) control(typ message.Type, body []byte) []byte {
	return core.HandshakeFrame(n.id, n.epoch, n.cfg.core.HopLimit, typ, body)
}

// readHello reads the first frame of an incoming edge, the dialler's hello,
// waiting at most wait: an edge that says nothing is let go early, so that
// idle connections cannot hold the handshake slots (see gate).
func (n *Node) readHello(ctx context.Context, e transport.Edge, wait time.Duration) (message.Message, message.Hello, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	f, err := e.Receive(ctx)
	if err != nil {
		n.receiveFailed(err)
		return message.Message{}, message.Hello{}, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	return n.parseHandshake(f, message.TypeHello)
}

// parseHandshake decodes a handshake frame of the wanted type (or a reject,
// for the dialler), counting one that does not decode as hostile.
func (n *Node) parseHandshake(f []byte, want message.Type) (message.Message, message.Hello, error) {
	m, h, err := core.ParseHandshake(f, want, n.cfg.core.MaxBody)
	var rej *core.RejectError
	var bad *message.DecodeError
	switch {
	case errors.As(err, &rej) && rej.Reason == message.RejectAuth:
		return m, h, fmt.Errorf("%w: %s refused this node: no accepted cluster secret or identity: %w", ErrAuth, rej.Peer,
			&RejectedError{Peer: rej.Peer, Reason: rej.Reason})
	case errors.As(err, &rej):
		return m, h, &RejectedError{Peer: rej.Peer, Reason: rej.Reason, EntryPoints: rej.EntryPoints}
	case errors.As(err, &bad):
		n.hostileFrame(err)
	}
	return m, h, err
}

// ---- dialling ----

// maxRedirects bounds how many entry points Connect follows.
const maxRedirects = 8

// Connect opens an edge to the node at addr and returns once it is a
// neighbour. If that node is full, Connect follows the entry points it hands
// back (up to 8 redirects, never the same address twice), emitting a
// Redirected event for each; it tries each of the node's transports in turn.
// On links that lose, reorder or delay frames it says hello again until
// answered, and a handshake that still fails is tried again (4 times at most,
// within ctx).
// It returns ErrNoEntryPoint when the mesh offers no node that can accept,
// ErrDuplicateEdge when the edge exists already, and ErrFull when this node
// has MaxConnections neighbours by the time the handshake completes (it then
// says goodbye on the new edge and closes it).
func (n *Node) Connect(ctx context.Context, addr string) error {
	tried := map[string]bool{}
	for range maxRedirects + 1 {
		tried[addr] = true
		err := n.connectOnce(ctx, addr)
		// A handshake lost to a lossy link is tried again, within ctx.
		for try := 0; errors.Is(err, ErrHandshake) && try+1 < core.HandshakeTries; try++ {
			t := time.NewTimer(core.RetryAfter(try))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return err
			case <-n.quit:
				t.Stop()
				return ErrClosed
			}
			err = n.connectOnce(ctx, addr)
		}
		var rej *RejectedError
		if !errors.As(err, &rej) || rej.Reason != message.RejectFull {
			return err
		}
		next := ""
		for _, ep := range rej.EntryPoints {
			if !tried[ep] && !slices.Contains(n.adv, ep) {
				next = ep
				break
			}
		}
		if next == "" {
			return fmt.Errorf("%w: %s is full: %w", ErrNoEntryPoint, addr, err)
		}
		n.log.Debug("redirected", "from", addr, "to", next)
		select {
		case n.ctl <- Event{Kind: Redirected, Addr: next, Peer: rej.Peer}:
		case <-n.quit:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
		addr = next
	}
	return fmt.Errorf("%w: gave up at %s", ErrTooManyRedirects, addr)
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
	ctx, cancel := context.WithTimeout(ctx, core.TryTimeout(n.cfg.core.Handshake))
	defer cancel()
	q := n.ask(queryHello)
	if q == nil {
		e.Close()
		return ErrClosed
	}
	hello := q.hello
	var auth *dialAuth
	if n.cfg.creds.On() {
		var err error
		if auth, hello, err = n.startDialAuth(hello); err != nil {
			e.Close()
			return err
		}
	}
	var current atomic.Pointer[[]byte] // the hello to say again: the proof once challenged
	current.Store(&hello)
	if err := e.Send(ctx, hello); err != nil {
		e.Close()
		return fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	// Say hello again while no answer comes: on a link that loses frames
	// the hello or the welcome may be gone. This goroutine is the edge's
	// only sender until the handshake ends (the Edge contract): a kick
	// makes it send the current hello at once (the proof, once challenged).
	stop := make(chan struct{})
	kick := make(chan struct{}, 1)
	var again sync.WaitGroup
	again.Add(1)
	go func() {
		defer again.Done()
		prev := time.Duration(0)
		for k := 0; ; k++ {
			next := core.HelloAgainAfter(k)
			t := time.NewTimer(next - prev)
			prev = next
			for fired := false; !fired; {
				select {
				case <-t.C:
					fired = true
				case <-kick:
				case <-stop:
					t.Stop()
					return
				case <-ctx.Done():
					t.Stop()
					return
				}
				_ = e.Send(ctx, *current.Load())
			}
		}
	}()
	m, welcome, early, err := n.readWelcome(ctx, e, auth, &current, kick)
	close(stop)
	again.Wait()
	if err != nil {
		if isAuth(err) {
			n.authFailed(addr, err)
			n.refuseAuth(ctx, e) // harmless if the other side refused first
		}
		e.Close()
		return err
	}
	h := &handshake{edge: e, id: m.UID.Node, epoch: m.Header.Epoch, hello: welcome, addr: addr, dial: true, early: early}
	if err := n.handshakeWith(ctx, h); err != nil {
		e.Close()
		return err
	}
	switch {
	case h.err == nil, errors.Is(h.err, ErrDuplicateEdge):
		// The loop owns the edge now (a duplicate is closed after the
		// handshake timeout: the other side may still hold it).
		return h.err
	case errors.Is(h.err, ErrFull):
		// The other side took this node as a neighbour: tell it this is a
		// hang-up, not a failure.
		_ = e.Send(ctx, n.control(message.TypeGoodbye, nil))
	}
	e.Close()
	return h.err
}

// readWelcome reads the answer to a hello: a welcome, or a reject; with
// auth, it answers the challenge before (storing the proving hello in
// current, and kicking the goroutine that sends it). Frames of the other side that overtook its welcome (it sends
// them as soon as it has accepted) are kept, up to core.MaxEarlyFrames,
// for the core.
func (n *Node) readWelcome(ctx context.Context, e transport.Edge, auth *dialAuth, current *atomic.Pointer[[]byte], kick chan<- struct{}) (message.Message, message.Hello, []inFrame, error) {
	var early []inFrame
	for {
		f, err := e.Receive(ctx)
		if err != nil {
			n.receiveFailed(err)
			return message.Message{}, message.Hello{}, nil, fmt.Errorf("%w: %w", ErrHandshake, err)
		}
		typ := message.PeekType(f)
		if typ == message.TypeChallenge && auth != nil {
			proof, err := auth.onChallenge(f)
			switch {
			case err != nil:
				return message.Message{}, message.Hello{}, nil, err
			case proof != nil:
				current.Store(&proof)
				select {
				case kick <- struct{}{}:
				default: // a kick is pending already
				}
			}
			continue
		}
		if typ != message.TypeWelcome && typ != message.TypeReject {
			m, err := message.Decode(f, n.cfg.core.MaxBody)
			switch {
			case err != nil:
				n.hostileFrame(err)
			case len(early) < core.MaxEarlyFrames:
				early = append(early, inFrame{m: m, frame: f})
			}
			continue
		}
		m, h, err := n.parseHandshake(f, message.TypeWelcome)
		if err == nil && auth != nil {
			err = auth.checkWelcome(m)
		}
		return m, h, early, err
	}
}

// dialResult reports a core's Dial done.
type dialResult struct {
	token uint64
	addr  string
	err   error
}

// dial runs a core's Dial: Connect with redirects, bounded by the handshake
// timeout.
func (n *Node) dial(d core.Dial) {
	defer n.wg.Done()
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.core.Handshake)
	defer cancel()
	err := n.Connect(ctx, d.Addr)
	select {
	case n.ctl <- dialResult{token: d.Token, addr: d.Addr, err: err}:
	case <-n.quit:
	}
}
