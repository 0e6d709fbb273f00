package node_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/reliability"
	"github.com/distrirender/distrirender/routing"
	"github.com/distrirender/distrirender/transport/memory"
)

// fast makes failure detection and retransmission quick enough for tests
// on an in-memory network.
func fast(extra ...node.Option) []node.Option {
	return append([]node.Option{
		node.WithMinConnections(0), // these tests build their topology by hand
		node.WithKeepalive(50*time.Millisecond, 4),
		node.WithReliability(reliability.Config{MinRTO: 10 * time.Millisecond, InitialRTO: 50 * time.Millisecond, MaxRTO: 500 * time.Millisecond}),
	}, extra...)
}

// lossy tolerates heavy loss: keepalives may be lost many times in a row
// without a neighbour being declared dead, the retry budget is larger, and
// link state is refreshed often so lost floods are repaired.
func lossy() []node.Option {
	return []node.Option{
		node.WithMinConnections(0),
		node.WithKeepalive(50*time.Millisecond, 40),
		node.WithReliability(reliability.Config{MinRTO: 10 * time.Millisecond, InitialRTO: 50 * time.Millisecond, MaxRTO: 200 * time.Millisecond, MaxRetries: 40}),
		node.WithRouting(routing.Config{RefreshInterval: 500 * time.Millisecond}),
	}
}

func ring(m *mesh) {
	for i := range m.nodes {
		m.link(i, (i+1)%len(m.nodes))
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
			m := newMesh(t, size, testSeed(t), fast(node.WithReliability(c.rel))...)
			for i := range size - 1 {
				m.link(i, i+1)
			}
			m.waitConverged(10 * time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			col := m.collect(ctx, size-1)
			if err := m.sendAll(ctx, 0, m.nodes[size-1].ID(), count, 64); err != nil {
				t.Fatal(err)
			}
			waitFor(t, time.Minute, "all messages", func() bool { return len(col.got(0, false)) == count })
			checkStream(t, "line", col.got(0, false), nil, count)
			if n := m.failureCount(); n != 0 {
				t.Fatalf("%d delivery failures on a lossless line", n)
			}
			t.Logf("middle node forwarded %d frames; sender retransmitted %d",
				m.nodes[2].Stats().Forwarded, m.nodes[0].Stats().Retransmits)
		})
	}
}

