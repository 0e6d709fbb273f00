package node_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/reliability"
	"github.com/distrirender/distrirender/transport/memory"
)

func ring(m *mesh) {
	for i := range m.Len() {
		m.Link(i, (i+1)%m.Len())
	}
}

func TestLineTenThousandInOrder(t *testing.T) {
	const size, count = 5, 10_000
	cases := []struct {
		name string
		rel  reliability.Config
	}{
		{"defaults", reliability.Config{}},
		// 10,000 messages cross the index wrap-around 156 times.
		{"modulo 64", reliability.Config{Window: 10, Modulo: 64}},
		{"window 256", reliability.Config{Window: 256, Modulo: 10_000}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newMesh(t, size, meshtest.Seed(t), meshtest.Fast(node.WithReliability(c.rel))...)
			for i := range size - 1 {
				m.Link(i, i+1)
			}
			m.WaitConverged(10 * time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			col := m.Collect(ctx, size-1)
			if err := m.SendAll(ctx, 0, m.Node(size-1).ID(), count, 64); err != nil {
				t.Fatal(err)
			}
			meshtest.WaitFor(t, time.Minute, "all messages", func() bool { return len(col.Got(0, false)) == count })
			meshtest.CheckStream(t, "line", col.Got(0, false), nil, count)
			if n := m.FailureCount(); n != 0 {
				t.Fatalf("%d delivery failures on a lossless line", n)
			}
			t.Logf("middle node forwarded %d frames; sender retransmitted %d",
				m.Node(2).Stats().Forwarded, m.Node(0).Stats().Retransmits)
		})
	}
}

