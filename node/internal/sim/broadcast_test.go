package sim_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/distrirender/distrirender/node/internal/core"
	"github.com/distrirender/distrirender/node/internal/sim"
)

// The broadcast guarantee (README, "What you can rely on"): a broadcast
// reaches every node its origin knows when it sends it, exactly once and in
// order, or the origin is told which node missed it. A node unreachable when
// the broadcast leaves the origin's window is reported (ErrUnreached); one
// that becomes reachable while the broadcast is in flight gets it; one that
// left the mesh (said goodbye) is neither a target nor reported.

// unreachable runs until a no longer routes to b.
func unreachable(t *testing.T, s *sim.Sim, a, b *sim.Node) {
	t.Helper()
	if !s.RunUntil(time.Minute, func() bool { return !slices.Contains(a.Core().Routes().Reachable(), b.ID) }) {
		t.Fatalf("n%d still routes to n%d", a.Index(), b.Index())
	}
}

// failuresAt collects the DeliveryFailed events of n.
func failuresAt(n *sim.Node) *[]core.Event {
	var out []core.Event
	n.OnEvent = func(e core.Event) {
		if e.Kind == core.DeliveryFailed {
			out = append(out, e)
		}
	}
	return &out
}

// failedFor counts the events for peer, and how many of them have cause
// want.
func failedFor(events *[]core.Event, peer *sim.Node, want error) (all, cause int) {
	for _, e := range *events {
		if e.Peer == peer.ID {
			all++
			if errors.Is(e.Err, want) {
				cause++
			}
		}
	}
	return all, cause
}

// Failure 2 of the protocol-correctness issue: a node unreachable when the
// broadcast entered the window, and back while it is still in flight (a
// slow receiver holds it there), gets it.
func TestSimBroadcastReachesNodeBackInFlight(t *testing.T) {
	s, rec, ns := fastRing(t, 5)
	s.Partition([]int{3}, []int{0, 1, 2, 4})
	unreachable(t, s, ns[0], ns[3])
	// n2 is reached over n1 only, one second each way: n0's broadcast stays
	// in flight for two seconds at least.
	s.SetProfile(1, 2, sim.Profile{Latency: time.Second})
	ns[0].Broadcast(3, 64)
	s.Run(200 * time.Millisecond)
	s.HealAll()
	link(t, ns[3], ns[4])
	settle(t, s, rec, 5*time.Minute)
	if got := rec.Delivered(0, 3); got != 3 {
		t.Fatalf("n3 got %d of the 3 broadcasts sent while it was away (%s)", got, rec.Summary())
	}
	if k := failures(s); k != 0 {
		t.Fatalf("%d failures reported", k)
	}
}

// Failure 7: a node the origin knows but cannot reach for the whole time the
// broadcast is in flight is reported to the origin; once back it gets the
// next ones. A node that left is not reported.
func TestSimBroadcastReportsNodesItCannotReach(t *testing.T) {
	s, rec, ns := fastRing(t, 6)
	ns[5].Leave()
	s.Partition([]int{3}, []int{0, 1, 2, 4})
	unreachable(t, s, ns[0], ns[3])
	unreachable(t, s, ns[0], ns[5])
	failed := failuresAt(ns[0])
	ns[0].Broadcast(5, 64)
	if !s.RunUntil(time.Minute, func() bool { return rec.Reported(0, 3) == 5 }) {
		t.Fatalf("n0 reported %d of the 5 broadcasts n3 missed (%s)", rec.Reported(0, 3), rec.Summary())
	}
	if all, cause := failedFor(failed, ns[3], core.ErrUnreached); all != 5 || cause != 5 {
		t.Fatalf("n0 reported %d failures for n3, %d of them ErrUnreached; want 5 and 5", all, cause)
	}
	if all, _ := failedFor(failed, ns[5], nil); all != 0 {
		t.Fatalf("n0 reported %d failures for n5, which left", all)
	}
	s.HealAll()
	link(t, ns[3], ns[4])
	converge(t, s, time.Minute)
	ns[0].Broadcast(5, 64)
	settle(t, s, rec, 5*time.Minute)
	if got := rec.Delivered(0, 3); got != 5 {
		t.Fatalf("n3 got %d of the 5 broadcasts sent after it came back", got)
	}
	if all, _ := failedFor(failed, ns[3], nil); all != 5 {
		t.Fatalf("%d failures for n3, want the first 5 only", all)
	}
}
