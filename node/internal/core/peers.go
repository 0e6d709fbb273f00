package core

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
)

// peer is one neighbour: an edge that completed the handshake.
type peer struct {
	id     uuid.UUID
	epoch  uint64
	addrs  []string
	link   LinkID
	dialed bool   // this node dialled the edge
	dialTo string // the address it dialled, for redialling after a failure

	ctrl, data fifo     // frames waiting for the writer; control goes first
	writing    bool     // a Write for this edge is out, not yet WriteDone
	batch      [][]byte // the Frames of that Write, reused for the next one
	inWrite    int      // bytes of data frames in that Write

	since    time.Time // when the edge came up
	lastRecv time.Time
	lastSent time.Time
	silence  time.Duration // how long it may stay silent: see patience
	bulk     bucket        // digests and full requests it may send (limits.go)
	ctrlIn   bucket        // control frames it may send (limits.go)
}

// queued is how many bytes of data frames wait for, or are in, the edge's
// writer.
func (p *peer) queued() int { return p.data.bytes + p.inWrite }

// crowded reports whether p's data queue holds a quarter of its bound, in
// bytes or frames: this node's own streams wait (push-back), and frames it
// forwards are marked congested (FlagCongestion), before the queue is full
// and drops.
func (c *Core) crowded(p *peer) bool {
	return p.queued() >= c.cfg.ForwardBytes/4 || p.data.Len() >= c.cfg.ForwardBuf/4
}

// fifo is a bounded queue of frames that grows only as far as it is used.
type fifo struct {
	frames [][]byte
	head   int
	limit  int
	bytes  int // in the queued frames
}

func (q *fifo) Len() int { return len(q.frames) - q.head }

func (q *fifo) push(f []byte) bool {
	if q.Len() >= q.limit {
		return false
	}
	if q.head > 0 && len(q.frames) == cap(q.frames) {
		n := copy(q.frames, q.frames[q.head:])
		clear(q.frames[n:])
		q.frames, q.head = q.frames[:n], 0
	}
	q.frames = append(q.frames, f)
	q.bytes += len(f)
	return true
}

// at returns the i-th oldest frame, without removing it.
func (q *fifo) at(i int) []byte { return q.frames[q.head+i] }

// pop removes and returns the oldest frame; the queue must not be empty.
func (q *fifo) pop() []byte {
	f := q.frames[q.head]
	q.frames[q.head] = nil
	q.head++
	q.bytes -= len(f)
	if q.head == len(q.frames) {
		q.frames, q.head = q.frames[:0], 0
	}
	return f
}

// drainTo appends every queued frame to dst and empties the queue.
func (q *fifo) drainTo(dst [][]byte) [][]byte {
	dst = append(dst, q.frames[q.head:]...)
	clear(q.frames)
	q.frames, q.head, q.bytes = q.frames[:0], 0, 0
	return dst
}

// retired is an edge no longer used, closed at a deadline (see retire).
type retired struct {
	link LinkID
	at   time.Time
}

// peers is the connection table, keyed by the neighbour's UUID.
type peers struct {
	byID     map[uuid.UUID]*peer
	byLink   map[LinkID]*peer
	list     []*peer // in the order they came: iteration is deterministic
	retiring []retired
	patience map[uuid.UUID]*patience
	// connected: the node has had a neighbour since it last had none.
	connected bool
}

func (ps *peers) init() {
	ps.byID = make(map[uuid.UUID]*peer)
	ps.byLink = make(map[LinkID]*peer)
	ps.patience = make(map[uuid.UUID]*patience)
}

func (ps *peers) len() int { return len(ps.list) }

func (ps *peers) add(p *peer) {
	ps.byID[p.id] = p
	ps.byLink[p.link] = p
	ps.list = append(ps.list, p)
}

func (ps *peers) remove(p *peer) {
	delete(ps.byID, p.id)
	delete(ps.byLink, p.link)
	ps.list = slices.DeleteFunc(ps.list, func(q *peer) bool { return q == p })
}