func TestRingLossDuplicationReordering(t *testing.T) {
	const size, count = 8, 300
	seed := testSeed(t)
	m := newMesh(t, size, seed, lossy()...)
	ring(m)
	m.waitConverged(10 * time.Second)
	bad := memory.Faults{Loss: 0.2, Duplicate: 0.1, Reorder: 0.1, Jitter: time.Millisecond}
	for i := range size {
		m.net.SetFaults(m.addrs[i], m.addrs[(i+1)%size], bad)
	}
	flows := [][2]int{{0, 4}, {2, 5}, {7, 1}, {4, 0}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cols := map[int]*collector{}
	for _, f := range flows {
		if cols[f[1]] == nil {
			cols[f[1]] = m.collect(ctx, f[1])
		}
	}
	errs := make(chan error, len(flows))
	for _, f := range flows {
		go func() { errs <- m.sendAll(ctx, f[0], m.nodes[f[1]].ID(), count, 200) }()
	}
	for range flows {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var delivered, failed int
	for _, f := range flows {
		dst := m.nodes[f[1]].ID()
		got := func() []uint64 { return cols[f[1]].got(f[0], false) }
		fl := func() map[uint64]bool { return m.failed(f[0], dst, false) }
		settled(t, 2*time.Minute, "flow", got, fl, count)
		d, fn := checkStream(t, "ring flow", got(), fl(), count)
		delivered += d
		failed += fn
	}
	t.Logf("delivered %d, reported failed %d of %d; network stats %+v", delivered, failed, len(flows)*count, m.net.Stats())
}

func TestKillForwarderMidStream(t *testing.T) {
	const size, count = 8, 5000
	m := newMesh(t, size, testSeed(t), fast()...)
	ring(m)
	m.waitConverged(10 * time.Second)
	src, dst := 0, 3
	var via uuid.UUID
	for _, ni := range m.nodes[src].Topology().Nodes {
		if ni.ID == m.nodes[dst].ID() {
			via = ni.NextHop
		}
	}
	victim := -1
	for i, nd := range m.nodes {
		if nd.ID() == via {
			victim = i
		}
	}
	if victim != 1 {
		t.Fatalf("next hop from 0 to 3 is node %d, want 1 on the short side of the ring", victim)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := m.collect(ctx, dst)
	sent := make(chan error, 1)
	go func() { sent <- m.sendAll(ctx, src, m.nodes[dst].ID(), count, 256) }()
	waitFor(t, time.Minute, "half the stream", func() bool { return len(c.got(src, false)) >= count/2 })
	m.kill(victim)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the whole stream", func() bool { return len(c.got(src, false)) == count })
	checkStream(t, "rerouted", c.got(src, false), nil, count)
	if n := m.failureCount(); n != 0 {
		t.Fatalf("%d delivery failures; the ring had another way round", n)
	}
	for _, ni := range m.nodes[src].Topology().Nodes {
		if ni.ID == m.nodes[dst].ID() && ni.Distance != 5 {
			t.Fatalf("after the kill node 3 is %d hops from node 0, want 5", ni.Distance)
		}
	}
}

func TestPartitionHeals(t *testing.T) {
	const size, count = 10, 200
	m := newMesh(t, size, testSeed(t), fast()...)
	ring(m)
	m.link(0, 5)
	m.link(2, 7)
	m.waitConverged(10 * time.Second)
	left, right := []string{}, []string{}
	for i, a := range m.addrs {
		if i < size/2 {
			left = append(left, a)
		} else {
			right = append(right, a)
		}
	}
	m.net.Partition(left, right)
	src, dst := 1, 6
	waitFor(t, 10*time.Second, "the partition to be noticed", func() bool {
		for _, ni := range m.nodes[src].Topology().Nodes {
			if ni.ID == m.nodes[dst].ID() {
				return ni.Distance < 0
			}
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := m.collect(ctx, dst)
	// Send until the stream's window and backlog are full and Send blocks,
	// then heal: the rest is accepted as the mesh repairs itself.
	var accepted atomic.Int64
	sent := make(chan error, 1)
	go func() {
		for s := range count {
			if err := m.nodes[src].Send(ctx, m.nodes[dst].ID(), body(src, uint64(s), 64)); err != nil {
				sent <- err
				return
			}
			accepted.Add(1)
		}
		sent <- nil
	}()
	waitFor(t, 10*time.Second, "Send to block on the partitioned stream", func() bool { return accepted.Load() >= 50 })
	m.net.Heal()
	m.waitConverged(30 * time.Second)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	dstID := m.nodes[dst].ID()
	got := func() []uint64 { return c.got(src, false) }
	fl := func() map[uint64]bool { return m.failed(src, dstID, false) }
	settled(t, time.Minute, "cross-partition stream", got, fl, count)
	d, f := checkStream(t, "across the healed partition", got(), fl(), count)
	t.Logf("sent during the partition: %d delivered after healing, %d reported failed", d, f)
	if d == 0 {
		t.Fatal("nothing sent during the partition was delivered after it healed")
	}
}

func TestBroadcastRandomMeshWithLoss(t *testing.T) {
	const size, count = 30, 40
	seed := testSeed(t)
	m := newMesh(t, size, seed, append(lossy(), node.WithMaxConnections(30))...)
	for i := 1; i < size; i++ {
		m.link(i, m.rng.IntN(i))
	}
	for range size / 2 {
		a, b := m.rng.IntN(size), m.rng.IntN(size)
		if a == b {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = m.nodes[a].Connect(ctx, m.addrs[b]) // may exist already
		cancel()
	}
	m.waitConverged(20 * time.Second)
	for i := range size {
		for j := i + 1; j < size; j++ {
			m.net.SetFaults(m.addrs[i], m.addrs[j], memory.Faults{Loss: 0.1})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cols := make([]*collector, size)
	for i := range size {
		cols[i] = m.collect(ctx, i)
	}
	origins := []int{0, 13, 29}
	errs := make(chan error, len(origins))
	for _, o := range origins {
		go func() { errs <- m.sendAll(ctx, o, uuid.Nil, count, 100) }()
	}
	for range origins {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range origins {
		for r := range size {
			if r == o {
				if got := cols[r].got(o, true); len(got) != 0 {
					t.Fatalf("node %d received its own broadcasts", o)
				}
				continue
			}
			dst := m.nodes[r].ID()
			got := func() []uint64 { return cols[r].got(o, true) }
			fl := func() map[uint64]bool { return m.failed(o, dst, true) }
			if len(got())+len(fl()) < count {
				defer func() {
					if t.Failed() {
						t.Logf("origin %d -> %d stuck at %d delivered:\n%s%s", o, r, len(got()), node.DebugString(m.nodes[o]), node.DebugString(m.nodes[r]))
					}
				}()
			}
			settled(t, 30*time.Second, "broadcast", got, fl, count)
			checkStream(t, "broadcast", got(), fl(), count)
		}
	}
	if n := m.failureCount(); n != 0 {
		t.Errorf("%d broadcast deliveries reported failed", n)
	}
	var fwd uint64
	for _, nd := range m.nodes {
		fwd += nd.Stats().Forwarded
	}
	t.Logf("network: %+v; forwarded frames %d", m.net.Stats(), fwd)
}
