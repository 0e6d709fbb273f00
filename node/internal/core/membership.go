package core

import (
	"errors"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/routing"
)

const (
	// entryWait is how long a full node waits for an answer to its entry
	// request before it rejects the joiner without an entry point.
	entryWait = time.Second
	// seenEntries bounds the memory of entry requests already flooded.
	seenEntries = 1024
	// balance back-off bounds, and how long a failed candidate is avoided.
	minBalanceBackoff = 200 * time.Millisecond
	maxBalanceBackoff = 10 * time.Second
	avoidFailed       = 30 * time.Second
	// Redial back-off bounds: the first retry comes soon (a brief partition
	// heals fast), later ones at most every maxRedialBackoff so that a dead
	// address costs little.
	minRedialBackoff = 100 * time.Millisecond
	maxRedialBackoff = 5 * time.Second
	// maxHints bounds the addresses remembered from goodbyes.
	maxHints = 16
	// Nodes forgotten while they had neighbours (their records aged out: a
	// split longer than MaxAge) are remembered, at most maxLost of them for
	// lostFor, so that balancing can still repair the split.
	maxLost = 64
	lostFor = time.Hour
)

// membership is joining, balancing and redialling: the part of the Core
// that asks the caller to open edges.
type membership struct {
	entryID    uint64
	entryWaits []entryWaiter // a full node's pending entry requests, oldest first
	seen       map[message.UID]struct{}
	seenOrder  []message.UID

	dialSeq uint64
	dials   map[uint64]string // dials in flight: token → redial address, "" for balancing

	bal     balancer
	redials []*redial
}

// entryWaiter is a full node's pending entry request, for the handshake on link.
type entryWaiter struct {
	id    int32
	link  LinkID
	until time.Time
}

// balancer is the state of connection balancing.
type balancer struct {
	busy    bool // a balancing dial is in flight
	next    time.Time
	backoff time.Duration
	avoid   map[string]time.Time // addresses that failed recently, until when
	hints   []hint               // entry points handed over by departing neighbours
	lost    []lostNode           // nodes forgotten while they had neighbours, oldest first
}

// lostNode is a node whose record aged out while it listed neighbours, and
// the address it had.
type lostNode struct {
	id    uuid.UUID
	addr  string
	until time.Time
}

// rememberLost notes a node forgotten while it still had neighbours.
func (ms *membership) rememberLost(c *Core, id uuid.UUID, addr string) {
	b := &ms.bal
	b.lost = slices.DeleteFunc(b.lost, func(l lostNode) bool { return l.id == id })
	b.lost = append(b.lost, lostNode{id: id, addr: addr, until: c.now.Add(lostFor)})
	if len(b.lost) > maxLost {
		b.lost = slices.Delete(b.lost, 0, len(b.lost)-maxLost)
	}
}

// hint is an address a departing neighbour suggested, valid for a while.
type hint struct {
	addr  string
	until time.Time
}

// redial is an address whose edge this node dialled and lost by failure; the
// node dials it again with jittered exponential back-off until it succeeds,
// the edge exists again, or the redial window runs out.
type redial struct {
	addr    string
	next    time.Time
	backoff time.Duration
	until   time.Time
	busy    bool // a dial is in flight
}

func (ms *membership) init() {
	ms.seen = make(map[message.UID]struct{})
	ms.dials = make(map[uint64]string)
	ms.bal.avoid = make(map[string]time.Time)
}

func (ms *membership) addHints(now time.Time, addrs []string) {
	for _, a := range addrs {
		ms.bal.hints = append(ms.bal.hints, hint{addr: a, until: now.Add(avoidFailed)})
	}
	if len(ms.bal.hints) > maxHints {
		ms.bal.hints = ms.bal.hints[len(ms.bal.hints)-maxHints:]
	}
}

func (ms *membership) deadline(c *Core, d time.Time) time.Time {
	for _, r := range ms.redials {
		if !r.busy {
			d = minTime(d, r.next)
		}
	}
	if !ms.bal.busy && c.cfg.MinConns > 0 {
		d = minTime(d, ms.bal.next)
	}
	if len(ms.entryWaits) > 0 {
		d = minTime(d, ms.entryWaits[0].until)
	}
	return d
}

func (ms *membership) tick(c *Core) {
	ms.runRedials(c)
	ms.runBalance(c)
	ms.expireEntryWaits(c)
}

// dial asks the caller to connect to addr; redial names the redial it is for.
func (ms *membership) dial(c *Core, addr, redial string) {
	ms.dialSeq++
	ms.dials[ms.dialSeq] = redial
	c.out.Dials = append(c.out.Dials, Dial{Token: ms.dialSeq, Addr: addr})
}

// DialDone reports the result of a Dial.
func (c *Core) DialDone(now time.Time, token uint64, addr string, err error) {
	c.now = now
	ms := &c.members
	redial, ok := ms.dials[token]
	if !ok {
		return
	}
	delete(ms.dials, token)
	if redial != "" {
		ms.redialDone(c, redial, err)
	} else {
		ms.balanceDone(c, addr, err)
	}
}

