package routing

// expiryHeap is a min-heap of remote records by expiry time. Each record
// knows its index (record.heapIdx) so that an update re-sorts it in place in
// O(log n) and the heap never holds stale entries.
type expiryHeap []*record

func (h expiryHeap) less(i, j int) bool { return h[i].expires.Before(h[j].expires) }

func (h expiryHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}

func (h *expiryHeap) push(r *record) {
	r.heapIdx = len(*h)
	*h = append(*h, r)
	h.up(r.heapIdx)
}

// remove deletes the record at index i.
func (h *expiryHeap) remove(i int) {
	old := *h
	n := len(old) - 1
	if i != n {
		old.swap(i, n)
	}
	old[n].heapIdx = -1
	old[n] = nil
	*h = old[:n]
	if i != n {
		h.fix(i)
	}
}

// fix restores the heap order after the record at index i changed its expiry.
func (h expiryHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h expiryHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h expiryHeap) down(i0 int) bool {
	i, n := i0, len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h.less(r, l) {
			j = r
		}
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}
