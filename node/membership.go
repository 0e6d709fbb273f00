package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/reliability"
	"github.com/distrirender/distrirender/routing"
)

// Membership errors.
var (
	// ErrNoEntryPoint is returned by Connect when the contacted node is full
	// and no node in the mesh offered to accept instead.
	ErrNoEntryPoint = errors.New("node: no node in the mesh can accept a connection")
	// ErrTooManyRedirects is returned by Connect after maxRedirects redirects.
	ErrTooManyRedirects = errors.New("node: too many redirects")
	// ErrPeerRestarted is the cause reported for messages in flight to a node
	// that restarted (a new epoch): they may have reached its previous life.
	ErrPeerRestarted = errors.New("node: destination restarted")
)

const (
	// maxRedirects bounds how many entry points Connect follows.
	maxRedirects = 8
	// entryWait is how long a full node waits for an answer to its entry
	// request before it rejects the joiner without an entry point.
	entryWait = time.Second
	// seenEntries bounds the memory of entry requests already flooded.
	seenEntries = 1024
	// balance back-off bounds, and how long a failed candidate is avoided.
	minBalanceBackoff = 200 * time.Millisecond
	maxBalanceBackoff = 10 * time.Second
	avoidFailed       = 30 * time.Second
)

type routingNode = routing.NodeInfo

// entryWaiter is a full node's pending entry request.
type entryWaiter struct {
	ch    chan []string
	until time.Time
}

// balancer is the state of connection balancing.
type balancer struct {
	busy    bool // a balancing dial is in flight
	next    time.Time
	backoff time.Duration
	avoid   map[string]time.Time // addresses that failed recently, until when
	hints   []hint               // entry points handed over by departing neighbours
}

// hint is an address a departing neighbour suggested, valid for a while.
type hint struct {
	addr  string
	until time.Time
}

const maxHints = 16

func (b *balancer) addHints(now time.Time, addrs []string) {
	for _, a := range addrs {
		b.hints = append(b.hints, hint{addr: a, until: now.Add(avoidFailed)})
	}
	if len(b.hints) > maxHints {
		b.hints = b.hints[len(b.hints)-maxHints:]
	}
}

// ---- Connect with redirects ----

// Connect opens an edge to the node at addr and returns once it is a
// neighbour. If that node is full, Connect follows the entry points it hands
// back (up to 8 redirects, never the same address twice), emitting a
// Redirected event for each; it tries each of the node's transports in turn.
// It returns ErrNoEntryPoint when the mesh offers no node that can accept,
// ErrDuplicateEdge when the edge exists already, and ErrFull when this node
// has MaxConnections neighbours by the time the handshake completes (it then
// says goodbye on the new edge and closes it).
func (n *Node) Connect(ctx context.Context, addr string) error {
	tried := map[string]bool{}
	for range maxRedirects + 1 {
		tried[addr] = true
		err := n.connectOnce(ctx, addr)
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
		n.post(func() { n.emit(Event{Kind: Redirected, Addr: next, Peer: rej.Peer}) })
		addr = next
	}
	return fmt.Errorf("%w: gave up at %s", ErrTooManyRedirects, addr)
}

// ---- entry points ----

// entryPoints lists addresses of reachable nodes that advertise free slots,
// farthest first: a joiner sent far away keeps the mesh's diameter small.
func (st *state) entryPoints() []string {
	tp := st.rt.Topology()
	nodes := slices.DeleteFunc(tp.Nodes, func(ni routingNode) bool {
		return ni.ID == st.n.id || ni.FreeSlots == 0 || ni.Distance < 0 || len(ni.Addrs) == 0
	})
	slices.SortStableFunc(nodes, func(a, b routingNode) int { return b.Distance - a.Distance })
	var out []string
	for _, ni := range nodes {
		out = append(out, ni.Addrs[0])
		if len(out) == st.n.cfg.entryPointLimit {
			break
		}
	}
	return out
}

// askEntryPoint floods an entry request; the first reply goes to the
// returned channel. The request is forgotten after entryWait.
func (st *state) askEntryPoint() <-chan []string {
	st.entryID++
	id := int32(st.entryID & 0x7fffffff)
	ch := make(chan []string, 1)
	st.entryWaits[id] = entryWaiter{ch: ch, until: st.now.Add(entryWait)}
	f := st.n.frame(message.TypeEntryRequest, 0, uuid.Nil, nil)
	setIndex(f, id)
	st.remember(message.UID{Node: st.n.id, Index: id})
	for _, p := range st.peers {
		st.enqueue(p, f, true)
	}
	return ch
}

// setIndex writes a UID index into an encoded frame (PROTOCOL.md Part 1: bytes 20-23).
func setIndex(f []byte, index int32) {
	u := uint32(index)
	f[20], f[21], f[22], f[23] = byte(u>>24), byte(u>>16), byte(u>>8), byte(u)
}

