package quic_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/quic"
)

// The node's own mesh scenarios, over QUIC on the IPv4 loopback.

// mesh is a set of nodes, each on its own QUIC transport on 127.0.0.1.
type mesh struct {
	*meshtest.Mesh
	trs []*quic.Transport // node i's, to close or crash under it
}

func newMesh(t testing.TB, size int, seed uint64, opts ...node.Option) *mesh {
	t.Helper()
	m := &mesh{}
	m.Mesh = meshtest.New(t, seed, func(t testing.TB, i int) (transport.Transport, string) {
		tr, err := quic.Listen("127.0.0.1:0", quic.Config{})
		if err != nil {
			t.Fatal(err)
		}
		m.trs = append(m.trs, tr)
		return tr, tr.Addrs()[0]
	})
	for range size {
		m.Add(opts...)
	}
	return m
}

func TestMeshLine(t *testing.T) {
	const size, count = 5, 2000
	m := newMesh(t, size, meshtest.Seed(t), meshtest.Fast()...)
	for i := range size - 1 {
		m.Link(i, i+1)
	}
	m.WaitConverged(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := m.Collect(ctx, size-1)
	start := time.Now()
	if err := m.SendAll(ctx, 0, m.Node(size-1).ID(), count, 64); err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, 30*time.Second, "all messages", func() bool { return len(c.Got(0, false)) >= count })
	meshtest.CheckStream(t, "line", c.Got(0, false), nil, count)
	if n := m.FailureCount(); n != 0 {
		t.Fatalf("%d delivery failures on a lossless line", n)
	}
	t.Logf("%d messages over 4 hops in %v; middle node forwarded %d frames; sender retransmitted %d",
		count, time.Since(start).Round(time.Millisecond), m.Node(2).Stats().Forwarded, m.Node(0).Stats().Retransmits)
}

// TestMeshRingKillForwarder streams from node 0 to node 3 of a ring of six
// and takes the forwarding node 1 down halfway: the stream reroutes the long
// way round and arrives whole, in order, exactly once.
func TestMeshRingKillForwarder(t *testing.T) {
	kills := []struct {
		name string
		kill func(m *mesh, i int)
	}{
		// The node leaves: it says goodbye and closes its edges.
		{"NodeClose", func(m *mesh, i int) { m.Close(i) }},
		// The transport closes under a running node: the edges close
		// (the peers read the end of their streams) without a goodbye.
		{"TransportClose", func(m *mesh, i int) {
			m.MarkDown(i)
			_ = m.trs[i].Close()
		}},
		// The transport falls silent as if the machine crashed: no close
		// reaches the peers; their keepalives notice.
		{"Crash", func(m *mesh, i int) {
			m.MarkDown(i)
			m.trs[i].Crash()
		}},
	}
	for _, k := range kills {
		t.Run(k.name, func(t *testing.T) {
			const size, count = 6, 2000
			m := newMesh(t, size, meshtest.Seed(t), meshtest.Fast()...)
			for i := range size {
				m.Link(i, (i+1)%size)
			}
			m.WaitConverged(10 * time.Second)
			src, dst := 0, 3
			victim := m.NextHop(src, dst)
			if victim != 1 && victim != 5 {
				t.Fatalf("next hop from 0 to 3 is node %d, want 1 or 5", victim)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c := m.Collect(ctx, dst)
			sent := make(chan error, 1)
			go func() { sent <- m.SendAll(ctx, src, m.Node(dst).ID(), count, 256) }()
			meshtest.WaitFor(t, 30*time.Second, "half the stream", func() bool { return len(c.Got(src, false)) >= count/2 })
			k.kill(m, victim)
			if err := <-sent; err != nil {
				t.Fatal(err)
			}
			meshtest.WaitFor(t, 30*time.Second, "the whole stream", func() bool { return len(c.Got(src, false)) >= count })
			meshtest.CheckStream(t, "rerouted", c.Got(src, false), nil, count)
			if n := m.FailureCount(); n != 0 {
				t.Fatalf("%d delivery failures; the ring had another way round", n)
			}
			if d := m.Distance(src, dst); d != 3 {
				t.Fatalf("after the kill node 3 is %d hops from node 0, want 3", d)
			}
			t.Logf("sender retransmitted %d", m.Node(src).Stats().Retransmits)
		})
	}
}

// TestMeshBroadcast floods broadcasts from three origins through a random
// connected mesh of eight: every other node delivers each exactly once.
func TestMeshBroadcast(t *testing.T) {
	const size, count = 8, 200
	seed := meshtest.Seed(t)
	m := newMesh(t, size, seed, meshtest.Fast()...)
	m.LinkRandom(size / 2)
	m.WaitConverged(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cols := m.CollectAll(ctx)
	origins := []int{0, 3, 7}
	if err := m.SendFrom(ctx, origins, uuid.Nil, count, 100); err != nil {
		t.Fatal(err)
	}
	m.CheckBroadcasts(cols, origins, count, 30*time.Second)
}
