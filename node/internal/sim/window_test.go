package sim_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/distrirender/distrirender/node/internal/core"
	"github.com/distrirender/distrirender/node/internal/sim"
	"github.com/distrirender/distrirender/reliability"
)

// The window finds the path's capacity (fast-path issue, item 2): over links
// of limited bandwidth a stream with a large window cap fills the path
// without collapsing, whatever the message size. Before congestion control
// a window of 256 × 64 KiB overran the queues and the RTO: most messages
// were sent twice. Throughput here is in virtual time, so the bound is
// exact, not a timing threshold.
func TestSimWindowFindsPathCapacity(t *testing.T) {
	cases := []struct {
		size, hops int
		latency    time.Duration
		bandwidth  float64 // bytes/s
		narrow     float64 // when set, the bandwidth of the last link (a bottleneck past the first hop)
	}{
		{64, 1, 50 * time.Microsecond, 100e6, 0},
		{1024, 1, 50 * time.Microsecond, 100e6, 0},
		{64 << 10, 1, 50 * time.Microsecond, 100e6, 0},
		{64 << 10, 3, 50 * time.Microsecond, 100e6, 0},
		{1024, 1, 20 * time.Millisecond, 10e6, 0},
		{64 << 10, 2, 20 * time.Millisecond, 10e6, 0},
		{1024, 3, time.Millisecond, 100e6, 10e6},
		{64 << 10, 3, time.Millisecond, 100e6, 10e6},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%dB/%dhops/%v/%.0fMBps", c.size, c.hops, c.latency, c.bandwidth/1e6), func(t *testing.T) {
			s := newSim(t)
			s.Default = sim.Profile{Latency: c.latency, Bandwidth: c.bandwidth}
			s.Configure = func(_ int, cfg *core.Config) {
				cfg.MinConns = 0
				cfg.Rel = reliability.Config{Window: 256}.WithDefaults()
			}
			rec := s.Record()
			ns := addNodes(s, c.hops+1)
			for i := range c.hops {
				link(t, ns[i], ns[i+1])
			}
			if c.narrow > 0 {
				s.SetProfile(c.hops-1, c.hops, sim.Profile{Latency: c.latency, Bandwidth: c.narrow})
				c.bandwidth = c.narrow
			}
			converge(t, s, time.Minute)
			count := int(min(20_000, 60*c.bandwidth/float64(c.size+64)*(2*c.latency.Seconds()*float64(c.hops)+0.01)))
			start := s.Elapsed()
			ns[0].Send(ns[c.hops].ID, count, c.size)
			settle(t, s, rec, 10*time.Minute)
			took := (s.Elapsed() - start).Seconds()
			st := ns[0].Core().Stats()
			var fwd uint64
			for _, n := range ns {
				fwd += n.Core().Stats().DroppedForward
			}
			// The best a stream can do: the wire's rate (a frame is the body
			// and a header under 64 bytes), or the window cap per round trip.
			rate := float64(count) / took
			wire := c.bandwidth / float64(c.size+64)
			best := min(wire, 256/(2*c.latency.Seconds()*float64(c.hops)))
			t.Logf("%d messages in %.3f s: %.0f msgs/s, %.2f of the best %.0f; %d retransmissions, %d forward drops",
				count, took, rate, rate/best, best, st.Retransmits, fwd)
			if rate < 0.8*best {
				t.Errorf("%.0f msgs/s is under 0.8 of the best %.0f", rate, best)
			}
			if k := failures(s); k != 0 {
				t.Errorf("%d messages reported failed", k)
			}
			if float64(st.Retransmits) > 0.01*float64(count) {
				t.Errorf("%d retransmissions for %d messages on loss-free links (over 1 %%)", st.Retransmits, count)
			}
		})
	}
}

// A second stream joins a first through a narrow link past the first hop:
// the forwarder in front of it marks frames congested while its queue is
// crowded, the receivers echo the mark, and the senders shrink their
// windows before the queue drops. Without the mark the queue overflowed
// (29 drops and as many retransmissions for 1,200 messages of 64 KiB). In a
// closed cluster too: the mark is outside what sealing covers.
func TestSimCongestionMarkedBeforeDrops(t *testing.T) {
	for _, closed := range []bool{false, true} {
		t.Run(fmt.Sprintf("closed=%v", closed), func(t *testing.T) {
			s := newSim(t)
			if closed {
				s.Secret = []byte("the cluster's secret, 32 bytes..")
			}
			s.Default = sim.Profile{Latency: 200 * time.Microsecond, Bandwidth: 100e6}
			s.Configure = func(_ int, cfg *core.Config) { cfg.MinConns = 0 }
			rec := s.Record()
			ns := addNodes(s, 5)
			for _, e := range [][2]int{{0, 2}, {1, 2}, {2, 3}, {3, 4}} {
				link(t, ns[e[0]], ns[e[1]])
			}
			converge(t, s, time.Minute)
			const narrow, count, size = 20e6, 600, 64 << 10
			s.SetProfile(3, 4, sim.Profile{Latency: 200 * time.Microsecond, Bandwidth: narrow})
			start := s.Elapsed()
			ns[0].Send(ns[4].ID, count, size)
			s.Run(300 * time.Millisecond)
			ns[1].Send(ns[4].ID, count, size)
			settle(t, s, rec, 10*time.Minute)
			took := (s.Elapsed() - start).Seconds()
			var drops, retx, marks uint64
			for _, n := range ns {
				st := n.Core().Stats()
				drops += st.DroppedForward
				retx += st.Retransmits
				marks += st.CongestionMarks
			}
			rate := 2 * count / took
			best := narrow / (size + 64)
			t.Logf("%d messages in %.2f s (%.2f of the narrow link): %d marks, %d drops, %d retransmissions", 2*count, took, rate/best, marks, drops, retx)
			if drops != 0 || retx != 0 || failures(s) != 0 {
				t.Fatalf("%d forward drops, %d retransmissions, %d failures", drops, retx, failures(s))
			}
			if marks == 0 {
				t.Fatal("no congestion mark came back")
			}
			if rate < 0.9*best {
				t.Fatalf("%.0f msgs/s, under 0.9 of the narrow link's %.0f", rate, best)
			}
		})
	}
}