// remember records a flooded request and reports whether it was new. The
// memory is a bounded FIFO: a request older than the last seenEntries is
// long finished.
func (st *state) remember(uid message.UID) bool {
	if _, ok := st.seen[uid]; ok {
		return false
	}
	if len(st.seenOrder) >= seenEntries {
		delete(st.seen, st.seenOrder[0])
		st.seenOrder = st.seenOrder[1:]
	}
	st.seen[uid] = struct{}{}
	st.seenOrder = append(st.seenOrder, uid)
	return true
}

func (st *state) onEntryRequest(f inFrame) {
	m := f.m
	if m.UID.Node == st.n.id || !st.remember(m.UID) {
		return
	}
	if st.free() > 0 && !st.closed && len(st.n.adv) > 0 {
		reply := st.n.frame(message.TypeEntryReply, 0, m.UID.Node, st.hello().Append(nil))
		setIndex(reply, m.UID.Index)
		st.route(m.UID.Node, reply, true)
	}
	if decHopLimit(f.frame) {
		for _, q := range st.peers {
			if q != f.p {
				st.enqueue(q, f.frame, true)
			}
		}
	}
}

func (st *state) onEntryReply(p *peer, m message.Message) {
	h, err := message.DecodeHello(m.Body)
	if err != nil {
		st.n.hostile(p.id, "entry_reply", err)
		return
	}
	w, ok := st.entryWaits[m.UID.Index]
	if !ok || len(h.Addrs) == 0 {
		return // late, or for a request this node never made
	}
	delete(st.entryWaits, m.UID.Index)
	w.ch <- h.Addrs
}

func (st *state) expireEntryWaits() {
	for id, w := range st.entryWaits {
		if !st.now.Before(w.until) {
			delete(st.entryWaits, id)
			close(w.ch)
		}
	}
}

// ---- balancing ----

// runBalance opens one connection, if the node has fewer neighbours than it
// should, to the farthest reachable node with free slots. It also repairs
// partitions: while the node still holds records of nodes it cannot reach, it
// now and then dials one of them, with a probability of about 2/(nodes it
// reaches) per round, so that a cut-off part of the mesh makes about one
// repair attempt per round in all rather than one per node. At most one dial
// is in flight; failures back off with jitter and the failed address is
// avoided for a while.
func (st *state) runBalance() {
	b, n := &st.bal, st.n
	if b.busy || st.closed || st.now.Before(b.next) || n.cfg.minConns == 0 {
		return
	}
	b.next = st.now.Add(jitter(n.cfg.balanceEvery))
	if len(st.peers) >= n.cfg.maxConns {
		return // full: not even a partition repair may add an edge
	}
	for addr, until := range b.avoid {
		if !st.now.Before(until) {
			delete(b.avoid, addr)
		}
	}
	known := st.rt.Len() - 1 // other nodes with a record
	if len(st.peers) >= min(n.cfg.minConns, known) && st.rt.ReachableCount() == known && len(b.hints) == 0 {
		// Enough neighbours, and nothing cut off to repair: the common case
		// needs no copy of the topology.
		return
	}
	tp := st.rt.Topology()
	if len(st.peers) >= n.cfg.maxConns {
		return
	}
	// The farthest reachable nodes with free slots; failing those, any known
	// node that is not reachable now (a node cut off from the mesh finds its
	// way back through the records it still holds, until they age out).
	// Unreachable nodes whose records still have confirmed edges belong to a
	// live part of the mesh; a dead node's neighbours have withdrawn theirs.
	var best, lost, stale []string
	far := 1
	for _, ni := range tp.Nodes {
		if ni.ID == n.id || st.peers[ni.ID] != nil || len(ni.Addrs) == 0 {
			// A neighbour whose edge link state does not confirm yet is
			// still a neighbour: dialling it again would replace the edge.
			continue
		}
		if _, avoided := b.avoid[ni.Addrs[0]]; avoided {
			continue
		}
		switch {
		case ni.Distance < 0:
			// Its free slots are as stale as the rest of its record: a full
			// node redirects (Connect follows), so try it anyway.
			switch {
			case len(ni.Neighbors) > 0:
				lost = append(lost, ni.Addrs[0])
			default:
				stale = append(stale, ni.Addrs[0])
			}
		case ni.FreeSlots == 0:
		case ni.Distance > far:
			far, best = ni.Distance, []string{ni.Addrs[0]}
		case ni.Distance == far:
			best = append(best, ni.Addrs[0])
		}
	}
	b.hints = slices.DeleteFunc(b.hints, func(h hint) bool { return !st.now.Before(h.until) })
	for _, h := range b.hints {
		if _, avoided := b.avoid[h.addr]; !avoided && !slices.Contains(lost, h.addr) && !st.neighborAt(h.addr) {
			lost = append(lost, h.addr)
		}
	}
	reachable := len(tp.Nodes) - len(lost) - len(stale)
	if len(lost) == 0 {
		lost = stale
	}
	switch {
	case len(st.peers) >= min(n.cfg.minConns, len(tp.Nodes)-1):
		// Enough neighbours: only a partition repair, now and then.
		if len(lost) == 0 || rand.Float64() >= 2/float64(reachable+1) {
			return
		}
		best = lost
	case len(best) == 0:
		best = lost
	}
	if len(best) == 0 {
		return
	}
	// Among the farthest, a random one: nodes that see the same mesh do not
	// all pile onto the same target.
	addr := best[rand.N(len(best))]
	b.busy = true
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.handshake)
		defer cancel()
		err := n.Connect(ctx, addr)
		n.post(func() { st.balanceDone(addr, err) })
	}()
}

