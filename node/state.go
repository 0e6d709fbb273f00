package node

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/queue"
	"github.com/distrirender/distrirender/reliability"
	"github.com/distrirender/distrirender/routing"
	"github.com/distrirender/distrirender/transport"
)

// Reasons a neighbour goes down, reported in NeighborDown events.
var (
	ErrPeerSilent   = errors.New("node: neighbour silent past the keepalive limit")
	ErrPeerLeft     = errors.New("node: neighbour said goodbye")
	ErrPeerReplaced = errors.New("node: neighbour restarted")
)

const (
	reqPending int32 = iota
	reqAccepted
	reqCancelled
)

// sendReq is one Send, Multicast or Broadcast waiting for the loop.
type sendReq struct {
	dsts  []uuid.UUID  // unicast and multicast
	one   [1]uuid.UUID // dsts' storage for a Send
	bcast bool
	// frames holds one outFrame of the body per stream: dsts in order, or
	// the broadcast stream.
	frames [][]byte
	frame1 [1][]byte     // frames' storage for a Send or Broadcast
	state  atomic.Int32  // reqPending until the loop accepts or the caller gives up
	done   chan struct{} // closed by the loop once err is set
	err    error
}

// outFrame copies body into a new buffer with room for the frame header in
// front of it. A stream's backlog holds such buffers, each the stream's own:
// the first transmission writes the header into the room and sends the
// buffer as it is (message.AppendHeader), so a message is copied once on
// its way from Send to the transport; retransmissions encode new frames.
// The reliability Sender keeps frame[message.HeaderSize:] as the body.
func outFrame(body []byte) []byte {
	f := make([]byte, message.HeaderSize+len(body))
	copy(f[message.HeaderSize:], body)
	return f
}

// bodyOf returns the body of an outFrame.
func bodyOf(frame []byte) []byte { return frame[message.HeaderSize:] }

// outStream is this node's stream to one destination, or its broadcast stream.
type outStream struct {
	dst      uuid.UUID // uuid.Nil for the broadcast stream
	dstEpoch uint64    // the destination's epoch when last seen; 0 if unknown

	blockedBy    uuid.UUID // the target holding the window back (Sender.Blocked)
	blockedSince time.Time
	targets      []uuid.UUID // {dst} for unicast, reused for every Push
	snd          *reliability.Sender
	backlog      *queue.Ring[[]byte]
}

// rxKey names an incoming stream: a source's unicast or broadcast stream.
type rxKey struct {
	src   uuid.UUID
	bcast bool
}

// topologyEventGap coalesces TopologyChanged events while routes converge.
const topologyEventGap = 100 * time.Millisecond

// state is everything the loop owns. Only the loop goroutine touches it.
type state struct {
	n   *Node
	now time.Time
	rt  *routing.Table

	peers   map[uuid.UUID]*peer
	out     map[uuid.UUID]*outStream
	bcast   *outStream
	rx      map[rxKey]*reliability.Receiver
	parked  []*sendReq
	ackDue  map[rxKey]struct{} // acks to send once the current batch is handled
	blocked map[rxKey]struct{} // streams with deliveries waiting for inbound room

	redials map[string]*redial
	bal     balancer
	epochs  map[uuid.UUID]uint64 // last epoch seen per origin, to notice restarts

	entryID      uint64
	entryWaits   map[int32]entryWaiter
	seen         map[message.UID]struct{} // entry requests already flooded
	seenOrder    []message.UID
	streamResets uint64
	reachable    map[uuid.UUID]struct{}
	patience     map[uuid.UUID]*patience
	rtVersion    uint64
	topoDirty    bool
	topoLast     time.Time
	closed       bool
	connected    bool
}

func newState(n *Node, now time.Time) *state {
	st := &state{
		n:          n,
		now:        now,
		rt:         routing.New(n.id, n.epoch, now, n.cfg.rt),
		peers:      make(map[uuid.UUID]*peer),
		out:        make(map[uuid.UUID]*outStream),
		rx:         make(map[rxKey]*reliability.Receiver),
		ackDue:     make(map[rxKey]struct{}),
		blocked:    make(map[rxKey]struct{}),
		redials:    make(map[string]*redial),
		bal:        balancer{avoid: make(map[string]time.Time)},
		epochs:     make(map[uuid.UUID]uint64),
		entryWaits: make(map[int32]entryWaiter),
		seen:       make(map[message.UID]struct{}),
		reachable:  make(map[uuid.UUID]struct{}),
		patience:   make(map[uuid.UUID]*patience),
	}
	st.bcast = st.newStream(uuid.Nil)
	st.rt.SetLocal(now, n.adv, st.free())
	st.rtVersion = st.rt.Version()
	return st
}

