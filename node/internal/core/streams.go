package core

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/reliability"
)

// outStream is this node's stream to one destination, or its broadcast stream.
type outStream struct {
	dst     uuid.UUID   // uuid.Nil for the broadcast stream
	targets []uuid.UUID // {dst} for unicast, reused for every Push
	snd     *reliability.Sender
	backlog fifo
	// missed are the broadcasts in the window that known nodes could not be
	// reached for when they entered it (broadcast stream only), oldest
	// first: each names the nodes not reached since.
	missed []missed
	// dstEpoch is the life of the destination this stream talks to: its
	// epoch in link state when the stream started, or in the acks since,
	// whichever is newer (0 when unknown). Acks can show a restart before
	// link state does, so it is not a copy of routing's record.
	dstEpoch uint64
}

// missed is a broadcast in flight and the known nodes it has not reached:
// they were unreachable when it entered the window and have not become
// reachable since. When it leaves the window they are reported failed.
type missed struct {
	seq  uint32
	body []byte
	ids  []uuid.UUID
}

// tomb is where a dropped receive stream stood.
type tomb struct {
	epoch uint64
	next  uint32
	seq   uint64 // when it was buried, to tell stale entries of tombOrder
}

// buried names a tomb in the order they were made.
type buried struct {
	k   rxKey
	seq uint64
}

// maxTombs bounds the receive streams remembered after their origin was
// forgotten: a departed origin's late retransmissions come within minutes,
// while churn forgets origins without end.
const maxTombs = 4096

// rxKey names an incoming stream: a source's unicast or broadcast stream.
type rxKey struct {
	src   uuid.UUID
	bcast bool
}

// streams holds the reliable streams: this node's outgoing ones, the
// incoming ones, and the send requests waiting for backlog room.
type streams struct {
	c      *Core
	out    map[uuid.UUID]*outStream
	order  []*outStream // out in creation order: iteration is deterministic
	bcast  *outStream
	rx     map[rxKey]*reliability.Receiver
	parked []*SendRequest
	// tombs remember where the receive streams of forgotten origins stood
	// (bounded, oldest dropped first): see forget.
	tombs     map[rxKey]tomb
	tombOrder []buried // oldest first; entries whose tomb was dug up or replaced are stale
	tombSeq   uint64

	spent   []reliability.Released // scratch of released (reuse.go)
	ackDue  []rxKey                // acks to send once the current batch is handled
	ackSet  map[rxKey]bool         // the streams in ackDue: true if a data frame since the last ack was marked congested
	blocked []rxKey                // streams with deliveries waiting for inbound room
	room    int                    // deliveries the inbound queue can take

	resets uint64 // unicast streams started or reset so far: new stream epochs
	// waiting: a stream stopped sending because its first hop's queue was
	// full; a finished write resumes them (roomFreed).
	waiting bool
}

func (ss *streams) init(c *Core) {
	ss.c = c
	ss.out = make(map[uuid.UUID]*outStream)
	ss.rx = make(map[rxKey]*reliability.Receiver)
	ss.tombs = make(map[rxKey]tomb)
	ss.ackSet = make(map[rxKey]bool)
	ss.bcast = ss.newStream(uuid.Nil)
}

// newStream starts a stream to dst (uuid.Nil: the broadcast stream). Every
// unicast stream gets a stream epoch of its own, larger than any before it
// in this life: a receiver that still remembers an earlier stream to it
// (this node forgot it, after a partition longer than the record MaxAge)
// sees a newer stream and starts over, rather than taking the new indexes
// for old duplicates. The next life's epochs are larger still (its node
// epoch is its start time in nanoseconds).
func (ss *streams) newStream(dst uuid.UUID) *outStream {
	c := ss.c
	epoch := c.cfg.Epoch
	if dst != uuid.Nil {
		ss.resets++
		epoch += ss.resets
	}
	s := &outStream{
		dst:     dst,
		snd:     ss.newSender(dst, epoch),
		backlog: fifo{limit: c.cfg.Backlog},
	}
	if dst != uuid.Nil {
		s.targets = []uuid.UUID{dst}
		s.dstEpoch, _ = c.rt.Epoch(dst)
	}
	return s
}

