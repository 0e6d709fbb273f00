package sim_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/distrirender/distrirender/node/internal/core"
	"github.com/distrirender/distrirender/node/internal/sim"
	"github.com/distrirender/distrirender/routing"
)

// scaleRun builds a mesh of size nodes by joins through random members,
// waits until it converges (every node routes to every other, degrees
// within 5..10), and measures one more join and one leave.
func scaleRun(t *testing.T, size int) {
	s := newSim(t)
	s.Default = sim.Profile{Latency: time.Millisecond, Jitter: time.Millisecond}
	s.Configure = func(_ int, c *core.Config) {
		// Refresh off, as in the membership benchmark: only joins and
		// leaves are counted.
		c.Routing = routing.Config{RefreshInterval: time.Hour, MaxAge: 3 * time.Hour}.WithDefaults()
	}
	start := time.Now()
	r := s.Rand()
	ns := []*sim.Node{s.AddNode()}
	for len(ns) < size {
		n := s.AddNode()
		link(t, n, ns[r.IntN(len(ns))])
		ns = append(ns, n)
	}
	converged := func() bool { return sim.DegreesWithin(s, 5, 10) && sim.Converged(s) }
	if !s.RunUntilEvery(10*time.Minute, time.Second, converged) {
		t.Fatalf("%d nodes did not converge in 10 minutes of virtual time", size)
	}
	virtual, wall := s.Elapsed(), time.Since(start)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	quiet := func() { s.Run(30 * time.Second) }
	quiet()
	f0 := sim.TopologyFrames(s)
	n := s.AddNode()
	link(t, n, ns[r.IntN(len(ns))])
	if !s.RunUntilEvery(10*time.Minute, time.Second, converged) {
		t.Fatal("no convergence after one more join")
	}
	quiet()
	f1 := sim.TopologyFrames(s)
	n.Leave()
	if !s.RunUntilEvery(10*time.Minute, time.Second, func() bool { return sim.Converged(s) }) {
		t.Fatal("no convergence after one leave")
	}
	quiet()
	f2 := sim.TopologyFrames(s)
	edges := 0
	var limited uint64
	for _, x := range s.Nodes() {
		limited += x.Core().Stats().RateLimited
	}
	for _, x := range s.Live() {
		edges += len(x.Core().Neighbors())
	}
	if limited != 0 {
		// The per-neighbour limits must only bite attackers.
		t.Errorf("%d frames of an honest mesh were rate-limited", limited)
	}
	t.Logf("%d nodes, %d edges: converged after %v of virtual time, %v wall, heap %d MiB, %d events; one join %d link-state frames, one leave %d",
		size, edges/2, virtual.Round(time.Millisecond), wall.Round(time.Millisecond), ms.HeapAlloc>>20, s.Steps(), f1-f0, f2-f1)
}

// TestSimScale builds meshes of 100 and 1,000 nodes (the latter only
// without the race detector: about three minutes on one core).
func TestSimScale(t *testing.T) {
	for _, size := range []int{100, 1000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			if size > 100 && raceEnabled {
				t.Skip("1,000 nodes run without -race: make test runs TestSimScale again without it")
			}
			scaleRun(t, size)
		})
	}
}