func (st *state) newStream(dst uuid.UUID) *outStream {
	s := &outStream{
		dst:     dst,
		snd:     reliability.NewSender(st.n.cfg.rel, st.n.epoch),
		backlog: queue.NewRing[[]byte](st.n.cfg.backlog),
	}
	if dst != uuid.Nil {
		s.targets = []uuid.UUID{dst}
		s.dstEpoch, _ = st.rt.Epoch(dst)
	}
	return s
}

// loop is the node's event loop: the only goroutine that touches st.
func (n *Node) loop() {
	defer n.wg.Done()
	defer close(n.loopDone)
	st := n.st
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var armed time.Time // the deadline the timer is set for; zero once it fired
	for {
		st.flush()
		// A deadline in the past (or the zero time) means: tick now.
		if d := st.nextDeadline(); armed.IsZero() || !d.Equal(armed) {
			timer.Reset(max(0, time.Until(d)))
			armed = d
		}
		// Room in the inbound queue matters only while deliveries wait for it.
		var space <-chan struct{}
		if len(st.blocked) > 0 {
			space = n.in.Space()
		}
		select {
		case f := <-n.inbox:
			st.now = time.Now()
			st.handle(f)
			st.batch()
		case r := <-n.sends:
			st.now = time.Now()
			st.submit(r)
			st.batch()
		case f := <-n.reqs:
			st.now = time.Now()
			f()
		case <-timer.C:
			armed = time.Time{}
			st.now = time.Now()
			st.tick()
		case <-space:
			st.now = time.Now()
			st.deliverBlocked()
		case <-n.closing:
			st.now = time.Now()
			st.shutdown()
			return
		}
	}
}

// batch handles the frames and send requests already waiting, up to a bound,
// before the loop flushes: one ack then covers a whole batch, and the
// deadlines are computed once for it.
func (st *state) batch() {
	n := st.n
	for range 64 {
		select {
		case f := <-n.inbox:
			st.handle(f)
		case r := <-n.sends:
			st.submit(r)
		default:
			return
		}
	}
}

// flush sends the acks due and reports topology changes.
func (st *state) flush() {
	for k := range st.ackDue {
		if rx := st.rx[k]; rx != nil {
			st.sendAck(k, rx)
		}
		delete(st.ackDue, k)
	}
	if v := st.rt.Version(); v != st.rtVersion {
		st.rtVersion = v
		st.topoDirty = true
		st.reachabilityChanged()
	}
	if st.topoDirty && st.now.Sub(st.topoLast) >= topologyEventGap {
		st.topoDirty = false
		st.topoLast = st.now
		st.n.emit(Event{Kind: TopologyChanged})
	}
}

func (st *state) nextDeadline() time.Time {
	d := st.rt.NextDeadline()
	if st.topoDirty {
		d = minTime(d, st.topoLast.Add(topologyEventGap))
	}
	for _, r := range st.redials {
		if !r.busy {
			d = minTime(d, r.next)
		}
	}
	if !st.bal.busy && st.n.cfg.minConns > 0 {
		d = minTime(d, st.bal.next)
	}
	for _, w := range st.entryWaits {
		d = minTime(d, w.until)
	}
	ka := st.n.cfg.keepalive
	for _, p := range st.peers {
		d = minTime(d, p.lastSent.Add(ka))
		d = minTime(d, st.lastHeard(p).Add(p.silence))
	}
	d = st.streamDeadline(d, st.bcast)
	for _, s := range st.out {
		d = st.streamDeadline(d, s)
	}
	return d
}

