package core

import (
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/routing"
)

// linkState floods and applies link state around the routing table, and
// turns its changes into events and broadcast targets.
type linkState struct {
	c       *Core
	version uint64    // the routing table's Version when last looked at
	dirty   bool      // a TopologyChanged event is due
	last    time.Time // when the last TopologyChanged was emitted
	spf     time.Time // when the routes were last recomputed
}

// routeHold is the least time between two route recomputations that only
// look for changes (new broadcast targets, TopologyChanged). A join or a
// failure reaches a node as a burst of link-state changes milliseconds
// apart; the first change after a quiet spell is looked at once, the rest of
// the burst together at most routeHold later (OSPF's SPF throttling). A
// frame that needs a route (data, acks, entry replies) still recomputes at
// once. Without the hold every node recomputed its routes once per change:
// at 300 simulated nodes that was 52 % of the CPU, and 1,000 nodes did not
// converge in ten minutes of wall time.
const routeHold = 50 * time.Millisecond

func (ls *linkState) init(c *Core) { ls.c = c }

func (ls *linkState) applyStates(from *peer, sl message.StateList) {
	c := ls.c
	var fwd message.StateList
	for _, s := range sl {
		prev, known := c.rt.Epoch(s.Origin)
		v, err := c.rt.ApplyState(c.now, s)
		switch v {
		case routing.Accepted:
			fwd = append(fwd, s)
			if known && s.Epoch > prev {
				c.streams.restarted(s.Origin, s.Epoch)
			}
		case routing.Rejected:
			c.hostile(from.id, "network_state", err)
		}
	}
	ls.floodStates(from, fwd)
}

// floodStates sends records to every neighbour but except.
func (ls *linkState) floodStates(except *peer, sl message.StateList) {
	to := make([]*peer, 0, ls.c.peers.len())
	for _, p := range ls.c.peers.list {
		if p != except {
			to = append(to, p)
		}
	}
	ls.sendStates(to, sl)
}

// sendStates sends records to the given neighbours, in frames that respect
// the body limit.
func (ls *linkState) sendStates(to []*peer, sl message.StateList) {
	c := ls.c
	if len(to) == 0 {
		return
	}
	limit := min(c.cfg.MaxBody, message.DefaultMaxBody) - 64
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
		f := c.control(message.TypeNetworkState, uuid.Nil, 0, sl[:k].Append(nil))
		for _, p := range to {
			c.enqueue(p, f, true)
		}
		sl = sl[k:]
	}
}

func (ls *linkState) applyEdgeChange(from *peer, typ message.Type, ch message.EdgeChange) {
	c := ls.c
	v, err := c.rt.ApplyEdgeChange(c.now, typ == message.TypeNewEdge, ch)
	switch v {
	case routing.Accepted:
		ls.floodEdgeChange(from, typ, ch)
	case routing.Gap:
		req := message.StateRequest{ch.Origin}
		c.enqueue(from, c.control(message.TypeNetworkStateRequest, uuid.Nil, 0, req.Append(nil)), true)
	case routing.Rejected:
		c.hostile(from.id, typ.String(), err)
	}
}

func (ls *linkState) floodEdgeChange(except *peer, typ message.Type, ch message.EdgeChange) {
	c := ls.c
	c.flood(except, c.control(typ, uuid.Nil, 0, ch.Append(nil)), true)
}

// syncWith sends a new neighbour the digest of this node's database; the
// other side does the same, and each answers with the records the other
// lacks or holds older, this node's own record with the new edge among
// them. Two nodes that already agree exchange two digests and nothing more.
func (ls *linkState) syncWith(p *peer) {
	c := ls.c
	per := (min(c.cfg.MaxBody, message.DefaultMaxBody) - 64) / message.DigestEntrySize
	for _, d := range c.rt.Digests(per) {
		c.enqueue(p, c.control(message.TypeNetworkStateDigest, uuid.Nil, 0, d.Append(nil)), true)
	}
}

// onDigest answers a neighbour's digest with what it lacks.
func (ls *linkState) onDigest(from *peer, d message.Digest) {
	ls.sendStates([]*peer{from}, ls.c.rt.Newer(d))
}

// checkVersion notes a change of routes: broadcasts in flight gain the newly
// reachable nodes, and a TopologyChanged event is due.
func (ls *linkState) checkVersion() {
	c := ls.c
	// Within the hold after a recomputation, changes wait for the deadline.
	if !c.rt.Stale() || c.now.Sub(ls.spf) >= routeHold {
		if c.rt.Stale() {
			ls.spf = c.now
		}
		if v := c.rt.Version(); v != ls.version {
			ls.version = v
			ls.dirty = true
			c.streams.reachabilityChanged()
		}
	}
	if ls.dirty && c.now.Sub(ls.last) >= topologyEventGap {
		ls.dirty = false
		ls.last = c.now
		c.emit(Event{Kind: TopologyChanged})
	}
}

func (ls *linkState) deadline(d time.Time) time.Time {
	if ls.c.rt.Stale() {
		d = minTime(d, ls.spf.Add(routeHold))
	}
	if ls.dirty {
		d = minTime(d, ls.last.Add(topologyEventGap))
	}
	return d
}

// tick refreshes the local record and ages the others out.
func (ls *linkState) tick() {
	c := ls.c
	if s, ok := c.rt.Refresh(c.now); ok {
		ls.floodStates(nil, message.StateList{s})
	}
	if c.peers.len() == 0 {
		// Cut off: no refresh can arrive, so ageing would only forget the
		// nodes through which balancing finds the way back.
		c.rt.Hold(c.now)
	}
	if expired := c.rt.ExpireStates(c.now); len(expired) > 0 {
		gone := make([]uuid.UUID, len(expired))
		for i, st := range expired {
			gone[i] = st.Origin
			delete(c.peers.patience, st.Origin)
			if c.sealer != nil {
				c.sealer.forget(st.Origin)
			}
			if len(st.Neighbors) > 0 && len(st.Addrs) > 0 {
				// Not a node that left (its last record would list no
				// neighbour): most likely the other side of a split.
				c.members.rememberLost(c, st.Origin, st.Addrs[0])
			}
		}
		c.streams.forget(gone)
	}
}
