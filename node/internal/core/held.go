package core

import (
	"slices"
	"time"

	"github.com/google/uuid"
)

// maxHeld bounds the data frames held for destinations without a route:
// a window of 256 to each of four destinations while link state converges.
const maxHeld = 1024

// maxHold bounds how long frames wait for a destination's route: link state
// reaches a node joining a mesh within milliseconds (the simulator's and
// meshbench's joins take 2–13 ms), and a destination still without a route
// after a second is cut off; its frames are then dropped, and the stream's
// retransmissions (held afresh) take over.
const maxHold = time.Second

// held keeps the data frames this node originates for destinations it has
// no route to yet, in order per destination, until a route appears: right
// after a Connect, or while link state still converges, a frame dropped for
// want of a route would wait for the sender's retransmission timeout (the
// initial RTO, 200 ms), and a stream holds back its window while it waits.
// It is bounded (maxHeld frames in all, for maxHold at most); a frame that
// finds no room, or waits too long, is dropped and counted as
// DroppedNoRoute, and the retransmission recovers it.
type held struct {
	dsts   []uuid.UUID // in the order they were first held: deterministic
	frames map[uuid.UUID][][]byte
	since  map[uuid.UUID]time.Time // when dst's oldest held frame came
	n      int
}

// transmitData queues a data frame this node originates for dst: towards
// its route, or to dst itself when it is a neighbour whose link state has
// not confirmed the edge yet; held until one of those exists otherwise.
func (c *Core) transmitData(dst uuid.UUID, f []byte) {
	h := &c.held
	if h.n == 0 || len(h.frames[dst]) == 0 {
		if p := c.nextHop(dst); p != nil {
			c.send(p, dst, f, false)
			return
		}
	}
	if h.n >= maxHeld {
		c.stats.DroppedNoRoute++
		return
	}
	if h.frames == nil {
		h.frames = make(map[uuid.UUID][][]byte)
		h.since = make(map[uuid.UUID]time.Time)
	}
	if len(h.frames[dst]) == 0 {
		h.dsts = append(h.dsts, dst)
		h.since[dst] = c.now
	}
	h.frames[dst] = append(h.frames[dst], f)
	h.n++
	c.queued(f)
}

// releaseHeld queues the held frames of every destination that has a route
// now, and drops those that waited longer than maxHold.
func (c *Core) releaseHeld() {
	h := &c.held
	if h.n == 0 {
		return
	}
	kept := h.dsts[:0]
	for _, dst := range h.dsts {
		p := c.nextHop(dst)
		expired := c.now.Sub(h.since[dst]) >= maxHold
		if p == nil && !expired {
			kept = append(kept, dst)
			continue
		}
		fs := h.frames[dst]
		for _, f := range fs {
			if p != nil {
				c.send(p, dst, f, false)
			} else {
				c.stats.DroppedNoRoute++
			}
			c.unqueued(f) // after send: queued there first, if at all
		}
		h.n -= len(fs)
		delete(h.frames, dst)
		delete(h.since, dst)
	}
	clear(h.dsts[len(kept):])
	h.dsts = kept
}

// nextHop returns the neighbour through which a frame for dst goes: the
// routing table's next hop, or dst itself when it is a neighbour that link
// state does not show yet (the edge is up; the records are on their way).
// It returns nil when dst is not reachable.
func (c *Core) nextHop(dst uuid.UUID) *peer {
	if nh, ok := c.rt.NextHop(dst); ok {
		if p := c.peers.byID[nh]; p != nil {
			return p
		}
	}
	return c.peers.byID[dst]
}

// Room returns how many more messages to dst a send request can add now
// without being parked: the room left in the backlog of dst's stream (a
// whole backlog for a stream not started yet), and 0 while a parked request
// for dst waits, or once the Core is shut down.
func (c *Core) Room(dst uuid.UUID) int {
	ss := &c.streams
	if c.closed {
		return 0
	}
	for _, r := range ss.parked {
		if slices.Contains(r.Dsts, dst) {
			return 0
		}
	}
	s := ss.out[dst]
	if s == nil {
		return c.cfg.Backlog
	}
	return s.backlog.limit - s.backlog.Len()
}
