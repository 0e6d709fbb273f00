package node_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/node"
)

// BenchmarkMembership measures what one join and one leave cost in a
// balanced mesh of the given size: link-state frames sent by all nodes
// together, and the time until every node's routes agree. Each iteration
// adds a node through a random member, waits until everyone reaches it, then
// closes it and waits until nobody does.
//
//	go test -run '^$' -bench Membership -benchtime 5x ./node/
func BenchmarkMembership(b *testing.B) {
	for _, size := range []int{50, 500} {
		b.Run(fmt.Sprintf("nodes=%d", size), func(b *testing.B) {
			m := newMesh(b, size, 1, benchMembers()...)
			for i := 1; i < size; i++ {
				m.join(b, i)
			}
			meshtest.WaitFor(b, 5*time.Minute, "the mesh to balance", func() bool { return m.degreesWithin(5, 10) && m.Converged() })
			b.ReportMetric(float64(m.Node(0).Topology().Diameter()), "diameter")
			var joinFrames, leaveFrames uint64
			var joinTime, leaveTime time.Duration
			b.ResetTimer()
			for range b.N {
				f0, t0 := m.topologyFrames(), time.Now()
				i := m.Add(benchMembers()...)
				m.join(b, i)
				id := m.Node(i).ID()
				meshtest.WaitFor(b, time.Minute, "the join to converge", func() bool {
					return m.degreesWithin(5, 10) && m.everyoneReaches(id, true)
				})
				joinTime += time.Since(t0)
				f1 := m.topologyFrames()
				joinFrames += f1 - f0
				t1 := time.Now()
				m.Close(i)
				meshtest.WaitFor(b, time.Minute, "the leave to converge", func() bool { return m.everyoneReaches(id, false) })
				leaveTime += time.Since(t1)
				leaveFrames += m.topologyFrames() - f1
			}
			n := float64(b.N)
			b.ReportMetric(float64(joinFrames)/n, "frames/join")
			b.ReportMetric(float64(leaveFrames)/n, "frames/leave")
			b.ReportMetric(float64(joinTime.Milliseconds())/n, "ms/join")
			b.ReportMetric(float64(leaveTime.Milliseconds())/n, "ms/leave")
		})
	}
}

// everyoneReaches reports whether every live node has (or, with want false,
// has no) route to id.
func (m *mesh) everyoneReaches(id [16]byte, want bool) bool {
	for i, nd := range m.Nodes() {
		if !m.Alive(i) || nd.ID() == id {
			continue
		}
		ni, ok := nd.Topology().Node(id)
		if (ok && ni.Distance >= 0) != want {
			return false
		}
	}
	return true
}

// benchMembers are the default membership settings (link-state refresh every
// 30 s), with failure detection fast enough to measure leaves.
func benchMembers() []node.Option {
	return []node.Option{node.WithKeepalive(50*time.Millisecond, 4)}
}

// join connects node i through a random earlier node, trying others when a
// handshake times out on a busy machine, as a real joiner would.
func (m *mesh) join(t testing.TB, i int) {
	t.Helper()
	var err error
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = m.Node(i).Connect(ctx, m.Addr(m.Rand().IntN(i)))
		cancel()
		if err == nil || errors.Is(err, node.ErrDuplicateEdge) {
			return
		}
	}
	t.Fatalf("node %d could not join: %v", i, err)
}