// newSender makes the sender of a stream to dst (uuid.Nil: broadcast). A
// unicast one keeps its released messages when frames are reused (reuse.go).
func (ss *streams) newSender(dst uuid.UUID, epoch uint64) *reliability.Sender {
	snd := reliability.NewSender(ss.c.cfg.Rel, epoch)
	if dst != uuid.Nil && ss.c.cfg.ReuseFrom > 0 {
		snd.KeepReleased()
	}
	return snd
}

// all returns every outgoing stream, the broadcast stream first.
func (ss *streams) all() []*outStream {
	return append([]*outStream{ss.bcast}, ss.order...)
}

// bodyOf returns the body of a SendRequest frame buffer.
func bodyOf(frame []byte) []byte { return frame[message.HeaderSize:] }

// ---- sending ----

// Send offers a send request. It is accepted (an Answer with a nil Err) once
// every stream it needs has backlog room, at once or later; it waits parked
// meanwhile, until Cancel or Shutdown refuses it.
func (c *Core) Send(now time.Time, r *SendRequest) {
	c.now = now
	ss := &c.streams
	if c.closed {
		c.out.Answers = append(c.out.Answers, Answer{ID: r.ID, Err: ErrClosed})
		return
	}
	if !ss.tryAccept(r) {
		ss.parked = append(ss.parked, r)
	}
}

// Cancel refuses a parked send request with ErrCancelled. A request already
// answered, or not yet offered, is left alone.
func (c *Core) Cancel(now time.Time, id uint64) {
	c.now = now
	ss := &c.streams
	for i, r := range ss.parked {
		if r.ID == id {
			ss.parked = slices.Delete(ss.parked, i, i+1)
			c.out.Answers = append(c.out.Answers, Answer{ID: id, Err: ErrCancelled})
			return
		}
	}
}

// tryAccept accepts r if every stream it needs has backlog room.
func (ss *streams) tryAccept(r *SendRequest) bool {
	var buf [4]*outStream
	streams := buf[:0]
	if r.Bcast {
		streams = append(streams, ss.bcast)
	}
	for _, d := range r.Dsts {
		s := ss.out[d]
		if s == nil {
			s = ss.newStream(d)
			ss.out[d] = s
			ss.order = append(ss.order, s)
		}
		streams = append(streams, s)
	}
	for _, s := range streams {
		if s.backlog.Len() >= s.backlog.limit {
			return false
		}
	}
	for i, s := range streams {
		s.backlog.push(r.Frames[i])
		ss.pump(s)
	}
	ss.c.out.Answers = append(ss.c.out.Answers, Answer{ID: r.ID})
	return true
}

func (ss *streams) unpark() {
	if len(ss.parked) > 0 {
		ss.parked = slices.DeleteFunc(ss.parked, ss.tryAccept)
	}
}

// pump moves messages from a stream's backlog into its window and sends them.
// A broadcast is addressed to every node reachable now; the nodes known but
// unreachable are remembered (missed) and reported failed if the broadcast
// leaves the window before they can be reached.
func (ss *streams) pump(s *outStream) {
	c := ss.c
	ss.reportMissed(s, ErrUnreached)
	for !s.snd.Full() && s.backlog.Len() > 0 {
		if s.dst != uuid.Nil && ss.firstHopFull(s.dst) {
			ss.waiting = true
			return
		}
		frame := s.backlog.pop()
		targets := s.targets
		var absent []uuid.UUID
		if s.dst == uuid.Nil {
			targets = c.rt.Reachable()
			absent = c.rt.Unreached(nil)
		}
		pkt, err := s.snd.Push(c.now, bodyOf(frame), targets)
		if err == nil && s.dst != uuid.Nil {
			c.track(frame)
		}
		if err != nil {
			// A broadcast with nobody to reach is done at once.
			for _, id := range absent {
				ss.report(s, reliability.Failure{Target: id, Body: bodyOf(frame), Err: ErrUnreached})
			}
			continue
		}
		if len(absent) > 0 {
			s.missed = append(s.missed, missed{seq: pkt.Seq, body: pkt.Body, ids: absent})
		}
		ss.transmit(s, uuid.Nil, pkt, frame)
	}
}

