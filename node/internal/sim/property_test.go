package sim_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/distrirender/distrirender/internal/testutil"
	"github.com/distrirender/distrirender/node/internal/core"
	"github.com/distrirender/distrirender/node/internal/sim"
	"github.com/distrirender/distrirender/reliability"
)

// envInt reads a positive integer from the environment, or returns def.
func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}

// TestSimProperty drives random meshes through random events and checks,
// after every step, that nothing was delivered twice or out of order, and
// at the end, once the network is quiet and healed, that every accepted
// message was delivered or reported failed.
//
// The envelope: one-way latencies up to 5 ms with jitter (one run in five:
// 10 to 500 ms, round trips up to a second a hop), loss up to 10 %,
// duplication and reordering up to 5 %, cuts, splits longer than the record
// MaxAge, crashes, graceful leaves and restarts with a new epoch, joins over
// lossy links. Broadcasts are held to the full promise
// only in runs without crashes, leaves and cuts: today a node that is cut
// off when a broadcast enters the window is skipped silently, and one that
// becomes reachable again is not added back (failures 2 and 7 of the
// "protocol correctness" issue, which also widens the envelope to long
// partitions, RTTs up to a second and crash-restarts).
//
// SIM_SEEDS sets how many runs (default 20; `make soak` runs thousands),
// SIM_BUDGET bounds the wall time in seconds (default 60). Each run is a
// subtest named by its seed; a failing one prints the command that replays
// it alone (MESH_SEED=<seed> SIM_SEEDS=1).
func TestSimProperty(t *testing.T) {
	seeds(t, 20, func(t *testing.T, seed uint64) { propertyRun(t, seed, nil) })
}

// seeds runs run on SIM_SEEDS consecutive seeds (default runs) from the
// test's seed, each as a subtest named by its seed, within SIM_BUDGET
// seconds of wall time (default 60).
func seeds(t *testing.T, runs int, run func(t *testing.T, seed uint64)) {
	base := testutil.Seed(t)
	runs = envInt(t, "SIM_SEEDS", runs)
	budget := time.Duration(envInt(t, "SIM_BUDGET", 60)) * time.Second
	start := time.Now()
	for i := range runs {
		if time.Since(start) > budget {
			t.Logf("stopped after %d runs: SIM_BUDGET of %v spent", i, budget)
			break
		}
		seed := base + uint64(i)
		t.Run(fmt.Sprint(seed), func(t *testing.T) { run(t, seed) })
	}
}

// TestSimPropertySecure is TestSimProperty in a closed cluster: signed link
// state and sealed data must keep the promise through the same faults,
// restarts included, and no member takes another's frames for forgeries. SIM_SEEDS and
// SIM_BUDGET as there (default 5 runs).
func TestSimPropertySecure(t *testing.T) {
	secret := []byte("a cluster secret for the sim....")
	seeds(t, 5, func(t *testing.T, seed uint64) { propertyRun(t, seed, secret) })
}