func TestRingLossDuplicationReordering(t *testing.T) {
	const size, count = 8, 300
	seed := meshtest.Seed(t)
	m := newMesh(t, size, seed, meshtest.Lossy()...)
	ring(m)
	m.WaitConverged(10 * time.Second)
	bad := memory.Faults{Loss: 0.2, Duplicate: 0.1, Reorder: 0.1, Jitter: time.Millisecond}
	for i := range size {
		m.net.SetFaults(m.Addr(i), m.Addr((i+1)%size), bad)
	}
	flows := [][2]int{{0, 4}, {2, 5}, {7, 1}, {4, 0}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cols := map[int]*meshtest.Collector{}
	for _, f := range flows {
		if cols[f[1]] == nil {
			cols[f[1]] = m.Collect(ctx, f[1])
		}
	}
	errs := make(chan error, len(flows))
	for _, f := range flows {
		go func() { errs <- m.SendAll(ctx, f[0], m.Node(f[1]).ID(), count, 200) }()
	}
	for range flows {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var delivered, failed int
	for _, f := range flows {
		dst := m.Node(f[1]).ID()
		got := func() []uint64 { return cols[f[1]].Got(f[0], false) }
		fl := func() map[uint64]bool { return m.Failed(f[0], dst, false) }
		meshtest.Settled(t, 2*time.Minute, "flow", got, fl, count)
		d, fn := meshtest.CheckStream(t, "ring flow", got(), fl(), count)
		delivered += d
		failed += fn
	}
	t.Logf("delivered %d, reported failed %d of %d; network stats %+v", delivered, failed, len(flows)*count, m.net.Stats())
}

func TestKillForwarderMidStream(t *testing.T) {
	const size, count = 8, 5000
	m := newMesh(t, size, meshtest.Seed(t), meshtest.Fast()...)
	ring(m)
	m.WaitConverged(10 * time.Second)
	src, dst := 0, 3
	victim := m.NextHop(src, dst)
	if victim != 1 {
		t.Fatalf("next hop from 0 to 3 is node %d, want 1 on the short side of the ring", victim)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := m.Collect(ctx, dst)
	sent := make(chan error, 1)
	go func() { sent <- m.SendAll(ctx, src, m.Node(dst).ID(), count, 256) }()
	meshtest.WaitFor(t, time.Minute, "half the stream", func() bool { return len(c.Got(src, false)) >= count/2 })
	m.Kill(victim)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, time.Minute, "the whole stream", func() bool { return len(c.Got(src, false)) == count })
	meshtest.CheckStream(t, "rerouted", c.Got(src, false), nil, count)
	if n := m.FailureCount(); n != 0 {
		t.Fatalf("%d delivery failures; the ring had another way round", n)
	}
	if d := m.Distance(src, dst); d != 5 {
		t.Fatalf("after the kill node 3 is %d hops from node 0, want 5", d)
	}
}

func TestPartitionHeals(t *testing.T) {
	const size, count = 10, 200
	m := newMesh(t, size, meshtest.Seed(t), meshtest.Fast()...)
	ring(m)
	m.Link(0, 5)
	m.Link(2, 7)
	m.WaitConverged(10 * time.Second)
	left, right := []string{}, []string{}
	for i := range size {
		if i < size/2 {
			left = append(left, m.Addr(i))
		} else {
			right = append(right, m.Addr(i))
		}
	}
	m.net.Partition(left, right)
	src, dst := 1, 6
	meshtest.WaitFor(t, 10*time.Second, "the partition to be noticed", func() bool { return m.Distance(src, dst) < 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := m.Collect(ctx, dst)
	// Send until the stream's window and backlog are full and Send blocks,
	// then heal: the rest is accepted as the mesh repairs itself.
	var accepted atomic.Int64
	sent := make(chan error, 1)
	go func() {
		for s := range count {
			if err := m.Node(src).Send(ctx, m.Node(dst).ID(), meshtest.Body(src, uint64(s), 64)); err != nil {
				sent <- err
				return
			}
			accepted.Add(1)
		}
		sent <- nil
	}()
	meshtest.WaitFor(t, 10*time.Second, "Send to block on the partitioned stream", func() bool { return accepted.Load() >= 50 })
	m.net.Heal()
	m.WaitConverged(30 * time.Second)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	dstID := m.Node(dst).ID()
	got := func() []uint64 { return c.Got(src, false) }
	fl := func() map[uint64]bool { return m.Failed(src, dstID, false) }
	meshtest.Settled(t, time.Minute, "cross-partition stream", got, fl, count)
	d, f := meshtest.CheckStream(t, "across the healed partition", got(), fl(), count)
	t.Logf("sent during the partition: %d delivered after healing, %d reported failed", d, f)
	if d == 0 {
		t.Fatal("nothing sent during the partition was delivered after it healed")
	}
}

func TestBroadcastRandomMeshWithLoss(t *testing.T) {
	const size, count = 30, 40
	seed := meshtest.Seed(t)
	m := newMesh(t, size, seed, meshtest.Lossy(node.WithMaxConnections(30))...)
	m.LinkRandom(size / 2)
	m.WaitConverged(20 * time.Second)
	for i := range size {
		for j := i + 1; j < size; j++ {
			m.net.SetFaults(m.Addr(i), m.Addr(j), memory.Faults{Loss: 0.1})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cols := m.CollectAll(ctx)
	origins := []int{0, 13, 29}
	if err := m.SendFrom(ctx, origins, uuid.Nil, count, 100); err != nil {
		t.Fatal(err)
	}
	for _, o := range origins {
		for r := range size {
			if r == o {
				if got := cols[r].Got(o, true); len(got) != 0 {
					t.Fatalf("node %d received its own broadcasts", o)
				}
				continue
			}
			dst := m.Node(r).ID()
			got := func() []uint64 { return cols[r].Got(o, true) }
			fl := func() map[uint64]bool { return m.Failed(o, dst, true) }
			if len(got())+len(fl()) < count {
				defer func() {
					if t.Failed() {
						t.Logf("origin %d -> %d stuck at %d delivered:\n%s%s", o, r, len(got()), node.DebugString(m.Node(o)), node.DebugString(m.Node(r)))
					}
				}()
			}
			meshtest.Settled(t, 30*time.Second, "broadcast", got, fl, count)
			meshtest.CheckStream(t, "broadcast", got(), fl(), count)
		}
	}
	if n := m.FailureCount(); n != 0 {
		t.Errorf("%d broadcast deliveries reported failed", n)
	}
	var fwd uint64
	for _, nd := range m.Nodes() {
		fwd += nd.Stats().Forwarded
	}
	t.Logf("network: %+v; forwarded frames %d", m.net.Stats(), fwd)
}