// firstHopFull reports whether the queue towards dst's next hop is crowded:
// the stream waits rather than queue more (a reliable transport drains it;
// a full queue would drop).
func (ss *streams) firstHopFull(dst uuid.UUID) bool {
	p := ss.c.nextHop(dst)
	return p != nil && ss.c.crowded(p)
}

// roomFreed resumes the streams held by a full first hop.
func (ss *streams) roomFreed() {
	if !ss.waiting {
		return
	}
	ss.waiting = false
	for _, s := range ss.order {
		ss.pump(s)
	}
	ss.unpark()
}

// reportMissed reports, with cause, the nodes a broadcast that left the
// window (or every broadcast, when the window is empty) never reached.
func (ss *streams) reportMissed(s *outStream, cause error) {
	for len(s.missed) > 0 && !s.snd.InWindow(s.missed[0].seq) {
		m := s.missed[0]
		for _, id := range m.ids {
			ss.report(s, reliability.Failure{Target: id, Seq: m.seq, Body: m.body, Err: cause})
		}
		s.missed[0] = missed{}
		s.missed = s.missed[1:]
	}
}

// transmit sends a packet of stream s: a unicast to its destination, a
// broadcast's first flood, or a broadcast's repair copy to target. The first
// transmission passes the packet's frame buffer, which it encodes in place
// and which is then never written again; a retransmission passes nil and
// gets a new frame.
func (ss *streams) transmit(s *outStream, target uuid.UUID, pkt reliability.Packet, first []byte) {
	c := ss.c
	// Data frames carry the stream's epoch, which is the node's epoch until a
	// destination restart resets the stream (checkRestart).
	typ, dst := message.TypeMsg, s.dst
	if s.dst == uuid.Nil {
		typ, dst = message.TypeMsgBroadcast, target // uuid.Nil: the flood
	}
	m := c.message(typ, 0, dst, s.snd.Epoch(), int32(pkt.Seq), pkt.Base, pkt.Body)
	var f []byte
	if first != nil {
		f = m.AppendHeader(first[:0])[:len(first)]
	} else {
		f = m.Encode()
	}
	if dst != uuid.Nil {
		c.transmitData(dst, f)
		return
	}
	c.flood(nil, f, false)
}

// ---- receiving ----

// SetRoom tells the Core how many deliveries the inbound queue can take now.
func (c *Core) SetRoom(now time.Time, room int) {
	c.now = now
	ss := &c.streams
	ss.room = room
	if room > 0 && len(ss.blocked) > 0 {
		blocked := ss.blocked
		ss.blocked = nil
		for _, k := range blocked {
			if rx := ss.rx[k]; rx != nil {
				ss.deliver(k, rx)
			}
		}
	}
}

// Blocked reports whether a delivery waits for room (see SetRoom).
func (c *Core) Blocked() bool { return len(c.streams.blocked) > 0 }

// onData feeds a data frame addressed to this node to its receive stream.
func (ss *streams) onData(p *peer, m message.Message, bcast bool, body []byte) reliability.Verdict {
	c := ss.c
	k := rxKey{src: m.UID.Node, bcast: bcast}
	rx := ss.rx[k]
	if rx == nil {
		if !c.rt.Known(k.src) && k.src != p.id {
			// Without the source's link state there is no route for the ack,
			// and state for unknown sources would let a neighbour grow memory.
			// The source retransmits once the mesh has converged. A
			// neighbour's own frames are taken (its ack goes back over its
			// edge): right after a handshake its record is on its way.
			c.stats.DroppedNoRoute++
			return reliability.Stale
		}
		rx = reliability.NewReceiver(c.cfg.Rel)
		if t, ok := ss.tombs[k]; ok {
			// The origin was forgotten and is back: what it delivered
			// before stays delivered.
			rx.Resume(t.epoch, t.next)
			delete(ss.tombs, k)
		}
		ss.rx[k] = rx
	}
	v, err := rx.OnData(m.Header.Epoch, uint32(m.UID.Index), m.Header.Ref, body)
	if err != nil {
		c.hostile(p.id, "data frame", err)
		return v
	}
	congested := m.Header.Flags&message.FlagCongestion != 0
	switch v {
	case reliability.Accepted:
		ss.deliver(k, rx)
		ss.ackNeeded(k, congested)
	case reliability.Duplicate:
		c.stats.Duplicates++
		// A duplicate may still move the delivery point (its base says the
		// sender gave up on what is missing): deliver what is now in order
		// (PROTOCOL Part 4 §9).
		ss.deliver(k, rx)
		// Flood copies arrive once per neighbour; only a copy sent to us
		// directly (a retransmission) asks for a new ack.
		if !bcast || m.Header.Target == c.cfg.ID {
			ss.ackNeeded(k, congested)
		}
	case reliability.OutOfWindow:
		ss.deliver(k, rx)
		ss.ackNeeded(k, congested)
	}
	return v
}

