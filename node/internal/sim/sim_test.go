package sim_test

import (
	"strings"
	"testing"
	"time"

	"github.com/distrirender/distrirender/internal/testutil"
	"github.com/distrirender/distrirender/node/internal/sim"
)

// newSim makes a simulation seeded as testutil says (MESH_SEED replays a
// seed) whose trace the test prints, last lines first, if it fails.
func newSim(t *testing.T) *sim.Sim {
	t.Helper()
	seed := testutil.Seed(t)
	s := sim.New(seed)
	var trace []string
	s.Trace = func(line string) {
		if len(trace) >= 2000 {
			trace = trace[1:]
		}
		trace = append(trace, line)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d; last trace lines:\n%s", seed, strings.Join(trace, "\n"))
		}
	})
	return s
}

func TestLine(t *testing.T) {
	s := newSim(t)
	s.Default = sim.Profile{Latency: time.Millisecond}
	rec := s.Record()
	var ns []*sim.Node
	for range 5 {
		ns = append(ns, s.AddNode())
	}
	for i := range 4 {
		ns[i].Link(ns[i+1])
	}
	if !s.RunUntil(time.Minute, func() bool { return sim.Converged(s) }) {
		t.Fatal("line did not converge")
	}
	ns[0].Send(ns[4].ID, 1000, 64)
	if !s.RunUntil(10*time.Minute, rec.Settled) {
		t.Fatalf("not settled: %s", rec)
	}
	if p := rec.Check(); p != nil {
		t.Fatal(strings.Join(p, "\n"))
	}
	t.Logf("%s in %v of virtual time, %d events", rec.Summary(), s.Elapsed(), s.Steps())
}
