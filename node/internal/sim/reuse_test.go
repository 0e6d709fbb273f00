package sim_test

import (
	"testing"
	"time"

	"github.com/distrirender/distrirender/node/internal/core"
	"github.com/distrirender/distrirender/node/internal/sim"
)

// A frame the core hands back for reuse (Ready.Free) is one nothing refers
// to any more: the simulator poisons each (sim.Node.flush), so a frame
// handed back while it still waited in a queue would reach the next hop
// garbled. Here the first hop is slow and its queue long when the path
// beyond it breaks: the retransmissions take another way and are
// acknowledged while the first transmissions still wait in the slow queue.
func TestSimReusedFramesAreFree(t *testing.T) {
	s := newSim(t)
	s.Default = sim.Profile{Latency: time.Millisecond, Bandwidth: 100e6}
	s.Configure = func(_ int, cfg *core.Config) { cfg.MinConns = 0 }
	rec := s.Record()
	ns := addNodes(s, 4)
	for _, e := range [][2]int{{0, 1}, {1, 3}, {2, 3}} {
		link(t, ns[e[0]], ns[e[1]])
	}
	converge(t, s, time.Minute)
	s.SetProfile(0, 1, sim.Profile{Latency: time.Millisecond, Bandwidth: 200e3})
	const count, size = 300, 16 << 10
	ns[0].Send(ns[3].ID, count, size)
	s.Run(2 * time.Second)
	link(t, ns[0], ns[2])
	s.Cut(1, 3)
	settle(t, s, rec, 10*time.Minute)
	st := ns[0].Core().Stats()
	t.Logf("%d retransmissions, %d failed; %s", st.Retransmits, failures(s), rec.Summary())
	if st.Retransmits == 0 {
		t.Fatal("no retransmission: the scenario did not happen")
	}
}
