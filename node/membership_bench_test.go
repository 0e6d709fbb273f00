package node_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/routing"
)

// Membership settings of the benchmark: the default balancing (5 to 10
// neighbours, a round every 0.5 to 1.5 s).
const benchMinConns, benchMaxConns = 5, 10

// BenchmarkMembership measures what one join and one leave cost in a
// balanced mesh of the given size: link-state frames sent by all nodes
// together, and the time until the mesh has settled. Each iteration adds a
// node through a random member and waits until it has its neighbours and
// everyone reaches it, then closes it and waits until nobody does, then
// waits until the neighbours it left short of connections have replaced
// them. A phase ends when its condition holds and no link-state frame has
// been sent for a while (benchQuiet, or benchPause after a leave, whose
// flood is one burst); its time runs to the last link-state frame sent
// before that pause. The frame counters are sampled every millisecond from
// Stats, and the costly route checks run only while no frames flow, so
// they do not slow the convergence they measure.
//
// Metrics: frames/join (all link-state frames of the join, its balancing
// dials included), frames/leave (the leave's flood, until no node has a
// route to the node that left), frames/repair (the balancing dials of
// neighbours it left with fewer than the minimum of edges, often none; a
// dial that starts before the leave's flood has paused counts in
// frames/leave), ms/join and ms/leave (to the last link-state frame of the
// phase), diameter and edges of the balanced mesh, and extra-downs/op:
// edges lost per iteration besides the leaving node's (0 in a clean run;
// the log says how many of all were keepalive verdicts, "silent").
//
//	go test -run '^$' -bench Membership -benchtime 10x ./node/
//
// runs both sizes in about three minutes on two cores (building the
// 500-node mesh takes about 1.5 of them); 'Membership/nodes=50$' runs one.
// MEMBERSHIP_PROGRESS=1 prints what it waits for, MEMBERSHIP_PROFILE=file
// writes the CPU profile of building the mesh to file.
func BenchmarkMembership(b *testing.B) {
	for _, size := range []int{50, 500} {
		b.Run(fmt.Sprintf("nodes=%d", size), func(b *testing.B) {
			start := time.Now()
			m := newMesh(b, size, 1, benchMembers()...)
			b.Cleanup(m.closeAll)
			w := &frameWatch{m: m}
			m.build(b, w, 10)
			tp := m.Node(0).Topology()
			b.Logf("%d nodes joined, balanced and converged in %v: %d link-state frames, %d edges lost (%d silent, %d goodbyes)",
				size, time.Since(start).Round(time.Millisecond), w.now(), m.Downs(nil), m.Downs(node.ErrPeerSilent), m.Downs(node.ErrPeerLeft))

			var joinFrames, leaveFrames, repairFrames uint64
			var joinTime, leaveTime time.Duration
			downs0, silent0 := m.Downs(nil), m.Downs(node.ErrPeerSilent)
			expected, iters := 0, 0
			for b.Loop() {
				iters++
				f0, t0 := w.now(), time.Now()
				i := m.Add(benchMembers()...)
				if err := m.joinVia(i, m.candidates(i)); err != nil {
					b.Fatal(err)
				}
				nd := m.Node(i)
				id := nd.ID()
				reach := m.reachCheck(id, true)
				last := w.settle(b, time.Minute, benchQuiet, "the join to converge", func() bool {
					return len(nd.Neighbors()) >= benchMinConns && reach() && m.degreesWithin(benchMinConns, benchMaxConns)
				})
				joinTime += last.Sub(t0)
				f1 := w.now()
				joinFrames += f1 - f0

				expected += len(nd.Neighbors())
				t1 := time.Now()
				m.Close(i)
				last = w.settle(b, time.Minute, benchPause, "the leave to converge", m.reachCheck(id, false))
				leaveTime += last.Sub(t1)
				f2 := w.now()
				leaveFrames += f2 - f1

				w.settle(b, time.Minute, benchQuiet, "the neighbours to replace the edges they lost", func() bool {
					return m.degreesWithin(benchMinConns, benchMaxConns)
				})
				repairFrames += w.now() - f2
			}
			n := float64(iters)
			b.ReportMetric(float64(tp.Diameter()), "diameter") // after b.Loop, which drops metrics reported before
			b.ReportMetric(float64(edges(tp)), "edges")
			b.ReportMetric(float64(joinFrames)/n, "frames/join")
			b.ReportMetric(float64(leaveFrames)/n, "frames/leave")
			b.ReportMetric(float64(repairFrames)/n, "frames/repair")
			b.ReportMetric(float64(joinTime.Microseconds())/1e3/n, "ms/join")
			b.ReportMetric(float64(leaveTime.Microseconds())/1e3/n, "ms/leave")
			b.ReportMetric(float64(m.Downs(nil)-downs0-expected)/n, "extra-downs/op")
			b.Logf("%d nodes: %d iterations, %d edges lost besides the leaving nodes' (%d silent); total wall time %v",
				size, iters, m.Downs(nil)-downs0-expected, m.Downs(node.ErrPeerSilent)-silent0, time.Since(start).Round(time.Millisecond))
		})
	}
}

