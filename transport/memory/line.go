package memory

import "time"

// item is a frame in the delivery goroutine of a timed link.
type item struct {
	frame []byte
	at    time.Time // when it is due
	seq   uint64    // tie-break: order of arrival in the goroutine
	hold  bool      // Faults.Reorder: wait for the next frame
}

// itemHeap is a min-heap of items by (at, seq). It is written out rather
// than built on container/heap, whose interface boxes every item.
type itemHeap []item

func (h itemHeap) less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}

func (h *itemHeap) push(it item) {
	*h = append(*h, it)
	s := *h
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if !s.less(i, parent) {
			break
		}
		s[i], s[parent] = s[parent], s[i]
		i = parent
	}
}

func (h *itemHeap) pop() item {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s[last] = item{} // drop the frame reference
	s = s[:last]
	for i := 0; ; {
		m, l, r := i, 2*i+1, 2*i+2
		if l < len(s) && s.less(l, m) {
			m = l
		}
		if r < len(s) && s.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// run is the delivery goroutine of pipe p. It delivers frames when they fall due, holds back frames chosen for
// reordering until the next frame has passed them, and keeps at most
// queueLen frames in flight so that senders feel back-pressure. It exits when
// the edge closes, discarding what is still in flight.
func (p *pipe) run() {
	c := p.c
	n := c.net
	defer c.wg.Done()
	var (
		h       itemHeap
		held    item
		hasHeld bool
		seq     uint64
	)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer func() {
		timer.Stop()
		p.senders.Wait() // stopped is set: no new senders
		lost := len(h) + len(p.line)
		if hasHeld {
			lost++
		}
		n.stats.discarded.Add(uint64(lost))
	}()
	push := func(it item) {
		seq++
		it.seq = seq
		h.push(it)
	}
	for {
		now := time.Now()
		for len(h) > 0 && !h[0].at.After(now) {
			it := h.pop()
			if p.blocked.Load() {
				n.stats.blocked.Add(1)
				continue
			}
			select {
			case p.ch <- it.frame:
				n.stats.delivered.Add(1)
			case <-c.stop:
				n.stats.discarded.Add(1)
				return
			}
			now = time.Now()
		}
		if hasHeld && !held.at.Add(reorderHold).After(now) {
			// Nothing overtook the held frame in time: let it go.
			hasHeld = false
			push(held)
			continue
		}

		var next time.Time
		if len(h) > 0 {
			next = h[0].at
		}
		if hasHeld {
			if flush := held.at.Add(reorderHold); next.IsZero() || flush.Before(next) {
				next = flush
			}
		}
		var tick <-chan time.Time
		if !next.IsZero() {
			timer.Reset(next.Sub(now))
			tick = timer.C
		}
		in := p.line
		inFlight := len(h)
		if hasHeld {
			inFlight++
		}
		if inFlight >= cap(p.ch) {
			in = nil // full: back-pressure on Send
		}

		select {
		case it := <-in:
			switch {
			case it.hold && hasHeld:
				// Two holds in a row: the earlier one goes behind this one's
				// due time, this one waits for the next frame.
				held.at = maxTime(held.at, it.at)
				push(held)
				held = it
			case it.hold:
				held, hasHeld = it, true
			default:
				push(it)
				if hasHeld {
					held.at = maxTime(held.at, it.at)
					push(held) // later seq: delivered after it
					hasHeld = false
				}
			}
		case <-tick:
		case <-c.stop:
			return
		}
		timer.Stop()
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