// ---- entry points ----

// entryPoints lists addresses of reachable nodes that advertise free slots,
// farthest first: a joiner sent far away keeps the mesh's diameter small.
func (c *Core) entryPoints() []string {
	tp := c.rt.Topology()
	nodes := slices.DeleteFunc(tp.Nodes, func(ni routing.NodeInfo) bool {
		return ni.ID == c.cfg.ID || ni.FreeSlots == 0 || ni.Distance < 0 || len(ni.Addrs) == 0
	})
	slices.SortStableFunc(nodes, func(a, b routing.NodeInfo) int { return b.Distance - a.Distance })
	var out []string
	for _, ni := range nodes {
		out = append(out, ni.Addrs[0])
		if len(out) == c.cfg.EntryPointLimit {
			break
		}
	}
	return out
}

// askEntryPoint floods an entry request for the handshake on link; the first
// reply, or the end of the wait, becomes an EntryAnswer.
func (ms *membership) askEntryPoint(c *Core, link LinkID) {
	ms.entryID++
	id := int32(ms.entryID & 0x7fffffff)
	ms.entryWaits = append(ms.entryWaits, entryWaiter{id: id, link: link, until: c.now.Add(entryWait)})
	f := c.control(message.TypeEntryRequest, uuid.Nil, id, nil)
	ms.remember(message.UID{Node: c.cfg.ID, Index: id})
	c.flood(nil, f, true)
}

// remember records a flooded request and reports whether it was new. The
// memory is a bounded FIFO: a request older than the last seenEntries is
// long finished.
func (ms *membership) remember(uid message.UID) bool {
	if _, ok := ms.seen[uid]; ok {
		return false
	}
	if len(ms.seenOrder) >= seenEntries {
		delete(ms.seen, ms.seenOrder[0])
		ms.seenOrder = ms.seenOrder[1:]
	}
	ms.seen[uid] = struct{}{}
	ms.seenOrder = append(ms.seenOrder, uid)
	return true
}

func (ms *membership) onEntryRequest(c *Core, from *peer, m message.Message, raw []byte) {
	if m.UID.Node == c.cfg.ID || !ms.remember(m.UID) {
		return
	}
	if c.free() > 0 && !c.closed && len(c.cfg.Addrs) > 0 {
		c.route(m.UID.Node, c.control(message.TypeEntryReply, m.UID.Node, m.UID.Index, c.hello().Append(nil)), true)
	}
	if message.DecrementHopLimit(raw) {
		c.flood(from, raw, true)
	}
}

func (ms *membership) onEntryReply(c *Core, from *peer, m message.Message) {
	h, err := message.DecodeHello(m.Body)
	if err != nil {
		c.hostile(from.id, "entry_reply", err)
		return
	}
	i := slices.IndexFunc(ms.entryWaits, func(w entryWaiter) bool { return w.id == m.UID.Index })
	if i < 0 || len(h.Addrs) == 0 {
		return // late, or for a request this node never made
	}
	w := ms.entryWaits[i]
	ms.entryWaits = slices.Delete(ms.entryWaits, i, i+1)
	c.out.EntryAnswers = append(c.out.EntryAnswers, EntryAnswer{Link: w.link, Addrs: h.Addrs})
}

func (ms *membership) expireEntryWaits(c *Core) {
	for len(ms.entryWaits) > 0 && !c.now.Before(ms.entryWaits[0].until) {
		c.out.EntryAnswers = append(c.out.EntryAnswers, EntryAnswer{Link: ms.entryWaits[0].link})
		ms.entryWaits = ms.entryWaits[1:]
	}
}

// ---- balancing ----

