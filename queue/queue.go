// Package queue provides the application-facing queues of a mesh node.
//
// Queue is a bounded, concurrency-safe FIFO with back-pressure and context
// support: the node pushes delivered messages into it and the application pops
// them (the inbound queue), or the application pushes what it wants sent and
// the node's event loop pops it (the outbound queue). Once a value is in a
// Queue the network no longer touches it.
//
// Ring is a bounded FIFO without locks for use by a single goroutine, such as
// the per-destination backlogs and forwarding buffers inside a node's event
// loop.
package queue

import (
	"context"
	"errors"
	"sync"
)

// ErrClosed is returned by Push on a closed Queue, and by Pop on a closed Queue
// once it is empty.
var ErrClosed = errors.New("queue: closed")

// Queue is a bounded FIFO safe for concurrent use by any number of producers
// and consumers. Push blocks while the queue is full (back-pressure), Pop
// blocks while it is empty. After Close, Push fails and Pop drains the values
// left before returning ErrClosed.
//
// The zero value is not usable: create a Queue with New.
type Queue[T any] struct {
	items chan T
	done  chan struct{} // closed by Close
	space chan struct{} // coalesced "a Pop made room" signal, capacity 1
	once  sync.Once
}

// New returns an empty Queue that holds at most capacity values.
// It panics if capacity is less than 1.
func New[T any](capacity int) *Queue[T] {
	if capacity < 1 {
		panic("queue: New with capacity < 1")
	}
	return &Queue[T]{
		items: make(chan T, capacity),
		done:  make(chan struct{}),
		space: make(chan struct{}, 1),
	}
}

// Push appends v, blocking while the queue is full. It returns ErrClosed if the
// queue is closed (before or while waiting), or ctx's error if ctx ends first.
// If there is room, Push succeeds even when ctx is already done.
func (q *Queue[T]) Push(ctx context.Context, v T) error {
	select {
	case <-q.done:
		return ErrClosed
	default:
	}
	select {
	case q.items <- v:
		return nil
	default:
	}
	select {
	case q.items <- v:
		return nil
	case <-q.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TryPush appends v if there is room and the queue is open, without blocking.
// It reports whether v was added.
func (q *Queue[T]) TryPush(v T) bool {
	select {
	case <-q.done:
		return false
	default:
	}
	select {
	case q.items <- v:
		return true
	default:
		return false
	}
}

// Pop removes and returns the oldest value, blocking while the queue is empty.
// After Close it keeps returning the values left in the queue, then the zero
// value and ErrClosed. It returns ctx's error if ctx ends while waiting.
// If a value is available, Pop returns it even when ctx is already done.
func (q *Queue[T]) Pop(ctx context.Context) (T, error) {
	select {
	case v := <-q.items:
		q.signalSpace()
		return v, nil
	default:
	}
	select {
	case v := <-q.items:
		q.signalSpace()
		return v, nil
	case <-q.done:
		// Closed: drain what is left before reporting ErrClosed.
		return q.drain()
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// TryPop removes and returns the oldest value if there is one, without
// blocking. It keeps returning values left in a closed queue.
func (q *Queue[T]) TryPop() (T, bool) {
	select {
	case v := <-q.items:
		q.signalSpace()
		return v, true
	default:
		var zero T
		return zero, false
	}
}

func (q *Queue[T]) drain() (T, error) {
	select {
	case v := <-q.items:
		q.signalSpace()
		return v, nil
	default:
		var zero T
		return zero, ErrClosed
	}
}

func (q *Queue[T]) signalSpace() {
	select {
	case q.space <- struct{}{}:
	default:
	}
}

// Len returns the number of values in the queue. Under concurrent use it is a
// snapshot that may be stale by the time it is read.
func (q *Queue[T]) Len() int { return len(q.items) }

// Cap returns the queue's capacity.
func (q *Queue[T]) Cap() int { return cap(q.items) }

// Space returns a channel that receives a value after a Pop or TryPop has made
// room in the queue. Signals are coalesced: the channel has capacity 1, so many
// pops before the reader looks produce one value. It lets an event loop that
// got false from TryPush resume delivery without polling: select on Space,
// then TryPush again (room may already be taken by another producer).
// A signal may be stale: always retry and be prepared for it to fail.
func (q *Queue[T]) Space() <-chan struct{} { return q.space }

// Close closes the queue: later and blocked Pushes return ErrClosed, and Pop
// returns ErrClosed once the values left have been drained. Close is
// idempotent and safe to call concurrently with every other method. Values
// pushed concurrently with Close may or may not be accepted; an accepted value
// is still drained by Pop.
func (q *Queue[T]) Close() {
	q.once.Do(func() { close(q.done) })
}
