package reliability

import "time"

// timerItem is a retransmission deadline of one pending copy, identified by
// its message index and target. Items are never removed when a copy is
// acknowledged or its deadline changes: they become stale, and stale items
// are dropped when they reach the top of the heap (or by compaction).
type timerItem struct {
	at  time.Time
	ord uint64 // insertion order: FIFO among equal deadlines, deterministic
	seq uint32
	t   *target
}

// timerHeap is a binary min-heap of timerItems ordered by (at, ord). It is
// hand-written instead of container/heap so that pushes do not allocate.
type timerHeap []timerItem

func (h timerHeap) less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].ord < h[j].ord
}

func (h *timerHeap) push(it timerItem) {
	*h = append(*h, it)
	hh := *h
	for i := len(hh) - 1; i > 0; {
		p := (i - 1) / 2
		if !hh.less(i, p) {
			break
		}
		hh[i], hh[p] = hh[p], hh[i]
		i = p
	}
}

func (h *timerHeap) pop() timerItem {
	hh := *h
	top := hh[0]
	last := len(hh) - 1
	hh[0] = hh[last]
	hh[last] = timerItem{}
	hh = hh[:last]
	hh.down(0)
	*h = hh
	return top
}

func (h timerHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

func (h timerHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}
