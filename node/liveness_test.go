package node_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/distrirender/distrirender/internal/meshtest"
)

// TestSilentNeighbourThatReturnsGetsMorePatience: a neighbour declared
// silent that comes back with the same epoch was alive all along, so its
// silence limit doubles. The link is cut for a while, as a node starved of
// CPU or a stalled path would be; virtual time (synctest) makes the
// durations exact. Keepalives every 50 ms, 4 missed: a limit of 200 ms.
func TestSilentNeighbourThatReturnsGetsMorePatience(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMesh(t, 2, meshtest.Seed(t), meshtest.Fast()...)
		m.Link(0, 1)
		a, b := m.Node(0), m.Node(1)
		downs := func() uint64 { return a.Stats().NeighborsDown + b.Stats().NeighborsDown }
		linked := func() bool { return len(a.Neighbors()) == 1 && len(b.Neighbors()) == 1 }
		stall := func(d time.Duration) {
			m.net.Cut(m.Addr(0), m.Addr(1))
			time.Sleep(d)
			m.net.Heal()
		}
		steps := []struct {
			stall time.Duration
			downs uint64 // NeighborsDown on both sides together, after the stall
		}{
			{300 * time.Millisecond, 2}, // past 200 ms: both give up; node 0 redials; limit now 400 ms
			{300 * time.Millisecond, 2}, // within 400 ms: nobody gives up
			{600 * time.Millisecond, 4}, // past 400 ms: given up again; limit now 800 ms
			{600 * time.Millisecond, 4}, // within 800 ms
			{time.Second, 6},            // limit now 1.6 s (the cap is 8 times: 1.6 s)
			{3 * time.Second, 8},        // past the cap: a dead path is still noticed
			{time.Second, 8},            // within the capped 1.6 s
		}
		for i, s := range steps {
			stall(s.stall)
			meshtest.WaitFor(t, 10*time.Second, "the edge to be up again", linked)
			time.Sleep(2 * time.Second) // virtual: let any late verdict happen
			if got := downs(); got != s.downs || !linked() {
				t.Fatalf("step %d (a %v stall): %d neighbour losses, linked %v; want %d, linked; causes %v", i, s.stall, got, linked(), s.downs, m.DownCauses())
			}
		}
	})
}