// runBalance opens one connection, if the node has fewer neighbours than it
// should, to the farthest reachable node with free slots. It also repairs
// partitions: while the node still holds records of nodes it cannot reach (or,
// for an hour, remembers nodes forgotten while they still had neighbours: a
// split longer than the record MaxAge), it now and then dials one of them,
// with a probability of about 2/(nodes it
// reaches) per round, so that a cut-off part of the mesh makes about one
// repair attempt per round in all rather than one per node. At most one dial
// is in flight; failures back off with jitter and the failed address is
// avoided for a while.
func (ms *membership) runBalance(c *Core) {
	b := &ms.bal
	if b.busy || c.closed || c.now.Before(b.next) || c.cfg.MinConns == 0 {
		return
	}
	b.next = c.now.Add(c.jitter(c.cfg.BalanceEvery))
	if c.peers.len() >= c.cfg.MaxConns {
		return // full: not even a partition repair may add an edge
	}
	for addr, until := range b.avoid {
		if !c.now.Before(until) {
			delete(b.avoid, addr)
		}
	}
	b.lost = slices.DeleteFunc(b.lost, func(l lostNode) bool { return !c.now.Before(l.until) || c.rt.Known(l.id) })
	known := c.rt.Len() - 1 // other nodes with a record
	reach := c.rt.ReachableCount()
	short := c.peers.len() < min(c.cfg.MinConns, known)
	if !short {
		// Enough neighbours: only a partition repair, now and then, while
		// records of unreachable nodes remain: with a probability of about
		// 2/(nodes reached) per round, drawn before anything is copied, so
		// that a large mesh pays for the topology only when it dials.
		if reach == known && len(b.hints) == 0 && len(b.lost) == 0 {
			return
		}
		if c.cfg.Rand.Float64() >= 2/float64(reach+2) {
			return
		}
	}
	tp := c.rt.Topology()
	// The farthest reachable nodes with free slots; failing those, any known
	// node that is not reachable now (a node cut off from the mesh finds its
	// way back through the records it still holds, until they age out).
	// Unreachable nodes whose records still have confirmed edges belong to a
	// live part of the mesh; a dead node's neighbours have withdrawn theirs.
	var best, lost, stale []string
	far := 1
	for _, ni := range tp.Nodes {
		if ni.ID == c.cfg.ID || c.peers.byID[ni.ID] != nil || len(ni.Addrs) == 0 {
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
			if len(ni.Neighbors) > 0 {
				lost = append(lost, ni.Addrs[0])
			} else {
				stale = append(stale, ni.Addrs[0])
			}
		case ni.FreeSlots == 0:
		case ni.Distance > far:
			far, best = ni.Distance, []string{ni.Addrs[0]}
		case ni.Distance == far:
			best = append(best, ni.Addrs[0])
		}
	}
	b.hints = slices.DeleteFunc(b.hints, func(h hint) bool { return !c.now.Before(h.until) })
	for _, h := range b.hints {
		if _, avoided := b.avoid[h.addr]; !avoided && !slices.Contains(lost, h.addr) && !c.neighborAt(h.addr) {
			lost = append(lost, h.addr)
		}
	}
	for _, l := range b.lost {
		if _, avoided := b.avoid[l.addr]; !avoided && !slices.Contains(lost, l.addr) && !c.neighborAt(l.addr) {
			lost = append(lost, l.addr)
		}
	}
	if len(lost) == 0 {
		lost = stale
	}
	if !short || len(best) == 0 {
		best = lost
	}
	if len(best) == 0 {
		return
	}
	// Among the farthest, a random one: nodes that see the same mesh do not
	// all pile onto the same target.
	b.busy = true
	ms.dial(c, best[c.cfg.Rand.IntN(len(best))], "")
}

func (ms *membership) balanceDone(c *Core, addr string, err error) {
	b := &ms.bal
	b.busy = false
	switch {
	case err == nil || errors.Is(err, ErrDuplicateEdge):
		b.backoff = 0
		b.next = c.now // keep going while still short of neighbours
		return
	case errors.Is(err, ErrFull):
		return // incoming edges filled the slots meanwhile: nothing to fix
	}
	c.log.Debug("balancing dial failed", "addr", addr, "err", err)
	b.avoid[addr] = c.now.Add(avoidFailed)
	b.backoff = min(max(2*b.backoff, minBalanceBackoff), maxBalanceBackoff)
	b.next = c.now.Add(c.jitter(b.backoff))
}

// ---- redials ----

func (ms *membership) scheduleRedial(c *Core, addr string) {
	if addr == "" || c.cfg.RedialFor <= 0 {
		return
	}
	if slices.ContainsFunc(ms.redials, func(r *redial) bool { return r.addr == addr }) {
		return
	}
	r := &redial{addr: addr, backoff: minRedialBackoff, until: c.now.Add(c.cfg.RedialFor)}
	r.next = c.now.Add(c.jitter(r.backoff))
	ms.redials = append(ms.redials, r)
}

func (ms *membership) runRedials(c *Core) {
	ms.redials = slices.DeleteFunc(ms.redials, func(r *redial) bool {
		if r.busy || c.now.Before(r.next) {
			return false
		}
		if c.neighborAt(r.addr) {
			// The edge exists again (the other side dialled, or Connect did):
			// dialling once more would only replace it.
			return true
		}
		r.busy = true
		ms.dial(c, r.addr, r.addr)
		return false
	})
}

func (ms *membership) redialDone(c *Core, addr string, err error) {
	i := slices.IndexFunc(ms.redials, func(r *redial) bool { return r.addr == addr })
	if i < 0 {
		return
	}
	r := ms.redials[i]
	r.busy = false
	done := err == nil || errors.Is(err, ErrDuplicateEdge) || errors.Is(err, ErrClosed)
	if !done && c.now.After(r.until) {
		c.log.Info("giving up redialling", "addr", addr, "err", err)
		done = true
	}
	if done {
		ms.redials = slices.Delete(ms.redials, i, i+1)
		return
	}
	r.backoff = min(2*r.backoff, maxRedialBackoff)
	r.next = c.now.Add(c.jitter(r.backoff))
}
