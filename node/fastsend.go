package node

import (
	"sync"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/node/internal/core"
)

// Send's fast path. A Send to one destination whose stream has backlog room
// is accepted without a round trip through the loop: it takes a credit, is
// queued here, and returns; the loop feeds the queue to the core in batches.
// The loop publishes the credits (core.Room, less what is queued) after
// every Ready, so a credit is a place the core will find in the backlog. A
// Send that finds no credit takes the slow path (a send request answered by
// the loop, which blocks while the backlog is full), as every Multicast and
// Broadcast does.
//
// Order: a Send queued here is handed to the core before any send request
// the loop takes after it (onSend drains the queue first), so that one
// goroutine's messages keep their order whichever path each took. A queued
// message the core could not take (a Multicast took the room meanwhile) is
// parked by the core like any request and sent later; one still queued or
// parked when the node closes is reported failed (DeliveryFailed with
// ErrClosed), as every accepted message is.

// maxCredits bounds the destinations the fast path keeps credits for; past
// it the credits are forgotten and rebuilt from the slow path. The loop
// republishes every credit after each Ready, so this also bounds that work:
// a node that sends to many destinations in turn uses the slow path for
// most of them, which is as fast as Send was before the fast path.
const maxCredits = 64

type fastSends struct {
	mu      sync.Mutex
	credit  map[uuid.UUID]int // messages to dst the core takes without parking, less those queued
	queued  map[uuid.UUID]int // messages to dst in queue
	queue   []*sendReq
	spare   []*sendReq // the previous queue, for the next swap
	closed  bool
	wake    chan struct{} // one pending signal to the loop: the queue has work
	drained []uuid.UUID   // scratch for the loop
}

func (f *fastSends) init() {
	f.credit = make(map[uuid.UUID]int)
	f.queued = make(map[uuid.UUID]int)
	f.wake = make(chan struct{}, 1)
}

// tryQueue queues r, a send request to one destination, if a credit for it
// is left. The caller owns r until then; afterwards the loop does.
func (f *fastSends) tryQueue(r *sendReq) bool {
	dst := r.Dsts[0]
	f.mu.Lock()
	if f.closed || f.credit[dst] <= 0 {
		f.mu.Unlock()
		return false
	}
	f.credit[dst]--
	f.queued[dst]++
	f.queue = append(f.queue, r)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return true
}

// take empties the queue and returns what it held, in order; the slice is
// the loop's until the next take.
func (f *fastSends) take() []*sendReq {
	f.mu.Lock()
	q := f.queue
	f.queue = f.spare[:0]
	f.spare = q
	clear(f.queued)
	f.mu.Unlock()
	return q
}

// publish sets every credit to what the core can take now less what is
// queued, and starts keeping credits for dsts (destinations that a slow
// send request just used).
func (f *fastSends) publish(c *core.Core, dsts []uuid.UUID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.credit) > maxCredits {
		clear(f.credit)
	}
	for _, d := range dsts {
		f.credit[d] = 0
	}
	for d := range f.credit {
		f.credit[d] = c.Room(d) - f.queued[d]
	}
}

// close stops the fast path for good and returns what is still queued.
func (f *fastSends) close() []*sendReq {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return f.take()
}
