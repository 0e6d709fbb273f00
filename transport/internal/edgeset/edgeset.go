// Package edgeset is the lifecycle that every transport shares: the set of
// its live edges, the queue of incoming edges that wait for Accept, and the
// one-way switch from open to closed.
//
// A transport keeps one Set. It tracks each edge it makes (dialled or
// accepted) from the moment the edge exists until the edge has let go of its
// resources, so that Close can close what is still open; it queues incoming
// edges for Accept; and its Close calls Set.Close, which marks the set closed
// and hands back the tracked edges for the transport to close outside the
// set's lock, in its own way.
//
// What is not the same across transports stays with them: the error a
// closed transport returns (passed to Accept), how an incoming edge is
// queued (each selects on Queue and Done with its own alternatives), how an
// edge is closed, and anything a transport does alongside tracking (libp2p
// counts edges per peer, webrtc counts goroutines). A transport that needs
// such bookkeeping to happen atomically with Track, Untrack or Close holds a
// lock of its own around those calls; the Set never calls out while it
// holds its lock, so that order (the transport's lock, then the Set's) is
// safe.
package edgeset

import (
	"context"
	"sync"

	"github.com/distrirender/distrirender/transport"
)

// Edge is the constraint on the edge type of a Set: a comparable
// transport.Edge, in practice a transport's *Edge.
type Edge interface {
	comparable
	transport.Edge
}

// Set is a transport's live edges and accept queue. It is safe for
// concurrent use. Make one with New.
type Set[E Edge] struct {
	accept chan E
	done   chan struct{} // closed, under mu, by the first Close

	mu    sync.Mutex
	edges map[E]struct{}
}

// New returns an open Set whose accept queue holds backlog edges.
func New[E Edge](backlog int) *Set[E] {
	return &Set[E]{
		accept: make(chan E, backlog),
		done:   make(chan struct{}),
		edges:  make(map[E]struct{}),
	}
}

// Track records e as a live edge and reports true, or reports false (and
// records nothing) if the set is closed: then the caller must close e
// itself, since Close has taken, or is taking, its snapshot of the edges
// without it. Tracking an edge that is tracked already changes nothing.
func (s *Set[E]) Track(e E) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Closed() {
		return false
	}
	s.edges[e] = struct{}{}
	return true
}

// Untrack forgets e, once it needs no closing any more, and reports whether
// it was tracked. It works on a closed set too.
func (s *Set[E]) Untrack(e E) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.edges[e]
	delete(s.edges, e)
	return ok
}

// Tracked returns the edges tracked now, in no particular order.
func (s *Set[E]) Tracked() []E {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshot()
}

func (s *Set[E]) snapshot() []E {
	edges := make([]E, 0, len(s.edges))
	for e := range s.edges {
		edges = append(edges, e)
	}
	return edges
}

// Queue is the accept queue, for the transport to put incoming edges on. It
// is never closed: a sender selects on it together with Done, and on
// whatever else it waits for, and decides itself what becomes of an edge it
// could not queue. An edge should be tracked before it is queued, so that
// Close closes it if Accept never takes it.
func (s *Set[E]) Queue() chan<- E { return s.accept }

// Accept waits for the next edge on the queue. Once the set is closed, it
// returns errClosed("Accept"), the transport's error for a call on a closed
// transport; if ctx ends first, ctx's error. On an error the edge is an
// untyped nil.
func (s *Set[E]) Accept(ctx context.Context, errClosed func(op string) error) (transport.Edge, error) {
	if s.Closed() {
		return nil, errClosed("Accept")
	}
	select {
	case e := <-s.accept:
		return e, nil
	case <-s.done:
		return nil, errClosed("Accept")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Done returns a channel that is closed when the set is closed.
func (s *Set[E]) Done() <-chan struct{} { return s.done }

// Closed reports whether the set is closed.
func (s *Set[E]) Closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Close closes the set: Done is closed, Accept returns the closed error,
// and Track refuses every edge from now on. The first call returns the
// edges tracked at that moment, for the caller to close outside the set's
// lock (an edge's close typically ends in Untrack), and first true; every
// edge ever tracked is then either in that list or was untracked before.
// Later calls return nil and false. Edges still on the queue are in the
// list too, having been tracked before they were queued (see Queue).
func (s *Set[E]) Close() (edges []E, first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Closed() {
		return nil, false
	}
	close(s.done)
	return s.snapshot(), true
}