// benchMembers are the default membership settings (5 to 10 neighbours,
// keepalives every second, three missed) with link-state refresh turned
// practically off (every hour; records live three hours), so that no
// periodic refresh flood (with the default 30 s, at 500 nodes some 17
// floods of about 3,000 frames each per second) counts as the cost of a
// join or leave. A leave is announced by a goodbye, so its time does not
// depend on the keepalives.
func benchMembers() []node.Option {
	return []node.Option{
		node.WithMinConnections(benchMinConns),
		node.WithMaxConnections(benchMaxConns),
		node.WithRouting(routing.Config{RefreshInterval: time.Hour, MaxAge: 3 * time.Hour}),
	}
}

// Settling: cond is checked once link-state frames have paused for
// benchPause (at most every benchRecheck, or twice as long as it took),
// and a phase ends when cond holds and none has been sent for benchQuiet.
const (
	benchPause   = 20 * time.Millisecond
	benchRecheck = 50 * time.Millisecond
	benchQuiet   = 300 * time.Millisecond
)

// frameWatch follows the link-state frames sent by all nodes together.
type frameWatch struct {
	m       *mesh
	total   uint64
	changed time.Time // when total last grew
}

// now samples the total and returns it.
func (w *frameWatch) now() uint64 {
	if t := w.m.topologyFrames(); t != w.total || w.changed.IsZero() {
		w.total, w.changed = t, time.Now()
	}
	return w.total
}

