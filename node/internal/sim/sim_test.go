package sim_test

import (
	"strings"
	"testing"

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
