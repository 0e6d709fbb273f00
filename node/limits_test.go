package node_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/memory"
)

// TestConnectionChurnBounded is the churn of issue 13: hosts re-opening
// idle connections as fast as they can (a node grew to 1 GB under it). The
// node holds at most the handshake limits' worth of them (the rest are
// closed at once and counted), its goroutines and the process's heap stay
// bounded, and a real join still succeeds meanwhile.
func TestConnectionChurnBounded(t *testing.T) {
	const sources, perSource, rounds, limit = 10, 2, 100, 64
	seed := meshtest.Seed(t)
	m := newMesh(t, 0, seed)
	victim := m.Add(meshtest.Fast(node.WithHandshakeLimits(limit, perSource))...)
	joiner := m.Add(meshtest.Fast()...)
	base := runtime.NumGoroutine()
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	// What the node keeps is measured in live bytes after a collection:
	// the spans in use (HeapInuse) also count the holes the churn left in
	// them, a few MiB that come and go with the allocator's luck.
	live := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	live0 := live()
	heap0 := heap()
	var peakHeap uint64

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak := 0
	for s := range sources {
		tr, err := m.net.Listen(fmt.Sprintf("churn%d", s))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer tr.Close()
			var open []transport.Edge
			defer func() {
				for _, e := range open {
					e.Close()
				}
			}()
			for range rounds {
				e, err := tr.Dial(ctx, m.Addr(victim))
				if err != nil {
					return
				}
				open = append(open, e) // idle, never closed: as a host that vanishes

				mu.Lock()
				peak = max(peak, runtime.NumGoroutine())
				if len(open)%20 == 0 {
					peakHeap = max(peakHeap, heap())
				}
				mu.Unlock()
			}
		})
	}
	jctx, jcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer jcancel()
	if err := m.Node(joiner).Connect(jctx, m.Addr(victim)); err != nil {
		t.Fatalf("seed %d: a real join during the churn: %v", seed, err)
	}
	wg.Wait()
	// Each connection costs a few goroutines between the node and the
	// memory transport; the limit bounds how many the node holds.
	if bound := base + 4*sources*perSource + 64; peak > bound {
		t.Fatalf("%d goroutines at the peak of the churn, more than %d", peak, bound)
	}
	// The attackers' own ends of their idle connections are in this
	// process too (48 KiB each: the memory transport's queues), so the
	// peak bounds the sum (about 45 MiB, 56 under -race, where the issue
	// saw a node grow to 0.6-1 GB); the node itself keeps nothing once they
	// are gone.
	if grown := int64(peakHeap) - int64(heap0); grown > 128<<20 {
		t.Fatalf("the heap grew by %d MiB during the churn, more than 128", grown>>20)
	}
	// The node lets go of the closed connections on its own goroutines:
	// wait until they are gone (the join's edge stays) before measuring
	// what it kept.
	t.Logf("%d goroutines once the attackers are gone (base %d)", runtime.NumGoroutine(), base)
	meshtest.WaitFor(t, 10*time.Second, "the churn's goroutines to end", func() bool {
		return runtime.NumGoroutine() <= base+16
	})
	// Edges closing late may hold their buffers a moment longer; a node that
	// kept them would stay above the bound until the deadline.
	var kept int64
	meshtest.WaitFor(t, 10*time.Second, "the live heap to come back within 4 MiB of where it was", func() bool {
		kept = int64(live()) - int64(live0)
		return kept <= 4<<20
	})
	st := m.Node(victim).Stats()
	if st.HandshakesRefused == 0 {
		t.Fatalf("no handshake refused under %d connections from %d sources", sources*rounds, sources)
	}
	t.Logf("%d connections, %d refused, peak %d goroutines (base %d), heap %d → at most %d KiB, %d KiB kept",
		sources*rounds, st.HandshakesRefused, peak, base, heap0>>10, peakHeap>>10, kept>>10)
}

func TestHandshakeLimitsOption(t *testing.T) {
	net := memory.NewNetwork(memory.Config{})
	defer net.Close()
	for _, l := range [][2]int{{0, 1}, {1, 0}, {2, 3}} {
		tr, err := net.Listen(fmt.Sprint(l))
		if err != nil {
			t.Fatal(err)
		}
		_, err = node.New(tr, node.WithHandshakeLimits(l[0], l[1]))
		tr.Close()
		if !errors.Is(err, node.ErrInvalidOption) {
			t.Errorf("limits %v: %v", l, err)
		}
	}
}

// oversizedTransport hands the node one incoming edge whose other side
// announces a frame over the limit (as a 4 GB length prefix does).
type oversizedTransport struct {
	once chan transport.Edge
}

func (o *oversizedTransport) Dial(context.Context, string) (transport.Edge, error) {
	return nil, transport.ErrUnreachable
}

func (o *oversizedTransport) Accept(ctx context.Context) (transport.Edge, error) {
	select {
	case e := <-o.once:
		return e, nil
	case <-ctx.Done():
		return nil, transport.ErrClosed
	}
}

func (o *oversizedTransport) Addrs() []string { return []string{"oversized"} }
func (o *oversizedTransport) Close() error    { return nil }

type oversizedEdge struct{}

func (oversizedEdge) Send(context.Context, []byte) error { return nil }
func (oversizedEdge) Receive(context.Context) ([]byte, error) {
	return nil, fmt.Errorf("peer announced a 4294967295-byte frame: %w", transport.ErrFrameTooLarge)
}
func (oversizedEdge) Close() error       { return nil }
func (oversizedEdge) LocalAddr() string  { return "oversized" }
func (oversizedEdge) RemoteAddr() string { return "attacker" }

// A frame over the transport's limit ends the edge and counts as hostile.
func TestOversizedFrameCounted(t *testing.T) {
	tr := &oversizedTransport{once: make(chan transport.Edge, 1)}
	tr.once <- oversizedEdge{}
	nd, err := node.New(tr)
	if err != nil {
		t.Fatal(err)
	}
	defer nd.Close()
	meshtest.WaitFor(t, 5*time.Second, "the oversized frame counted", func() bool { return nd.Stats().Hostile == 1 })
}