// ackNeeded schedules an ack of stream k; congested notes that a data
// frame of it came with FlagCongestion, which the ack echoes.
func (ss *streams) ackNeeded(k rxKey, congested bool) {
	marked, ok := ss.ackSet[k]
	if !ok {
		ss.ackDue = append(ss.ackDue, k)
	}
	ss.ackSet[k] = marked || congested
}

// deliver moves in-order messages from a receive stream to the application
// while the inbound queue has room; the rest wait (and stay unacknowledged:
// back-pressure).
func (ss *streams) deliver(k rxKey, rx *reliability.Receiver) {
	c := ss.c
	for {
		if ss.room <= 0 {
			if !slices.Contains(ss.blocked, k) {
				ss.blocked = append(ss.blocked, k)
			}
			return
		}
		body, seq, ok := rx.Pop()
		if !ok {
			return
		}
		ss.room--
		c.out.Deliveries = append(c.out.Deliveries, Delivery{From: k.src, Body: body, Broadcast: k.bcast, Index: seq})
		c.stats.Delivered++
		ss.ackNeeded(k, false)
	}
}

// flushAcks sends the acknowledgements due.
func (ss *streams) flushAcks() {
	c := ss.c
	for _, k := range ss.ackDue {
		congested := ss.ackSet[k]
		delete(ss.ackSet, k)
		rx := ss.rx[k]
		if rx == nil {
			continue
		}
		var flags message.Flags
		if k.bcast {
			flags = message.FlagBroadcastStream
		}
		if congested {
			flags |= message.FlagCongestion
		}
		a := rx.Ack()
		c.route(k.src, c.message(message.TypeAck, flags, k.src, c.cfg.Epoch, message.AckIndex, 0, a.Append(nil)).Encode(), true)
	}
	ss.ackDue = ss.ackDue[:0]
}

func (ss *streams) onAck(p *peer, m message.Message) {
	c := ss.c
	a, err := message.DecodeAck(m.Body)
	if err != nil {
		c.hostile(p.id, "ack", err)
		return
	}
	s := ss.out[m.UID.Node]
	if m.Header.Flags&message.FlagBroadcastStream != 0 {
		s = ss.bcast
	}
	if s == nil {
		c.hostile(p.id, "ack for a stream never opened", nil)
		return
	}
	// An ack names the life that sends it. One from a newer life than the
	// destination this node knows means it restarted: what is in flight
	// may have reached the previous life too, so it fails (ErrPeerRestarted)
	// before the new life's ack could confirm it; the ack, of the old
	// stream, is then stale. One from an older life is stale already.
	known := s.dstEpoch
	if s == ss.bcast {
		known, _ = c.rt.Epoch(m.UID.Node)
	}
	switch ep := m.Header.Epoch; {
	case known != 0 && ep < known:
		return
	case known != 0 && ep > known && s != ss.bcast:
		ss.restarted(m.UID.Node, ep)
		return
	case known != 0 && ep > known:
		for _, f := range s.snd.RemoveTarget(m.UID.Node, ErrPeerRestarted) {
			ss.report(s, f)
		}
		ss.pump(s)
		ss.unpark()
		return
	case known == 0 && s != ss.bcast:
		s.dstEpoch = ep
	}
	freed, err := s.snd.OnAck(c.now, m.UID.Node, a)
	ss.released(s)
	if err == nil && m.Header.Flags&message.FlagCongestion != 0 {
		// A node on the way forwarded some of this stream through a
		// crowded queue: shrink the window before the queue drops.
		c.stats.CongestionMarks++
		s.snd.Congested(c.now, m.UID.Node)
	}
	switch {
	case errors.Is(err, reliability.ErrStaleAck):
		// An ack for this node's previous life: harmless.
	case errors.Is(err, reliability.ErrInvalidAck) && s == ss.bcast:
		// A node that got a flood before this node knew it was reachable
		// acknowledges a broadcast it was not a target of: harmless.
	case err != nil:
		c.hostile(p.id, "ack", err)
	case freed > 0:
		ss.pump(s)
		ss.unpark()
	}
}