// Neighbors returns the UUIDs of the current neighbours, sorted.
func (c *Core) Neighbors() []uuid.UUID {
	out := make([]uuid.UUID, 0, c.peers.len())
	for _, p := range c.peers.list {
		out = append(out, p.id)
	}
	slices.SortFunc(out, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	return out
}

// enqueue queues a frame for a neighbour; a full queue drops it (end-to-end
// reliability recovers data, and link state is refreshed).
func (c *Core) enqueue(p *peer, f []byte, ctrl bool) bool {
	q := &p.data
	if ctrl {
		q = &p.ctrl
	} else if p.queued()+len(f) > c.cfg.ForwardBytes {
		c.stats.DroppedForward++
		return false
	}
	if !q.push(f) {
		c.stats.DroppedForward++
		return false
	}
	c.stats.FramesOut++
	c.queued(f)
	switch message.PeekType(f) {
	case message.TypeNetworkState, message.TypeNetworkStateRequest, message.TypeNetworkStateDigest, message.TypeNewEdge, message.TypeDestroyEdge:
		c.stats.TopologyFrames++
	}
	p.lastSent = c.now
	return true
}

// route queues a frame towards dst by the routing table, or straight to dst
// when it is a neighbour that link state does not show yet (nextHop).
func (c *Core) route(dst uuid.UUID, f []byte, ctrl bool) bool {
	p := c.nextHop(dst)
	if p == nil {
		c.stats.DroppedNoRoute++
		return false
	}
	return c.send(p, dst, f, ctrl)
}

// send queues f for dst towards p, sealed first if it is a data frame or an
// ack this node originates in a closed cluster (e2e.go).
func (c *Core) send(p *peer, dst uuid.UUID, f []byte, ctrl bool) bool {
	if c.sealer != nil && c.sealed(f, false) {
		sf, err := c.sealer.seal(c, dst, f)
		if err != nil {
			c.stats.DroppedNoRoute++ // the destination's signed record is not known yet
			return false
		}
		if !c.enqueue(p, sf, ctrl) {
			c.keepSpare(sf) // in no queue: free at once
			return false
		}
		c.sealedCopy(sf)
		return true
	}
	return c.enqueue(p, f, ctrl)
}

// flood queues f for every neighbour but except.
func (c *Core) flood(except *peer, f []byte, ctrl bool) int {
	if c.sealer != nil && except == nil && c.sealed(f, true) {
		f = c.sealer.signFlood(f)
	}
	n := 0
	for _, p := range c.peers.list {
		if p != except && c.enqueue(p, f, ctrl) {
			n++
		}
	}
	return n
}

// collectWrites turns the queues of every idle writer into a Write.
func (ps *peers) collectWrites(c *Core) {
	for _, p := range ps.list {
		if p.writing || p.ctrl.Len()+p.data.Len() == 0 {
			continue
		}
		// The batch slice is the peer's, handed back by WriteDone: a
		// steady stream of Writes allocates nothing for it.
		frames := p.ctrl.drainTo(p.batch[:0])
		p.inWrite = p.data.bytes
		frames = p.data.drainTo(frames)
		p.batch = frames
		p.writing = true
		c.out.Writes = append(c.out.Writes, Write{Link: p.link, Frames: frames})
	}
}

// WriteDone tells the Core that the last Write for link was written.
func (c *Core) WriteDone(now time.Time, link LinkID) {
	c.now = now
	if p := c.peers.byLink[link]; p != nil {
		p.writing = false
		p.inWrite = 0
		for _, f := range p.batch {
			c.unqueued(f)
		}
		clear(p.batch) // the frames are the writer's no more
		c.streams.roomFreed()
	}
}

// EdgeFailed tells the Core that reading or writing link failed. The edge is
// closed; a neighbour on it goes down.
func (c *Core) EdgeFailed(now time.Time, link LinkID, err error) {
	c.now = now
	c.out.Close = append(c.out.Close, link)
	if p := c.peers.byLink[link]; p != nil {
		if now.Sub(p.lastRecv) >= p.silence {
			// Silent past its limit as well: the close is most likely the
			// other side's own silence verdict on this edge. Counting it as
			// silence keeps both sides' patience alike.
			err = fmt.Errorf("%w (then %w)", ErrPeerSilent, err)
		}
		c.dropPeer(p, err)
		return
	}
	c.peers.retiring = slices.DeleteFunc(c.peers.retiring, func(r retired) bool { return r.link == link })
}

// ---- handshakes ----

// Admission is the Core's decision on an incoming edge.
type Admission struct {
	// Accepted: the edge is a neighbour now, its welcome the first frame of
	// its first Write.
	Accepted bool
	// Reject is the rejection to send when not accepted.
	Reject *message.Reject
	// Wait: the node is full and knows no entry point; it asked the mesh
	// for one, and an EntryAnswer for this link fills Reject's entry
	// points (or says none came) within a second.
	Wait bool
}

// Admit decides on an incoming edge whose hello (from id, in epoch) was read.
// A full node rejects with entry points from its link-state database.
func (c *Core) Admit(now time.Time, link LinkID, id uuid.UUID, epoch uint64, h message.Hello) Admission {
	c.now = now
	switch {
	case c.closed:
		return Admission{Reject: &message.Reject{Reason: message.RejectClosing}}
	case id == c.cfg.ID:
		return Admission{Reject: &message.Reject{Reason: message.RejectSelf}}
	}
	old := c.peers.byID[id]
	if old != nil && epoch == old.epoch && !c.keepNew(old, false) {
		return Admission{Reject: &message.Reject{Reason: message.RejectDuplicate}}
	}
	if old == nil && c.peers.len() >= c.cfg.MaxConns {
		rej := &message.Reject{Reason: message.RejectFull, EntryPoints: c.entryPoints()}
		if len(rej.EntryPoints) > 0 {
			return Admission{Reject: rej}
		}
		c.members.askEntryPoint(c, link)
		return Admission{Reject: rej, Wait: true}
	}
	p := c.newPeer(id, epoch, h, link, false)
	p.ctrl.push(c.control(message.TypeWelcome, uuid.Nil, 0, c.hello().Append(nil)))
	c.addPeer(p, old)
	return Admission{Accepted: true}
}

// Register adds an edge this node dialled at addr, after the other side's
// welcome (from id, in epoch). It fails with ErrDuplicateEdge when an edge to
// that node exists that both sides keep (the new edge is then closed after
// the handshake timeout, by a Ready), and with ErrFull when the slots filled
// while the dial was in flight (the caller says goodbye on the edge and
// closes it).
func (c *Core) Register(now time.Time, link LinkID, id uuid.UUID, epoch uint64, h message.Hello, addr string) error {
	c.now = now
	switch {
	case c.closed:
		return ErrClosed
	case id == c.cfg.ID:
		return fmt.Errorf("%w: dialled itself", ErrHandshake)
	}
	old := c.peers.byID[id]
	if old != nil && epoch == old.epoch && !c.keepNew(old, true) {
		// The other side welcomed this edge, so it may hold it as its
		// neighbour until it installs the edge it dialled itself, which
		// wins; closed now, the edge could look failed to it first.
		c.peers.retiring = append(c.peers.retiring, retired{link: link, at: now.Add(c.cfg.Handshake)})
		return fmt.Errorf("%w: %s", ErrDuplicateEdge, id)
	}
	if old == nil && c.peers.len() >= c.cfg.MaxConns {
		return fmt.Errorf("%w: %d neighbours, dialled %s", ErrFull, c.peers.len(), id)
	}
	p := c.newPeer(id, epoch, h, link, true)
	p.dialTo = addr
	c.addPeer(p, old)
	return nil
}

func (c *Core) newPeer(id uuid.UUID, epoch uint64, h message.Hello, link LinkID, dialed bool) *peer {
	return &peer{
		id: id, epoch: epoch, addrs: h.Addrs, link: link, dialed: dialed,
		ctrl:  fifo{limit: c.cfg.ControlBuf},
		data:  fifo{limit: c.cfg.ForwardBuf},
		since: c.now, lastRecv: c.now, lastSent: c.now,
	}
}

// keepNew decides between an existing edge and a new one to the same node.
// Both ends must pick the same edge without talking: an edge dialled in the
// same direction as the old one replaces it (the dialer thinks the old one is
// dead); of two edges dialled in opposite directions at once, the one dialled
// by the smaller UUID stays.
func (c *Core) keepNew(old *peer, newDialed bool) bool {
	if old.dialed == newDialed {
		return true
	}
	self, other := c.cfg.ID, old.id
	return bytes.Compare(self[:], other[:]) < 0 == newDialed
}

// addPeer installs p, replacing old (the same node's previous edge) if any.
func (c *Core) addPeer(p, old *peer) {
	if old != nil {
		c.peers.remove(old)
		if old.epoch == p.epoch && !p.dialed {
			c.retire(old)
		} else {
			c.out.Close = append(c.out.Close, old.link)
		}
		if old.epoch != p.epoch {
			// The neighbour restarted: its old life is a neighbour that went down.
			c.peerDown(old, ErrPeerReplaced)
		}
	}
	c.peers.add(p)
	p.silence = c.silenceLimit(p)
	if old == nil || old.epoch != p.epoch {
		c.stats.NeighborsUp++
		ch := c.rt.AddNeighbor(c.now, p.id, c.free())
		c.ls.floodEdgeChange(p, message.TypeNewEdge, ch)
		c.emit(Event{Kind: NeighborUp, Peer: p.id})
		if !c.peers.connected {
			c.peers.connected = true
			c.emit(Event{Kind: Connected, Peer: p.id})
		}
	}
	c.ls.syncWith(p)
	c.log.Debug("neighbour up", "peer", p.id, "link", p.link, "dialed", p.dialed)
}

// retire stops using p, an edge that an incoming edge from the same life of
// the same node replaced (PROTOCOL Part 2 §3), but leaves closing it to the
// other side, which installs the new edge once it reads its welcome and then
// closes the old one. Closing it here first could reach the other side
// before the welcome: it would take the close for a failure of the edge it
// still holds and report its neighbour down, flooding link state twice. If
// the other side has not closed the edge within the handshake timeout,
// retire closes it.
func (c *Core) retire(p *peer) {
	c.peers.retiring = append(c.peers.retiring, retired{link: p.link, at: c.now.Add(c.cfg.Handshake)})
}

func (c *Core) dropPeer(p *peer, cause error) {
	if errors.Is(cause, ErrPeerSilent) {
		c.silenced(p)
	}
	c.peers.remove(p)
	c.out.Close = append(c.out.Close, p.link)
	c.peerDown(p, cause)
}

// peerDown updates link state and tells the application that p went down.
func (c *Core) peerDown(p *peer, cause error) {
	c.stats.NeighborsDown++
	if ch, ok := c.rt.RemoveNeighbor(c.now, p.id, c.free()); ok {
		c.ls.floodEdgeChange(nil, message.TypeDestroyEdge, ch)
	}
	c.log.Debug("neighbour down", "peer", p.id, "cause", cause)
	if p.dialed && !c.closed && !errors.Is(cause, ErrPeerLeft) && !errors.Is(cause, ErrPeerReplaced) {
		c.members.scheduleRedial(c, p.dialTo)
	}
	c.emit(Event{Kind: NeighborDown, Peer: p.id, Err: cause})
	if c.peers.len() == 0 && c.peers.connected {
		c.peers.connected = false
		c.emit(Event{Kind: Disconnected})
	}
}

// neighborAt reports whether a current neighbour was dialled at addr or
// advertises it.
func (c *Core) neighborAt(addr string) bool {
	for _, p := range c.peers.list {
		if p.dialTo == addr || slices.Contains(p.addrs, addr) {
			return true
		}
	}
	return false
}

// ---- timers ----

func (ps *peers) deadline(c *Core, d time.Time) time.Time {
	for _, p := range ps.list {
		d = minTime(d, p.lastSent.Add(c.cfg.Keepalive))
		d = minTime(d, p.lastRecv.Add(p.silence))
	}
	for _, r := range ps.retiring {
		d = minTime(d, r.at)
	}
	return d
}

// tick drops silent neighbours, sends keepalives and closes retired edges.
func (ps *peers) tick(c *Core) {
	now := c.now
	for _, p := range slices.Clone(ps.list) {
		switch {
		case now.Sub(p.lastRecv) >= p.silence:
			c.dropPeer(p, ErrPeerSilent)
		case now.Sub(p.lastSent) >= c.cfg.Keepalive:
			c.enqueue(p, c.control(message.TypeKeepalive, uuid.Nil, 0, nil), true)
		}
	}
	ps.retiring = slices.DeleteFunc(ps.retiring, func(r retired) bool {
		if now.Before(r.at) {
			return false
		}
		c.out.Close = append(c.out.Close, r.link)
		return true
	})
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// ---- failure detection ----

// maxPatience caps how far a neighbour's silence limit grows: 8 times the
// configured keepalive interval × missed.
const maxPatience = 8

// patience remembers, per node, how much longer than configured its silences
// are tolerated. A neighbour declared silent that comes back soon with the
// same epoch was alive all along (its node was starved of CPU, or the path
// stalled): the limit was too short for it, and every such false verdict
// floods link state twice through the whole mesh. So its limit doubles, up
// to maxPatience times, for the rest of that life; a restart (a new epoch)
// starts over, and forget drops the record.
type patience struct {
	epoch    uint64
	factor   int
	silenced time.Time // when it was last declared silent; zero once back
}

// silenced records that p was declared silent.
func (c *Core) silenced(p *peer) {
	pt := c.peers.patience[p.id]
	if pt == nil || pt.epoch != p.epoch {
		pt = &patience{epoch: p.epoch, factor: 1}
		c.peers.patience[p.id] = pt
	}
	pt.silenced = c.now
}

// silenceLimit returns how long the new neighbour p may stay silent, and
// counts its return if it was declared silent shortly before.
func (c *Core) silenceLimit(p *peer) time.Duration {
	base := c.cfg.Keepalive * time.Duration(c.cfg.DeadAfter)
	pt := c.peers.patience[p.id]
	switch {
	case pt == nil:
		return base
	case pt.epoch != p.epoch:
		delete(c.peers.patience, p.id) // restarted: that verdict was right
		return base
	case !pt.silenced.IsZero() && c.now.Sub(pt.silenced) < 16*base*time.Duration(pt.factor):
		pt.factor = min(2*pt.factor, maxPatience)
		c.log.Info("neighbour declared silent came back: tolerating longer silences from it",
			"peer", p.id, "limit", base*time.Duration(pt.factor))
	}
	pt.silenced = time.Time{}
	return base * time.Duration(pt.factor)
}

// ---- shutdown ----

// Shutdown leaves the mesh: it reports every unconfirmed message as failed,
// refuses the parked send requests, floods a last record with no neighbours
// and queues a goodbye for every neighbour (with the others' addresses, so
// that one left short of neighbours knows where to go). The caller writes
// the last Writes, then closes every edge.
func (c *Core) Shutdown(now time.Time) {
	c.now = now
	if c.closed {
		return
	}
	c.closed = true
	c.streams.shutdown()
	// The last record lists no neighbour: every node learns that this one
	// left, rather than that it cannot be reached (a broadcast does not
	// report a node that left; see streams.pump).
	for _, p := range c.peers.list {
		c.rt.RemoveNeighbor(now, p.id, 0)
	}
	c.ls.floodStates(nil, message.StateList{c.rt.Local()})
	for _, p := range c.peers.list {
		var eps []string
		for _, q := range c.peers.list {
			if q != p && len(q.addrs) > 0 && len(eps) < message.MaxAddrs {
				eps = append(eps, q.addrs[0])
			}
		}
		c.enqueue(p, c.control(message.TypeGoodbye, uuid.Nil, 0, message.Hello{Addrs: eps}.Append(nil)), true)
	}
}
