package node

import (
	"math/bits"
	"sync"
)

// Large frames are read into buffers the node reuses: the readers take them
// from the node's pool (transport.ReceiveBuffer), a delivered message's body
// lives in one, and Delivery.Release gives it back. A new 64 KiB slice per
// frame costs more than the transport's own work (GC and fresh pages: a QUIC
// edge receiving 64 KiB frames that way runs at about 0.72 of the rate it
// reaches with a reused buffer). Small frames are cheap to allocate and are
// not pooled.
//
// A released body starts after its frame's header, so a buffer comes back
// a header shorter than it went out (a slice cannot grow back at its
// start). Buffers are therefore a sixteenth larger than their class: one
// serves dozens of frames of its class before it is too short and dropped.
const (
	// minPooledShift: frames under 16 KiB are allocated.
	minPooledShift = 14
	// maxPooledShift: the largest class, 2 MiB, over the largest frame.
	maxPooledShift = 21
	// maxPooledBytes bounds what a node's pool keeps for reuse, and
	// maxPerClass the buffers it keeps of one class.
	maxPooledBytes = 4 << 20
	maxPerClass    = 256
)

// classSize is the capacity of a new buffer of class k.
func classSize(k int) int { return 1<<k + 1<<k/16 }

// buffers is a node's pool of large frame buffers, in classes of powers of
// two: class k holds buffers of capacity 1<<k up to classSize(k). It is
// safe for concurrent use (readers take, the loop and the application give
// back). What it keeps is bounded by maxPooledBytes; a buffer that does not
// fit is left to the garbage collector, as is every buffer never given back.
type buffers struct {
	mu     sync.Mutex
	free   [maxPooledShift - minPooledShift + 1][][]byte
	bytes  int    // capacity held in free
	reused uint64 // gets served from free, for tests
}

// get returns a slice of length n: from the pool when n is large, newly
// allocated otherwise.
func (b *buffers) get(n int) []byte {
	if n < 1<<minPooledShift || n > classSize(maxPooledShift) {
		return make([]byte, n)
	}
	k := bits.Len(uint(n)) - 1 // 1<<k <= n
	if n > classSize(k) {
		k++
	}
	i := k - minPooledShift
	b.mu.Lock()
	for len(b.free[i]) > 0 {
		last := len(b.free[i]) - 1
		p := b.free[i][last]
		b.free[i][last] = nil
		b.free[i] = b.free[i][:last]
		b.bytes -= cap(p)
		if cap(p) >= n {
			b.reused++
			b.mu.Unlock()
			return p[:n]
		}
		// Worn too short by the headers cut off it: dropped.
	}
	b.mu.Unlock()
	return make([]byte, n, classSize(k))
}

// put gives p back for reuse; p must not be used afterwards, by anyone. It
// may be a sub-slice of a buffer get returned (a body after its header):
// it is filed under the largest class its capacity covers.
func (b *buffers) put(p []byte) {
	c := cap(p)
	k := bits.Len(uint(c)) - 1 // 1<<k <= c
	if c == 0 || k < minPooledShift || k > maxPooledShift {
		return
	}
	i := k - minPooledShift
	p = p[:c]
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bytes+c > maxPooledBytes || len(b.free[i]) >= maxPerClass {
		return
	}
	for _, q := range b.free[i] {
		if &q[0] == &p[0] {
			return // given back twice: kept once
		}
	}
	b.free[i] = append(b.free[i], p)
	b.bytes += c
}
