package sim_test

import (
	"testing"
	"time"

	"github.com/distrirender/distrirender/node/internal/core"
	"github.com/distrirender/distrirender/node/internal/sim"
)

// Item 3 of the fast-path issue: a Send right after Connect goes out at once
// and is delivered within a round trip, although neither side holds the
// other's link-state record yet; and a destination not routed yet is held
// until its route appears, not dropped and retransmitted. With the default
// initial RTO (200 ms) a drop shows as a stall of about 200 ms and a
// retransmission.
func TestSimNoWaitOnARouteAlreadyThere(t *testing.T) {
	const count = 10
	cases := []struct {
		name string
		hops int
	}{
		{"neighbour right after Connect", 1},
		{"two hops before routes converge", 2},
		{"three hops before routes converge", 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSim(t)
			s.Default = sim.Profile{Latency: time.Millisecond}
			s.Configure = func(_ int, cfg *core.Config) { cfg.MinConns = 0 }
			rec := s.Record()
			ns := addNodes(s, c.hops+1)
			// The far links first, so that the sender's own Connect is the
			// last thing before its Send.
			for i := c.hops - 1; i >= 1; i-- {
				link(t, ns[i], ns[i+1])
			}
			link(t, ns[0], ns[1])
			src, dst := ns[0], ns[c.hops]
			start := s.Elapsed()
			src.Send(dst.ID, count, 64)
			delivered := func() uint64 { return dst.Core().Stats().Delivered }
			if !s.RunUntil(10*time.Second, func() bool { return delivered() == count }) {
				t.Fatalf("%d of %d delivered after %v: %s", delivered(), count, s.Elapsed()-start, rec.Summary())
			}
			took := s.Elapsed() - start
			var noRoute uint64
			for _, n := range ns {
				noRoute += n.Core().Stats().DroppedNoRoute
			}
			re := src.Core().Stats().Retransmits
			t.Logf("%d messages over %d hops delivered in %v (virtual); %d retransmissions, %d dropped for no route", count, c.hops, took, re, noRoute)
			// 1 ms per link: the last message arrives within a few ms of
			// link state reaching the nodes, far below the initial RTO.
			if limit := 100 * time.Millisecond; took > limit {
				t.Errorf("delivery took %v, want under %v (no wait for the RTO)", took, limit)
			}
			if re != 0 || noRoute != 0 {
				t.Errorf("%d retransmissions and %d frames dropped for no route, want none", re, noRoute)
			}
			settle(t, s, rec, time.Minute)
		})
	}
}