func (st *state) balanceDone(addr string, err error) {
	b := &st.bal
	b.busy = false
	switch {
	case err == nil || errors.Is(err, ErrDuplicateEdge):
		b.backoff = 0
		b.next = st.now // keep going while still short of neighbours
		return
	case errors.Is(err, ErrFull):
		return // incoming edges filled the slots meanwhile: nothing to fix
	}
	st.n.log.Debug("balancing dial failed", "addr", addr, "err", err)
	b.avoid[addr] = st.now.Add(avoidFailed)
	b.backoff = min(max(2*b.backoff, minBalanceBackoff), maxBalanceBackoff)
	b.next = st.now.Add(jitter(b.backoff))
}

// ---- restarts and stuck streams ----

// resetStream reports everything in flight on a unicast stream as failed and
// starts a new stream, with a larger stream epoch, for the backlog: the
// receiver drops whatever is left of the old stream when it sees the new one.
func (st *state) resetStream(s *outStream, cause error) {
	for _, f := range s.snd.FailAll(cause) {
		st.report(s, f)
	}
	st.streamResets++
	s.snd = reliability.NewSender(st.n.cfg.rel, st.n.epoch+st.streamResets)
	s.blockedBy = uuid.Nil
	st.pump(s)
	st.unpark()
}

// checkBlocked gives up on a target that has held a stream's window back
// (reliability.Sender.Blocked) for longer than the whole retry budget takes:
// it cannot be reached. A unicast stream is reset; the broadcast stream drops
// the target. Either way the messages concerned are reported failed.
func (st *state) checkBlocked(s *outStream) {
	id, ok := s.snd.Blocked()
	switch {
	case !ok:
		s.blockedBy = uuid.Nil
		return
	case id != s.blockedBy:
		s.blockedBy, s.blockedSince = id, st.now
		return
	}
	rc := st.n.cfg.rel
	limit := rc.MaxRTO * time.Duration(rc.MaxRetries+1)
	if st.now.Sub(s.blockedSince) < limit {
		return
	}
	cause := fmt.Errorf("%w: %s held the stream back for %v", reliability.ErrRetriesExhausted, id, limit)
	if s.dst != uuid.Nil {
		st.resetStream(s, cause)
		return
	}
	for _, f := range s.snd.RemoveTarget(id, cause) {
		st.report(s, f)
	}
	s.blockedBy = uuid.Nil
	st.pump(s)
	st.unpark()
}

// checkRestart resets what this node was sending to origin when its link
// state shows a new epoch: messages in flight may have reached its previous
// life, so they are reported failed (ErrPeerRestarted); what was still in
// the backlog goes to the new life on a new stream, whose larger stream
// epoch makes the receiver drop anything left of the old one.
func (st *state) checkRestart(origin uuid.UUID, epoch uint64) {
	if s := st.out[origin]; s != nil {
		switch {
		case s.dstEpoch == 0:
			s.dstEpoch = epoch
		case epoch > s.dstEpoch:
			s.dstEpoch = epoch
			st.resetStream(s, ErrPeerRestarted)
		}
	}
	if last, ok := st.epochs[origin]; ok && epoch > last {
		for _, f := range st.bcast.snd.RemoveTarget(origin, ErrPeerRestarted) {
			st.report(st.bcast, f)
		}
		st.pump(st.bcast)
		st.unpark()
	}
	st.epochs[origin] = epoch
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
func (st *state) silenced(p *peer) {
	pt := st.patience[p.id]
	if pt == nil || pt.epoch != p.epoch {
		pt = &patience{epoch: p.epoch, factor: 1}
		st.patience[p.id] = pt
	}
	pt.silenced = st.now
}

// silenceLimit returns how long the new neighbour p may stay silent, and
// counts its return if it was declared silent shortly before.
func (st *state) silenceLimit(p *peer) time.Duration {
	base := st.n.cfg.keepalive * time.Duration(st.n.cfg.deadAfter)
	pt := st.patience[p.id]
	switch {
	case pt == nil:
		return base
	case pt.epoch != p.epoch:
		delete(st.patience, p.id) // restarted: that verdict was right
		return base
	case !pt.silenced.IsZero() && st.now.Sub(pt.silenced) < 16*base*time.Duration(pt.factor):
		pt.factor = min(2*pt.factor, maxPatience)
		st.n.log.Info("neighbour declared silent came back: tolerating longer silences from it",
			"peer", p.id, "limit", base*time.Duration(pt.factor))
	}
	pt.silenced = time.Time{}
	return base * time.Duration(pt.factor)
}