// ---- timers ----

func (ss *streams) deadline(d time.Time) time.Time {
	d = ss.streamDeadline(d, ss.bcast)
	for _, s := range ss.order {
		d = ss.streamDeadline(d, s)
	}
	return d
}

func (ss *streams) streamDeadline(d time.Time, s *outStream) time.Time {
	t, ok := s.snd.Deadline()
	if !ok {
		return d
	}
	if t.Before(ss.c.now) {
		t = ss.c.now // a zero time means "tick now": a target was just added
	}
	return minTime(d, t)
}

func (ss *streams) tick() {
	ss.tickStream(ss.bcast)
	for _, s := range slices.Clone(ss.order) {
		ss.tickStream(s)
	}
}

func (ss *streams) tickStream(s *outStream) {
	c := ss.c
	resend, failed := s.snd.Tick(c.now)
	ss.released(s)
	for _, r := range resend {
		c.stats.Retransmits++
		ss.transmit(s, r.Target, r.Packet, nil)
	}
	for _, f := range failed {
		ss.report(s, f)
	}
	if len(failed) > 0 {
		ss.pump(s)
		ss.unpark()
	}
	ss.checkStuck(s)
}

func (ss *streams) report(s *outStream, f reliability.Failure) {
	ss.c.stats.Failed++
	ss.c.emit(Event{Kind: DeliveryFailed, Peer: f.Target, Broadcast: s.dst == uuid.Nil, Index: f.Seq, Body: f.Body, Err: f.Err})
}

// ---- restarts and stuck streams ----

// resetStream reports everything in flight on a unicast stream as failed and
// starts a new stream, with a larger stream epoch, for the backlog: the
// receiver drops whatever is left of the old stream when it sees the new one.
func (ss *streams) resetStream(s *outStream, cause error) {
	for _, f := range s.snd.FailAll(cause) {
		ss.report(s, f)
	}
	ss.released(s)
	ss.resets++
	s.snd = ss.newSender(s.dst, ss.c.cfg.Epoch+ss.resets)
	ss.pump(s)
	ss.unpark()
}

// checkStuck gives up on a target that has held a stream's window back for
// longer than the whole retry budget takes (reliability.Sender.Stuck): it
// cannot be reached. A unicast stream is reset; the broadcast stream drops
// the target. Either way the messages concerned are reported failed.
func (ss *streams) checkStuck(s *outStream) {
	id, ok := s.snd.Stuck(ss.c.now)
	if !ok {
		return
	}
	cause := fmt.Errorf("%w: %s held the stream back for %v", reliability.ErrRetriesExhausted, id, s.snd.StuckAfter())
	if s.dst != uuid.Nil {
		ss.resetStream(s, cause)
		return
	}
	for _, f := range s.snd.RemoveTarget(id, cause) {
		ss.report(s, f)
	}
	ss.pump(s)
	ss.unpark()
}

// restarted resets what this node was sending to origin, whose link state
// shows a new epoch: messages in flight may have reached its previous life,
// so they are reported failed (ErrPeerRestarted); what was still in the
// backlog goes to the new life on a new stream, whose larger stream epoch
// makes the receiver drop anything left of the old one. The broadcast
// stream drops the old life as a target; the new one is added when routes
// show it.
func (ss *streams) restarted(origin uuid.UUID, epoch uint64) {
	if s := ss.out[origin]; s != nil && epoch > s.dstEpoch {
		s.dstEpoch = epoch
		ss.resetStream(s, ErrPeerRestarted)
	}
	for _, f := range ss.bcast.snd.RemoveTarget(origin, ErrPeerRestarted) {
		ss.report(ss.bcast, f)
	}
	ss.pump(ss.bcast)
	ss.unpark()
}