// settle waits until cond holds, checked after the last link-state frame,
// and no frame has been sent for quiet, and returns when the last frame was
// sent. It fails b after timeout.
func (w *frameWatch) settle(b testing.TB, timeout, quiet time.Duration, what string, cond func() bool) time.Time {
	b.Helper()
	deadline := time.Now().Add(timeout)
	var ok bool
	var checkedAt, nextCheck time.Time
	report, reported := time.Now(), w.total
	for {
		before := w.now()
		now := time.Now()
		if now.Sub(report) >= 5*time.Second {
			progress("%s: %d frames (%.0f/s), last %v ago, %d edges lost", what, w.total, float64(w.total-reported)/now.Sub(report).Seconds(), now.Sub(w.changed), w.m.Downs(nil))
			report, reported = now, w.total
		}
		if ok && checkedAt.Before(w.changed) {
			ok = false // frames since: check again
		}
		if !ok && now.Sub(w.changed) >= benchPause && !now.Before(nextCheck) {
			ok = cond()
			took := time.Since(now)
			progress("%s: %d frames, check %v took %v", what, w.total, ok, took)
			checkedAt, nextCheck = now, now.Add(max(benchRecheck, 2*took))
			if w.now() != before {
				ok = false // frames while cond ran: check again
			}
		}
		if ok && time.Since(w.changed) >= quiet {
			return w.changed
		}
		if now.After(deadline) {
			b.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// build joins every node but the first, batch at a time, each through a
// random node that joined before its batch. The joins of a batch run at
// once; the next batch starts when each has its minimum of neighbours and
// the link-state floods have paused, so that the floods never pile up
// faster than two cores handle them (which makes live neighbours miss
// keepalives, and the edges they drop and redial flood again). Then it
// waits until the mesh is balanced and converged.
func (m *mesh) build(b testing.TB, w *frameWatch, batch int) {
	b.Helper()
	if f := os.Getenv("MEMBERSHIP_PROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			b.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); _ = out.Close() }()
	}
	size := m.Len()
	for lo := 1; lo < size; lo += batch {
		hi := min(lo+batch, size)
		via := make([][]int, hi-lo)
		for k := range via {
			via[k] = m.candidates(lo)
		}
		errs := make([]error, hi-lo)
		var wg sync.WaitGroup
		for k := range via {
			wg.Go(func() { errs[k] = m.joinVia(lo+k, via[k]) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			b.Fatal(err)
		}
		w.settle(b, 5*time.Minute, benchPause, fmt.Sprintf("nodes %d to %d to find their neighbours", lo, hi-1), func() bool {
			for i := lo; i < hi; i++ {
				if len(m.Node(i).Neighbors()) < min(benchMinConns, hi-1) {
					return false
				}
			}
			return true
		})
		progress("joined %d nodes, %d link-state frames, %d edges lost", hi, w.now(), m.Downs(nil))
	}
	w.settle(b, 10*time.Minute, benchQuiet, "the mesh to balance and converge", func() bool {
		return m.degreesWithin(benchMinConns, benchMaxConns) && m.Converged()
	})
}

// closeAll closes every node at once. Closed one by one (as the mesh's own
// cleanup does), a large mesh would keep rebalancing and flooding link
// state around each node that leaves, for minutes at 500 nodes.
func (m *mesh) closeAll() {
	var wg sync.WaitGroup
	for _, nd := range m.Nodes() {
		wg.Go(func() { _ = nd.Close() })
	}
	wg.Wait()
}

// progress prints what the benchmark is doing, with MEMBERSHIP_PROGRESS
// set; with MEMBERSHIP_PROFILE=file, the CPU profile of building the mesh
// goes to file.
func progress(format string, args ...any) {
	if os.Getenv("MEMBERSHIP_PROGRESS") != "" {
		fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
	}
}

// candidates draws five random nodes among the first n, which a joiner
// tries in turn.
func (m *mesh) candidates(n int) []int {
	c := make([]int, 5)
	for k := range c {
		c[k] = m.Rand().IntN(n)
	}
	return c
}

// joinVia connects node i through the first of the nodes via that accepts
// it, trying the next when a handshake times out on a busy machine, as a
// real joiner would.
func (m *mesh) joinVia(i int, via []int) error {
	var err error
	for _, j := range via {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = m.Node(i).Connect(ctx, m.Addr(j))
		cancel()
		if err == nil || errors.Is(err, node.ErrDuplicateEdge) {
			return nil
		}
	}
	return fmt.Errorf("node %d could not join: %w", i, err)
}

// reachCheck returns a check of whether every live node has (or, with want
// false, has no) route to id. Each call stops at the first node that fails
// and the next call starts there, so that a check that fails costs one
// Topology copy or a few, and one that passes has asked every node once.
func (m *mesh) reachCheck(id [16]byte, want bool) func() bool {
	next := 0
	return func() bool {
		nodes := m.Nodes()
		for k := range nodes {
			i := (next + k) % len(nodes)
			if !m.Alive(i) || nodes[i].ID() == id {
				continue
			}
			ni, ok := nodes[i].Topology().Node(id)
			if (ok && ni.Distance >= 0) != want {
				next = i
				return false
			}
		}
		return true
	}
}

// edges counts the confirmed edges among the nodes tp reaches.
func edges(tp routing.Topology) int {
	n := 0
	for _, ni := range tp.Nodes {
		if ni.Distance >= 0 {
			n += len(ni.Neighbors)
		}
	}
	return n / 2
}