func propertyRun(t *testing.T, seed uint64, secret []byte) {
	s := sim.New(seed)
	s.Secret = secret
	var trace []string
	s.Trace = func(line string) {
		if len(trace) >= 300 {
			trace = trace[1:]
		}
		trace = append(trace, line)
	}
	defer func() {
		if t.Failed() {
			t.Logf("replay: MESH_SEED=%d SIM_SEEDS=1 go test -run '^%s$' ./node/internal/sim/\nlast trace lines:\n%s",
				seed, strings.Split(t.Name(), "/")[0], strings.Join(trace, "\n"))
		}
	}()
	r := s.Rand()
	// One run in five is on slow links: one-way latencies of 10 to 500 ms
	// (round trips up to a second over a hop, more over several), with the
	// default keepalives and retransmission timers.
	slow := r.IntN(5) == 0
	profile := func() sim.Profile {
		latency := time.Duration(100+r.IntN(4900)) * time.Microsecond
		if slow {
			latency = time.Duration(10+r.IntN(490)) * time.Millisecond
		}
		return sim.Profile{
			Latency: latency,
			Jitter:  time.Duration(r.IntN(2000)) * time.Microsecond,
			Loss:    r.Float64() * 0.1,
			Dup:     r.Float64() * 0.05,
			Reorder: r.Float64() * 0.05,
		}
	}
	s.Default = sim.Profile{Latency: time.Millisecond}
	s.Configure = func(i int, c *core.Config) {
		members(2, 5)(i, c)
		if slow {
			c.Keepalive, c.DeadAfter = time.Second, 3
			c.Rel = reliability.Config{}.WithDefaults()
		}
	}
	rec := s.Record()
	size := 5 + r.IntN(6)
	ns := addNodes(s, size)
	for i := 1; i < size; i++ {
		link(t, ns[i], ns[r.IntN(i)])
	}
	converge(t, s, time.Minute)
	s.Default = profile()
	var steps []string
	for step := range 40 {
		live := s.Live()
		pick := func() *sim.Node { return live[r.IntN(len(live))] }
		var what string
		switch k := r.IntN(100); {
		case k < 40 && len(live) > 1:
			a, b := pick(), pick()
			if a != b {
				a.Send(b.ID, 1+r.IntN(50), 16+r.IntN(500))
				what = fmt.Sprintf("n%d sends to n%d", a.Index(), b.Index())
			}
		case k < 50:
			a := pick()
			a.Broadcast(1+r.IntN(10), 16+r.IntN(200))
			what = fmt.Sprintf("n%d broadcasts", a.Index())
		case k < 58 && len(live) > 3:
			a := pick()
			a.Crash()
			what = fmt.Sprintf("n%d crashes", a.Index())
		case k < 64 && len(live) > 3:
			a := pick()
			a.Leave()
			what = fmt.Sprintf("n%d leaves", a.Index())
		case k < 68:
			// A crashed (or left) node comes back: same UUID, new epoch.
			var down []*sim.Node
			for _, n := range s.Nodes() {
				if !n.Alive() {
					down = append(down, n)
				}
			}
			if len(down) > 0 {
				n := down[r.IntN(len(down))]
				n.Restart()
				n.Connect(pick().Addr, nil)
				what = fmt.Sprintf("n%d restarts", n.Index())
			}
		case k < 74:
			// Over a lossy link like the others (failure 6 of the
			// protocol-correctness issue is fixed).
			n := s.AddNode()
			n.Connect(pick().Addr, nil)
			what = fmt.Sprintf("n%d joins", n.Index())
		case k < 82 && len(live) > 2:
			a, b := pick(), pick()
			if a != b {
				s.Cut(a.Index(), b.Index())
				what = fmt.Sprintf("n%d and n%d cut", a.Index(), b.Index())
			}
		case k < 84:
			s.HealAll()
			what = "heal"
		case k < 88 && len(live) > 3:
			// A split longer than the record MaxAge (90 s): each side
			// forgets the other. Then the halves find each other again by
			// themselves (balancing remembers forgotten nodes), or, one
			// time in two, are joined by hand as an application would.
			r.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
			half := len(live) / 2
			var a, b []int
			for i, n := range live {
				if i < half {
					a = append(a, n.Index())
				} else {
					b = append(b, n.Index())
				}
			}
			s.Partition(a, b)
			s.Run(time.Duration(91+r.IntN(40)) * time.Second)
			s.HealAll()
			if r.IntN(2) == 0 {
				live[0].Connect(live[half].Addr, nil)
			}
			what = fmt.Sprintf("split %v | %v past MaxAge", a, b)
		case k < 94 && len(live) > 1:
			a, b := pick(), pick()
			s.SetProfile(a.Index(), b.Index(), profile())
			what = fmt.Sprintf("n%d-n%d profile changes", a.Index(), b.Index())
		}
		if what != "" {
			steps = append(steps, what)
			s.Trace(fmt.Sprintf("step %d: %s", step, what))
		}
		s.Run(time.Duration(r.IntN(2000)) * time.Millisecond)
		if u := rec.Unsafe(); u != nil {
			t.Fatalf("after steps %v:\n%s", steps, strings.Join(u, "\n"))
		}
	}
	s.HealAll()
	settle(t, s, rec, 30*time.Minute)
	if secret != nil {
		forged := uint64(0)
		for _, n := range s.Nodes() {
			forged += n.Core().Stats().Forged
		}
		if forged != 0 {
			t.Errorf("members took %d of each other's frames for forgeries", forged)
		}
	}
}
