package core

import (
	"slices"
	"time"

	"github.com/distrirender/distrirender/message"
)

// reuseAge is how long a frame is tracked at most: a frame still not free
// by then (its stream reset, its neighbour gone with it queued) is
// forgotten, and left to the garbage collector.
const reuseAge = 30 * time.Second

// reuse tracks the frames of unicast messages this node originates (given
// by the driver in SendRequest.Frames) and the unicast frames it relays, of
// Config.ReuseFrom bytes or more, so that Ready.Free can hand each back
// once nothing refers to it: its stream's sender let it go with every copy
// acknowledged (a relayed frame has no sender), and no queue, held list or
// Write holds it. Sealed copies are tracked the same way but kept for the
// next seal. Retransmissions and broadcasts are not tracked. Anything it is
// unsure of it forgets: a frame never handed back is only garbage, one
// handed back too early would be another message's bytes on the wire.
type reuse struct {
	live  map[*byte]*reused // keyed by the first byte of the body
	sweep time.Time         // when old entries are next looked for
	// spare are sealed copies whose Write is done, for the next seal: a
	// closed cluster seals every transmission into a copy of its own.
	spare      [][]byte
	spareBytes int
}

type reused struct {
	frame []byte
	out   int  // in queues, held or in a Write: enqueued and not written
	acked bool // its sender let it go, every copy acknowledged
	spare bool // a sealed copy: kept for the next seal, not handed back
	since time.Time
}

// maxSpare bounds the sealed copies kept for reuse: their count and bytes.
const (
	maxSpare      = 64
	maxSpareBytes = 4 << 20
)

// reuseKey is the map key of frame f, or nil when f is not to be tracked
// (shorter than ReuseFrom, or reuse off).
func (c *Core) reuseKey(f []byte) *byte {
	if c.cfg.ReuseFrom <= 0 || len(f) < c.cfg.ReuseFrom || len(f) <= message.HeaderSize {
		return nil
	}
	return &f[message.HeaderSize]
}

// track starts tracking a unicast frame as its sender takes it.
func (c *Core) track(f []byte) { c.trackAs(f, reused{}) }

// relayed tracks a frame this node relays, just queued: it is the Core's
// (Frame), and free once written.
func (c *Core) relayed(f []byte) { c.trackAs(f, reused{out: 1, acked: true}) }

// sealedCopy tracks a sealed copy just queued: free once written, and then
// kept for the next seal.
func (c *Core) sealedCopy(f []byte) { c.trackAs(f, reused{out: 1, acked: true, spare: true}) }

// spareFor returns a kept sealed copy that can hold n bytes, or nil.
func (c *Core) spareFor(n int) []byte {
	r := &c.reuse
	if c.cfg.ReuseFrom <= 0 || n < c.cfg.ReuseFrom {
		return nil
	}
	for i := len(r.spare) - 1; i >= 0; i-- {
		if f := r.spare[i]; cap(f) >= n {
			r.spare = slices.Delete(r.spare, i, i+1)
			r.spareBytes -= cap(f)
			return f
		}
	}
	return nil
}

// keepSpare keeps f, a sealed copy nothing refers to, for the next seal.
func (c *Core) keepSpare(f []byte) {
	r := &c.reuse
	if c.reuseKey(f) == nil || len(r.spare) >= maxSpare || r.spareBytes+cap(f) > maxSpareBytes {
		return
	}
	r.spare = append(r.spare, f)
	r.spareBytes += cap(f)
}

func (c *Core) trackAs(f []byte, e reused) {
	k := c.reuseKey(f)
	if k == nil {
		return
	}
	r := &c.reuse
	if r.live == nil {
		r.live = make(map[*byte]*reused)
	}
	tracked := e // declared here, so that only a tracked frame costs an allocation
	tracked.frame, tracked.since = f, c.now
	r.live[k] = &tracked
}

// queued notes that f went into a queue or the held list; unqueued that it
// left one for good (written, or dropped), freeing it if it can be.
func (c *Core) queued(f []byte) {
	if k := c.reuseKey(f); k != nil {
		if e := c.reuse.live[k]; e != nil {
			e.out++
		}
	}
}

func (c *Core) unqueued(f []byte) {
	k := c.reuseKey(f)
	if k == nil {
		return
	}
	if e := c.reuse.live[k]; e != nil {
		e.out--
		c.maybeFree(k, e)
	}
}

// released takes the messages stream s's sender let go.
func (ss *streams) released(s *outStream) {
	c := ss.c
	if c.cfg.ReuseFrom <= 0 || s == ss.bcast {
		return
	}
	ss.spent = s.snd.TakeReleased(ss.spent[:0])
	for _, m := range ss.spent {
		if len(m.Body) == 0 {
			continue
		}
		k := &m.Body[0]
		e := c.reuse.live[k]
		if e == nil {
			continue
		}
		if !m.Acked {
			delete(c.reuse.live, k) // its body went out in a Failure
			continue
		}
		e.acked = true
		c.maybeFree(k, e)
	}
	clear(ss.spent)
}

func (c *Core) maybeFree(k *byte, e *reused) {
	if e.acked && e.out == 0 {
		delete(c.reuse.live, k)
		if e.spare {
			c.keepSpare(e.frame)
			return
		}
		c.out.Free = append(c.out.Free, e.frame)
	}
}

// sweepReuse forgets the frames tracked for longer than reuseAge.
func (c *Core) sweepReuse() {
	r := &c.reuse
	if len(r.live) == 0 || c.now.Before(r.sweep) {
		return
	}
	r.sweep = c.now.Add(reuseAge / 4)
	for k, e := range r.live {
		if c.now.Sub(e.since) >= reuseAge {
			delete(r.live, k)
		}
	}
}