// reachabilityChanged makes nodes that became reachable targets of the
// broadcasts in flight, those that were reachable before and came back
// included (a message already confirmed by them is left alone).
func (ss *streams) reachabilityChanged() {
	b := ss.bcast
	for _, id := range ss.c.rt.TakeGained() {
		b.snd.AddTarget(id)
		for i := range b.missed {
			b.missed[i].ids = slices.DeleteFunc(b.missed[i].ids, func(x uuid.UUID) bool { return x == id })
		}
	}
}

// forget drops everything about nodes whose link state aged out: what was
// sent to them and not confirmed is reported failed. The broadcast stream
// moves on only once all of them are gone, so that a broadcast waiting for
// the window is reported for each of them rather than sent to none.
func (ss *streams) forget(ids []uuid.UUID) {
	for _, id := range ids {
		gone := fmt.Errorf("%w: %s left the mesh", reliability.ErrTargetGone, id)
		if s := ss.out[id]; s != nil {
			for _, f := range s.snd.RemoveTarget(id, gone) {
				ss.report(s, f)
			}
			for s.backlog.Len() > 0 {
				ss.report(s, reliability.Failure{Target: id, Body: bodyOf(s.backlog.pop()), Err: gone})
			}
			delete(ss.out, id)
			ss.order = slices.DeleteFunc(ss.order, func(x *outStream) bool { return x == s })
		}
		for _, f := range ss.bcast.snd.RemoveTarget(id, gone) {
			ss.report(ss.bcast, f)
		}
		// The broadcasts waiting for the window were meant for id too.
		for i := range ss.bcast.backlog.Len() {
			ss.report(ss.bcast, reliability.Failure{Target: id, Body: bodyOf(ss.bcast.backlog.at(i)), Err: gone})
		}
		for _, k := range []rxKey{{src: id}, {src: id, bcast: true}} {
			if rx := ss.rx[k]; rx != nil && rx.Started() {
				ss.bury(k, tomb{epoch: rx.Epoch(), next: rx.Next()})
			}
			delete(ss.rx, k)
		}
	}
	ss.pump(ss.bcast)
	ss.unpark()
}

// bury remembers where a dropped receive stream stood, so that the origin's
// retransmissions of messages already delivered are not delivered again if
// it comes back (its stream epoch tells a new stream apart: newStream).
func (ss *streams) bury(k rxKey, t tomb) {
	ss.tombSeq++
	t.seq = ss.tombSeq
	ss.tombs[k] = t
	ss.tombOrder = append(ss.tombOrder, buried{k: k, seq: t.seq})
	for len(ss.tombs) > maxTombs || len(ss.tombOrder) > 2*maxTombs {
		b := ss.tombOrder[0]
		ss.tombOrder = ss.tombOrder[1:]
		if cur, ok := ss.tombs[b.k]; ok && cur.seq == b.seq {
			delete(ss.tombs, b.k)
		}
	}
}

func (ss *streams) shutdown() {
	for _, s := range ss.all() {
		for _, f := range s.snd.FailAll(ErrClosed) {
			ss.report(s, f)
		}
		ss.reportMissed(s, ErrClosed)
		targets := s.targets
		if s == ss.bcast && s.backlog.Len() > 0 {
			// A broadcast never sent was meant for every node known.
			targets = ss.c.rt.Unreached(ss.c.rt.Reachable())
		}
		for s.backlog.Len() > 0 {
			body := bodyOf(s.backlog.pop())
			for _, id := range targets {
				ss.report(s, reliability.Failure{Target: id, Body: body, Err: ErrClosed})
			}
		}
	}
	for _, r := range ss.parked {
		ss.c.out.Answers = append(ss.c.out.Answers, Answer{ID: r.ID, Err: ErrClosed})
	}
	ss.parked = nil
}