func (st *state) streamDeadline(d time.Time, s *outStream) time.Time {
	t, ok := s.snd.Deadline()
	if !ok {
		return d
	}
	if t.Before(st.now) {
		t = st.now // a zero time means "tick now": a target was just added
	}
	return minTime(d, t)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// lastHeard returns when a frame from p last arrived: handled by the loop,
// or only decoded by p's reader and still queued for the loop.
func (st *state) lastHeard(p *peer) time.Time {
	return maxTime(p.lastRecv, st.n.born.Add(time.Duration(p.heard.Load())))
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// tick runs every timer that is due.
func (st *state) tick() {
	now, n := st.now, st.n
	for _, p := range st.peers {
		switch {
		case now.Sub(st.lastHeard(p)) >= p.silence:
			st.dropPeer(p, ErrPeerSilent)
		case now.Sub(p.lastSent) >= n.cfg.keepalive:
			st.enqueue(p, n.frame(message.TypeKeepalive, 0, uuid.Nil, nil), true)
		}
	}
	st.runRedials()
	st.runBalance()
	st.expireEntryWaits()
	st.tickStream(st.bcast)
	for _, s := range st.out {
		st.tickStream(s)
	}
	if s, ok := st.rt.Refresh(now); ok {
		st.floodStates(nil, message.StateList{s})
	}
	if len(st.peers) == 0 {
		// Cut off: no refresh can arrive, so ageing would only forget the
		// nodes through which balancing finds the way back.
		st.rt.Hold(now)
	}
	for _, id := range st.rt.Expire(now) {
		st.forget(id)
	}
}

func (st *state) tickStream(s *outStream) {
	st.checkBlocked(s)
	resend, failed := s.snd.Tick(st.now)
	for _, r := range resend {
		st.n.stats.retransmits.Add(1)
		st.transmit(s, r.Target, r.Packet, nil)
	}
	for _, f := range failed {
		st.report(s, f)
	}
	if len(failed) > 0 {
		st.pump(s)
		st.unpark()
	}
}

func (st *state) report(s *outStream, f reliability.Failure) {
	st.n.stats.failed.Add(1)
	st.n.emit(Event{Kind: DeliveryFailed, Peer: f.Target, Broadcast: s.dst == uuid.Nil, Index: f.Seq, Body: f.Body, Err: f.Err})
}

// ---- frames ----

// frame encodes a link-local control frame.
func (n *Node) frame(typ message.Type, flags message.Flags, target uuid.UUID, body []byte) []byte {
	return n.encode(typ, flags, target, 0, 0, body)
}

func (n *Node) encode(typ message.Type, flags message.Flags, target uuid.UUID, index int32, ref uint32, body []byte) []byte {
	return n.encodeWith(typ, flags, target, n.epoch, index, ref, body)
}

// encodeData encodes a data packet of a stream with the given epoch.
func (n *Node) encodeData(typ message.Type, target uuid.UUID, epoch uint64, pkt reliability.Packet) []byte {
	return n.encodeWith(typ, 0, target, epoch, int32(pkt.Seq), pkt.Base, pkt.Body)
}

// dataMessage is the message of a data packet of a stream with the given epoch.
func (n *Node) dataMessage(typ message.Type, target uuid.UUID, epoch uint64, pkt reliability.Packet) *message.Message {
	return n.message(typ, 0, target, epoch, int32(pkt.Seq), pkt.Base, pkt.Body)
}

func (n *Node) message(typ message.Type, flags message.Flags, target uuid.UUID, epoch uint64, index int32, ref uint32, body []byte) *message.Message {
	return &message.Message{
		UID:    message.UID{Node: n.id, Index: index},
		Header: message.Header{Type: typ, Flags: flags, HopLimit: n.cfg.hopLimit, Target: target, Epoch: epoch, Ref: ref},
		Body:   body,
	}
}

func (n *Node) encodeWith(typ message.Type, flags message.Flags, target uuid.UUID, epoch uint64, index int32, ref uint32, body []byte) []byte {
	return n.message(typ, flags, target, epoch, index, ref, body).Encode()
}

// enqueue queues a frame for a neighbour without ever blocking the loop; a
// full queue drops the frame (end-to-end reliability recovers data, and
// link state is refreshed).
func (st *state) enqueue(p *peer, f []byte, ctrl bool) bool {
	ch := p.data
	if ctrl {
		ch = p.ctrl
	}
	select {
	case ch <- f:
		st.n.stats.framesOut.Add(1)
		switch message.Type(f[1]) {
		case message.TypeNetworkState, message.TypeNetworkStateRequest, message.TypeNewEdge, message.TypeDestroyEdge:
			st.n.stats.topology.Add(1)
		}
		p.lastSent = st.now
		return true
	default:
		st.n.stats.droppedForward.Add(1)
		return false
	}
}

// route queues a frame towards dst by the routing table.
func (st *state) route(dst uuid.UUID, f []byte, ctrl bool) bool {
	nh, ok := st.rt.NextHop(dst)
	p := st.peers[nh]
	if !ok || p == nil {
		st.n.stats.droppedNoRoute.Add(1)
		return false
	}
	return st.enqueue(p, f, ctrl)
}

// ---- incoming frames ----

func (st *state) handle(f inFrame) {
	if f.err != nil {
		st.edgeFailed(f.p, f.err)
		return
	}
	p, m, n := f.p, f.m, st.n
	if st.peers[p.id] != p {
		return // an edge that was replaced or dropped
	}
	p.lastRecv = st.now
	switch m.Header.Type {
	case message.TypeEntryRequest:
		st.onEntryRequest(f)
		return
	case message.TypeEntryReply:
		if m.Header.Target != n.id {
			st.forward(f)
		} else {
			st.onEntryReply(p, m)
		}
		return
	case message.TypeMsg, message.TypeAck, message.TypeMsgBroadcast:
		if m.UID.Node == n.id {
			if m.Header.Type != message.TypeMsgBroadcast || m.Header.Target != uuid.Nil {
				n.hostile(p.id, "data claiming to come from this node", nil)
			}
			return // our own flood coming back
		}
		switch {
		case m.Header.Type == message.TypeMsgBroadcast && m.Header.Target == uuid.Nil:
			st.onFlood(f)
		case m.Header.Target != n.id:
			st.forward(f)
		case m.Header.Type == message.TypeAck:
			st.onAck(p, m)
		default:
			st.onData(p, m, m.Header.Type == message.TypeMsgBroadcast, m.Body)
		}
		return
	}
	if m.UID.Node != p.id {
		n.hostile(p.id, "control frame from another node's ID", nil)
		return
	}
	switch m.Header.Type {
	case message.TypeKeepalive:
	case message.TypeGoodbye:
		// The body may name the leaver's other neighbours: a node left short
		// of neighbours tries them first.
		if len(m.Body) > 0 {
			if h, err := message.DecodeHello(m.Body); err == nil {
				st.bal.addHints(st.now, h.Addrs)
			} else {
				n.hostile(p.id, "goodbye", err)
			}
		}
		st.dropPeer(p, ErrPeerLeft)
	case message.TypeNetworkState:
		sl, err := message.DecodeStateList(m.Body)
		if err != nil {
			n.hostile(p.id, "network_state", err)
			return
		}
		st.applyStates(p, sl)
	case message.TypeNetworkStateRequest:
		req, err := message.DecodeStateRequest(m.Body)
		if err != nil {
			n.hostile(p.id, "network_state_request", err)
			return
		}
		st.sendStates([]*peer{p}, st.rt.States(req))
	case message.TypeNewEdge, message.TypeDestroyEdge:
		c, err := message.DecodeEdgeChange(m.Body)
		if err != nil {
			n.hostile(p.id, m.Header.Type.String(), err)
			return
		}
		st.applyEdgeChange(p, m.Header.Type, c)
	default: // hello, welcome, reject after the handshake
		n.hostile(p.id, "unexpected "+m.Header.Type.String(), nil)
	}
}

// forward relays a frame addressed to another node.
func (st *state) forward(f inFrame) {
	if !decHopLimit(f.frame) {
		st.n.stats.droppedHop.Add(1)
		return
	}
	st.n.stats.forwarded.Add(1)
	st.route(f.m.Header.Target, f.frame, f.m.Header.Type == message.TypeAck)
}

// decHopLimit decrements the hop limit in an encoded frame in place
// (docs/PROTOCOL.md: byte 3) and reports whether the frame may travel on.
func decHopLimit(frame []byte) bool {
	if frame[3] <= 1 {
		return false
	}
	frame[3]--
	return true
}

// onFlood handles a flooded broadcast: deliver once, re-flood once.
func (st *state) onFlood(f inFrame) {
	m := f.m
	if !st.rt.Known(m.UID.Node) {
		return // we could not acknowledge it; the origin repairs later
	}
	// The frame is shared with the writers that re-flood it, so the
	// application gets its own copy of the body.
	if st.onData(f.p, m, true, slices.Clone(m.Body)) != reliability.Accepted {
		return
	}
	if !decHopLimit(f.frame) {
		return
	}
	for _, q := range st.peers {
		if q != f.p && st.enqueue(q, f.frame, false) {
			st.n.stats.forwarded.Add(1)
		}
	}
}

// onData feeds a data frame addressed to this node to its receive stream.
func (st *state) onData(p *peer, m message.Message, bcast bool, body []byte) reliability.Verdict {
	n := st.n
	k := rxKey{src: m.UID.Node, bcast: bcast}
	rx := st.rx[k]
	if rx == nil {
		if !st.rt.Known(k.src) {
			// Without the source's link state there is no route for the ack,
			// and state for unknown sources would let a neighbour grow memory.
			// The source retransmits once the mesh has converged.
			n.stats.droppedNoRoute.Add(1)
			return reliability.Stale
		}
		rx = reliability.NewReceiver(n.cfg.rel)
		st.rx[k] = rx
	}
	v, err := rx.OnData(m.Header.Epoch, uint32(m.UID.Index), m.Header.Ref, body)
	if err != nil {
		n.hostile(p.id, "data frame", err)
		return v
	}
	switch v {
	case reliability.Accepted:
		st.deliver(k, rx)
		st.ackDue[k] = struct{}{}
	case reliability.Duplicate:
		n.stats.duplicates.Add(1)
		// Flood copies arrive once per neighbour; only a copy sent to us
		// directly (a retransmission) asks for a new ack.
		if !bcast || m.Header.Target == n.id {
			st.ackDue[k] = struct{}{}
		}
	case reliability.OutOfWindow:
		st.ackDue[k] = struct{}{}
	}
	return v
}

// deliver moves in-order messages from a receive stream to the inbound queue
// while it has room; the rest wait (and stay unacknowledged: back-pressure).
func (st *state) deliver(k rxKey, rx *reliability.Receiver) {
	in := st.n.in
	for {
		if in.Len() >= in.Cap() {
			st.blocked[k] = struct{}{}
			return
		}
		body, seq, ok := rx.Pop()
		if !ok {
			return
		}
		in.TryPush(Delivery{From: k.src, Body: body, Broadcast: k.bcast, Index: seq})
		st.n.stats.delivered.Add(1)
		st.ackDue[k] = struct{}{}
	}
}

func (st *state) deliverBlocked() {
	for k := range st.blocked {
		delete(st.blocked, k)
		if rx := st.rx[k]; rx != nil {
			st.deliver(k, rx)
		}
	}
}

func (st *state) sendAck(k rxKey, rx *reliability.Receiver) {
	var flags message.Flags
	if k.bcast {
		flags = message.FlagBroadcastStream
	}
	a := rx.Ack()
	st.route(k.src, st.n.encode(message.TypeAck, flags, k.src, message.AckIndex, 0, a.Append(nil)), true)
}

func (st *state) onAck(p *peer, m message.Message) {
	a, err := message.DecodeAck(m.Body)
	if err != nil {
		st.n.hostile(p.id, "ack", err)
		return
	}
	s := st.out[m.UID.Node]
	if m.Header.Flags&message.FlagBroadcastStream != 0 {
		s = st.bcast
	}
	if s == nil {
		st.n.hostile(p.id, "ack for a stream never opened", nil)
		return
	}
	freed, err := s.snd.OnAck(st.now, m.UID.Node, a)
	switch {
	case errors.Is(err, reliability.ErrStaleAck):
		// An ack for this node's previous life: harmless.
	case errors.Is(err, reliability.ErrInvalidAck) && s == st.bcast:
		// A node that got a flood before this node knew it was reachable
		// acknowledges a broadcast it was not a target of: harmless.
	case err != nil:
		st.n.hostile(p.id, "ack", err)
	case freed > 0:
		st.pump(s)
		st.unpark()
	}
}

// ---- link state ----

func (st *state) free() uint16 {
	return uint16(max(0, st.n.cfg.maxConns-len(st.peers)))
}

func (st *state) applyStates(from *peer, sl message.StateList) {
	var fwd message.StateList
	for _, s := range sl {
		v, err := st.rt.ApplyState(st.now, s)
		switch v {
		case routing.Accepted:
			fwd = append(fwd, s)
			st.checkRestart(s.Origin, s.Epoch)
		case routing.Rejected:
			st.n.hostile(from.id, "network_state", err)
		}
	}
	st.floodStates(from, fwd)
}

// floodStates sends records to every neighbour but except, in frames that
// respect the body limit.
func (st *state) floodStates(except *peer, sl message.StateList) {
	var to []*peer
	for _, p := range st.peers {
		if p != except {
			to = append(to, p)
		}
	}
	st.sendStates(to, sl)
}

func (st *state) sendStates(to []*peer, sl message.StateList) {
	if len(to) == 0 {
		return
	}
	limit := min(st.n.cfg.maxBody, message.DefaultMaxBody) - 64
	for len(sl) > 0 {
		size, k := 2, 0
		for k < len(sl) && k < message.MaxStates {
			sz := len(message.StateList{sl[k]}.Append(nil)) - 2
			if k > 0 && size+sz > limit {
				break
			}
			size += sz
			k++
		}
		f := st.n.frame(message.TypeNetworkState, 0, uuid.Nil, sl[:k].Append(nil))
		for _, p := range to {
			st.enqueue(p, f, true)
		}
		sl = sl[k:]
	}
}

func (st *state) applyEdgeChange(from *peer, typ message.Type, c message.EdgeChange) {
	v, err := st.rt.ApplyEdgeChange(st.now, typ == message.TypeNewEdge, c)
	switch v {
	case routing.Accepted:
		st.floodEdgeChange(from, typ, c)
	case routing.Gap:
		req := message.StateRequest{c.Origin}
		st.enqueue(from, st.n.frame(message.TypeNetworkStateRequest, 0, uuid.Nil, req.Append(nil)), true)
	case routing.Rejected:
		st.n.hostile(from.id, typ.String(), err)
	}
}

func (st *state) floodEdgeChange(except *peer, typ message.Type, c message.EdgeChange) {
	f := st.n.frame(typ, 0, uuid.Nil, c.Append(nil))
	for _, p := range st.peers {
		if p != except {
			st.enqueue(p, f, true)
		}
	}
}

// reachabilityChanged makes newly reachable nodes targets of the broadcasts
// in flight.
func (st *state) reachabilityChanged() {
	for _, id := range st.rt.Reachable() {
		if _, ok := st.reachable[id]; !ok {
			st.reachable[id] = struct{}{}
			st.bcast.snd.AddTarget(id)
		}
	}
}

// forget drops everything about a node whose link state aged out: what was
// sent to it and not confirmed is reported failed.
func (st *state) forget(id uuid.UUID) {
	gone := fmt.Errorf("%w: %s left the mesh", reliability.ErrTargetGone, id)
	if s := st.out[id]; s != nil {
		for _, f := range s.snd.RemoveTarget(id, gone) {
			st.report(s, f)
		}
		for frame, ok := s.backlog.Pop(); ok; frame, ok = s.backlog.Pop() {
			st.report(s, reliability.Failure{Target: id, Body: bodyOf(frame), Err: gone})
		}
		delete(st.out, id)
	}
	for _, f := range st.bcast.snd.RemoveTarget(id, gone) {
		st.report(st.bcast, f)
	}
	st.pump(st.bcast)
	delete(st.rx, rxKey{src: id})
	delete(st.rx, rxKey{src: id, bcast: true})
	delete(st.reachable, id)
	delete(st.epochs, id)
	delete(st.patience, id)
	st.unpark()
}

// ---- sending ----

func (st *state) submit(r *sendReq) {
	if !st.tryAccept(r) {
		st.parked = append(st.parked, r)
	}
}

// tryAccept accepts r if every stream it needs has backlog room, and reports
// whether r is finished with (accepted, or abandoned by its caller).
func (st *state) tryAccept(r *sendReq) bool {
	if r.state.Load() == reqCancelled {
		return true
	}
	var buf [4]*outStream
	streams := buf[:0]
	if r.bcast {
		streams = append(streams, st.bcast)
	}
	for _, d := range r.dsts {
		s := st.out[d]
		if s == nil {
			s = st.newStream(d)
			st.out[d] = s
		}
		streams = append(streams, s)
	}
	for _, s := range streams {
		if s.backlog.Full() {
			return false
		}
	}
	if !r.state.CompareAndSwap(reqPending, reqAccepted) {
		return true
	}
	for i, s := range streams {
		s.backlog.Push(r.frames[i])
		st.pump(s)
	}
	close(r.done)
	return true
}

func (st *state) unpark() {
	if len(st.parked) == 0 {
		return
	}
	st.parked = slices.DeleteFunc(st.parked, st.tryAccept)
}

// pump moves messages from a stream's backlog into its window and sends them.
func (st *state) pump(s *outStream) {
	for !s.snd.Full() {
		frame, ok := s.backlog.Pop()
		if !ok {
			return
		}
		targets := s.targets
		if s.dst == uuid.Nil {
			targets = st.rt.Reachable()
		}
		pkt, err := s.snd.Push(st.now, bodyOf(frame), targets)
		if err != nil {
			continue // a broadcast with nobody to reach is done
		}
		st.transmit(s, uuid.Nil, pkt, frame)
	}
}

// transmit sends a packet of stream s: a unicast to its destination, a
// broadcast's first flood, or a broadcast's repair copy to target. The first
// transmission passes the packet's outFrame, which it encodes in place and
// which is then never written again; a retransmission passes nil and gets a
// new frame.
func (st *state) transmit(s *outStream, target uuid.UUID, pkt reliability.Packet, first []byte) {
	n := st.n
	// Data frames carry the stream's epoch, which is the node's epoch until a
	// destination restart resets the stream (checkRestart).
	ep := s.snd.Epoch()
	typ, dst := message.TypeMsg, s.dst
	if s.dst == uuid.Nil {
		typ, dst = message.TypeMsgBroadcast, target // uuid.Nil: the flood
	}
	var f []byte
	if first != nil {
		f = n.dataMessage(typ, dst, ep, pkt).AppendHeader(first[:0])[:len(first)]
	} else {
		f = n.encodeData(typ, dst, ep, pkt)
	}
	if dst != uuid.Nil {
		st.route(dst, f, false)
		return
	}
	for _, p := range st.peers {
		st.enqueue(p, f, false)
	}
}

// ---- neighbours ----

func (st *state) neighbors() []uuid.UUID {
	out := make([]uuid.UUID, 0, len(st.peers))
	for id := range st.peers {
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	return out
}

func (st *state) hello() message.Hello {
	return message.Hello{Addrs: st.n.adv, FreeSlots: st.free()}
}

func (st *state) newPeer(id uuid.UUID, epoch uint64, h message.Hello, e transport.Edge, dialed bool) *peer {
	return &peer{
		id: id, epoch: epoch, addrs: h.Addrs, edge: e, dialed: dialed,
		ctrl:     make(chan []byte, st.n.cfg.controlBuf),
		data:     make(chan []byte, st.n.cfg.forwardBuf),
		stop:     make(chan struct{}),
		wdone:    make(chan struct{}),
		lastRecv: st.now, lastSent: st.now,
	}
}

// keepNew decides between an existing edge and a new one to the same node.
// Both ends must pick the same edge without talking: an edge dialled in the
// same direction as the old one replaces it (the dialer thinks the old one is
// dead); of two edges dialled in opposite directions at once, the one dialled
// by the smaller UUID stays.
func (st *state) keepNew(old *peer, newDialed bool) bool {
	if old.dialed == newDialed {
		return true
	}
	self, other := st.n.id, old.id
	smallerDialsNew := bytes.Compare(self[:], other[:]) < 0 == newDialed
	return smallerDialsNew
}

// admit decides on an incoming edge whose hello was read. On acceptance the
// welcome is the first frame queued on the new peer.
// A full node rejects with entry points from its link-state database; when it
// knows none it returns a channel on which the mesh's answer to an entry
// request arrives.
func (st *state) admit(id uuid.UUID, epoch uint64, h message.Hello, e transport.Edge) (bool, *message.Reject, <-chan []string) {
	switch {
	case st.closed:
		return false, &message.Reject{Reason: message.RejectClosing}, nil
	case id == st.n.id:
		return false, &message.Reject{Reason: message.RejectSelf}, nil
	}
	old := st.peers[id]
	if old != nil && epoch == old.epoch && !st.keepNew(old, false) {
		return false, &message.Reject{Reason: message.RejectDuplicate}, nil
	}
	if old == nil && len(st.peers) >= st.n.cfg.maxConns {
		rej := &message.Reject{Reason: message.RejectFull, EntryPoints: st.entryPoints()}
		if len(rej.EntryPoints) > 0 {
			return false, rej, nil
		}
		return false, rej, st.askEntryPoint()
	}
	p := st.newPeer(id, epoch, h, e, false)
	welcome := st.n.frame(message.TypeWelcome, 0, uuid.Nil, st.hello().Append(nil))
	p.ctrl <- welcome
	st.addPeer(p, old)
	return true, nil, nil
}

// register adds an edge this node dialled, after the other side's welcome.
func (st *state) register(id uuid.UUID, epoch uint64, h message.Hello, e transport.Edge, addr string) error {
	switch {
	case st.closed:
		return ErrClosed
	case id == st.n.id:
		return fmt.Errorf("%w: dialled itself", ErrHandshake)
	}
	old := st.peers[id]
	if old != nil && epoch == old.epoch && !st.keepNew(old, true) {
		return fmt.Errorf("%w: %s", ErrDuplicateEdge, id)
	}
	if old == nil && len(st.peers) >= st.n.cfg.maxConns {
		// Incoming edges took the last slots while this dial was in flight.
		return fmt.Errorf("%w: %d neighbours, dialled %s", ErrFull, len(st.peers), id)
	}
	p := st.newPeer(id, epoch, h, e, true)
	p.dialTo = addr
	st.addPeer(p, old)
	return nil
}

// addPeer installs p, replacing old (the same node's previous edge) if any.
func (st *state) addPeer(p, old *peer) {
	n := st.n
	if old != nil {
		delete(st.peers, old.id)
		if old.epoch == p.epoch && !p.dialed {
			st.retire(old)
		} else {
			st.stopPeer(old)
		}
		if old.epoch != p.epoch {
			// The neighbour restarted: its old life is a neighbour that went down.
			st.peerDown(old, ErrPeerReplaced)
		}
	}
	st.peers[p.id] = p
	p.silence = st.silenceLimit(p)
	n.startPeer(p)
	if old == nil || old.epoch != p.epoch {
		n.stats.up.Add(1)
		c := st.rt.AddNeighbor(st.now, p.id, st.free())
		st.floodEdgeChange(p, message.TypeNewEdge, c)
		n.emit(Event{Kind: NeighborUp, Peer: p.id})
		if !st.connected {
			st.connected = true
			n.emit(Event{Kind: Connected, Peer: p.id})
		}
	}
	// Ask for the whole database; the other side does the same, and its
	// answer includes its own record with the new edge.
	st.enqueue(p, n.frame(message.TypeNetworkStateRequest, 0, uuid.Nil, message.StateRequest(nil).Append(nil)), true)
	n.log.Debug("neighbour up", "peer", p.id, "remote", p.edge.RemoteAddr(), "dialed", p.dialed)
}

func (st *state) stopPeer(p *peer) {
	close(p.stop)
	p.edge.Close()
}

// retire stops using p, an edge that an incoming edge from the same life of
// the same node replaced (§3 of Part 2), but leaves closing it to the other
// side, which installs the new edge once it reads its welcome and then
// closes the old one. Closing it here first could reach the other side
// before the welcome: it would take the close for a failure of the edge it
// still holds and report its neighbour down, flooding link state twice. If
// the other side has not closed the edge within the handshake timeout,
// retire closes it.
func (st *state) retire(p *peer) {
	close(p.stop)
	st.n.closeLater(p.edge)
}

// edgeFailed handles a reader or writer error on p's edge.
func (st *state) edgeFailed(p *peer, err error) {
	if st.peers[p.id] != p {
		return
	}
	st.dropPeer(p, err)
}

func (st *state) dropPeer(p *peer, cause error) {
	if errors.Is(cause, ErrPeerSilent) {
		st.silenced(p)
	}
	delete(st.peers, p.id)
	st.stopPeer(p)
	st.peerDown(p, cause)
}

// peerDown updates link state and tells the application that p went down.
func (st *state) peerDown(p *peer, cause error) {
	n := st.n
	n.stats.down.Add(1)
	if c, ok := st.rt.RemoveNeighbor(st.now, p.id, st.free()); ok {
		st.floodEdgeChange(nil, message.TypeDestroyEdge, c)
	}
	n.log.Debug("neighbour down", "peer", p.id, "cause", cause)
	if p.dialed && !st.closed && !errors.Is(cause, ErrPeerLeft) && !errors.Is(cause, ErrPeerReplaced) {
		st.scheduleRedial(p.dialTo)
	}
	n.emit(Event{Kind: NeighborDown, Peer: p.id, Err: cause})
	if len(st.peers) == 0 && st.connected {
		st.connected = false
		n.emit(Event{Kind: Disconnected})
	}
}

// ---- shutdown ----

func (st *state) shutdown() {
	n := st.n
	st.closed = true
	for _, p := range st.peers {
		// Hand each neighbour the others' addresses, so that one left short
		// of neighbours knows where to go.
		var eps []string
		for _, q := range st.peers {
			if q != p && len(q.addrs) > 0 && len(eps) < message.MaxAddrs {
				eps = append(eps, q.addrs[0])
			}
		}
		st.enqueue(p, n.frame(message.TypeGoodbye, 0, uuid.Nil, message.Hello{Addrs: eps}.Append(nil)), true)
		close(p.stop)
	}
	for _, s := range st.allStreams() {
		for _, f := range s.snd.FailAll(ErrClosed) {
			st.report(s, f)
		}
		for frame, ok := s.backlog.Pop(); ok; frame, ok = s.backlog.Pop() {
			st.report(s, reliability.Failure{Target: s.dst, Body: bodyOf(frame), Err: ErrClosed})
		}
	}
	for _, r := range st.parked {
		if r.state.CompareAndSwap(reqPending, reqCancelled) {
			r.err = ErrClosed
			close(r.done)
		}
	}
	st.parked = nil
	close(n.quit)
	// Give the writers a moment to put the goodbyes on the wire.
	grace := time.NewTimer(time.Second)
	defer grace.Stop()
wait:
	for _, p := range st.peers {
		select {
		case <-p.wdone:
		case <-grace.C:
			break wait
		}
	}
	n.cancel()
	for _, p := range st.peers {
		p.edge.Close()
	}
	for _, t := range n.trs {
		t.Close()
	}
	n.in.Close()
	close(n.events)
}

func (st *state) allStreams() []*outStream {
	all := []*outStream{st.bcast}
	for _, s := range st.out {
		all = append(all, s)
	}
	return all
}
