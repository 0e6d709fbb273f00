package quic_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/reliability"
	"github.com/distrirender/distrirender/transport/quic"
)

// The node's own mesh scenarios, over QUIC on the IPv4 loopback.

// fast makes failure detection and retransmission quick, as in the node
// package's scenarios.
func fast() []node.Option {
	return []node.Option{
		node.WithMinConnections(0), // these tests build their topology by hand
		node.WithKeepalive(50*time.Millisecond, 4),
		node.WithReliability(reliability.Config{MinRTO: 10 * time.Millisecond, InitialRTO: 50 * time.Millisecond, MaxRTO: 500 * time.Millisecond}),
	}
}

// testSeed returns MESH_SEED if set, else a fresh seed, and logs it.
func testSeed(t testing.TB) uint64 {
	t.Helper()
	if s := os.Getenv("MESH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("MESH_SEED=%q: %v", s, err)
		}
		t.Logf("seed %d (from MESH_SEED)", v)
		return v
	}
	v := uint64(time.Now().UnixNano())
	t.Logf("seed %d (replay: MESH_SEED=%d go test -run '^%s$' ./transport/quic/)", v, v, t.Name())
	return v
}

// mesh is a set of nodes, each on its own QUIC transport on 127.0.0.1.
type mesh struct {
	t     testing.TB
	rng   *rand.Rand
	nodes []*node.Node
	trs   []*quic.Transport
	addrs []string
	alive []bool // counted in convergence

	mu       sync.Mutex
	failures map[uuid.UUID][]node.Event // DeliveryFailed events by reporting node
	got      map[[3]int][]uint64        // receiver, sender, broadcast (0/1) -> sequence numbers
	wg       sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc
}

func newMesh(t testing.TB, size int, seed uint64, opts ...node.Option) *mesh {
	t.Helper()
	m := &mesh{
		t:        t,
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		failures: make(map[uuid.UUID][]node.Event),
		got:      make(map[[3]int][]uint64),
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	t.Cleanup(m.close)
	for range size {
		m.add(opts...)
	}
	return m
}

// add starts a node on a new transport, with a UUID from the seeded RNG, and
// starts collecting what it receives and its failure events.
func (m *mesh) add(opts ...node.Option) {
	m.t.Helper()
	i := len(m.nodes)
	tr, err := quic.Listen("127.0.0.1:0", quic.Config{})
	if err != nil {
		m.t.Fatal(err)
	}
	var id uuid.UUID
	binary.BigEndian.PutUint64(id[:8], m.rng.Uint64())
	binary.BigEndian.PutUint64(id[8:], m.rng.Uint64())
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	nd, err := node.New(tr, append([]node.Option{node.WithID(id)}, opts...)...)
	if err != nil {
		_ = tr.Close()
		m.t.Fatal(err)
	}
	m.nodes = append(m.nodes, nd)
	m.trs = append(m.trs, tr)
	m.addrs = append(m.addrs, tr.Addrs()[0])
	m.alive = append(m.alive, true)
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		for e := range nd.Events() {
			if e.Kind == node.DeliveryFailed {
				m.mu.Lock()
				m.failures[nd.ID()] = append(m.failures[nd.ID()], e)
				m.mu.Unlock()
			}
		}
	}()
	go func() {
		defer m.wg.Done()
		for {
			d, err := nd.Receive(m.ctx)
			if err != nil {
				return
			}
			from := int(binary.BigEndian.Uint64(d.Body))
			k := [3]int{i, from, 0}
			if d.Broadcast {
				k[2] = 1
			}
			m.mu.Lock()
			m.got[k] = append(m.got[k], binary.BigEndian.Uint64(d.Body[8:]))
			m.mu.Unlock()
		}
	}()
}

func (m *mesh) close() {
	// Every node, dead or alive: a node whose transport was closed or
	// crashed under it is still running. Node.Close is idempotent.
	for _, nd := range m.nodes {
		_ = nd.Close()
	}
	m.cancel()
	m.wg.Wait()
	for _, tr := range m.trs {
		_ = tr.Close()
	}
}

func (m *mesh) link(i, j int) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.nodes[i].Connect(ctx, m.addrs[j]); err != nil {
		m.t.Fatalf("connect %d -> %d: %v", i, j, err)
	}
}

// converged reports whether every live node has a route to every other.
func (m *mesh) converged() bool {
	for i, nd := range m.nodes {
		if !m.alive[i] {
			continue
		}
		dist := map[uuid.UUID]int{}
		for _, ni := range nd.Topology().Nodes {
			dist[ni.ID] = ni.Distance
		}
		for j, other := range m.nodes {
			if i == j || !m.alive[j] {
				continue
			}
			if d, ok := dist[other.ID()]; !ok || d < 0 {
				return false
			}
		}
	}
	return true
}

func (m *mesh) waitConverged(timeout time.Duration) {
	m.t.Helper()
	waitFor(m.t, timeout, "routes to converge", m.converged)
}

// received returns what node r got from node s so far.
func (m *mesh) received(r, s int, bcast bool) []uint64 {
	k := [3]int{r, s, 0}
	if bcast {
		k[2] = 1
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]uint64(nil), m.got[k]...)
}

func (m *mesh) failureCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, fs := range m.failures {
		n += len(fs)
	}
	return n
}

// sendAll sends count messages from node i to dst, or broadcasts them if dst
// is uuid.Nil.
func (m *mesh) sendAll(ctx context.Context, i int, dst uuid.UUID, count, size int) error {
	for s := range count {
		b := make([]byte, max(16, size))
		binary.BigEndian.PutUint64(b, uint64(i))
		binary.BigEndian.PutUint64(b[8:], uint64(s))
		var err error
		if dst == uuid.Nil {
			err = m.nodes[i].Broadcast(ctx, b)
		} else {
			err = m.nodes[i].Send(ctx, dst, b)
		}
		if err != nil {
			return fmt.Errorf("send %d of %d: %w", s, count, err)
		}
	}
	return nil
}

// exactlyOnceInOrder checks that got is 0, 1, ..., count-1.
func exactlyOnceInOrder(t testing.TB, what string, got []uint64, count int) {
	t.Helper()
	if len(got) != count {
		t.Fatalf("%s: %d messages delivered, want %d", what, len(got), count)
	}
	for i, s := range got {
		if s != uint64(i) {
			t.Fatalf("%s: message %d delivered at position %d (duplicate or out of order)", what, s, i)
		}
	}
}

func TestMeshLine(t *testing.T) {
	const size, count = 5, 2000
	m := newMesh(t, size, testSeed(t), fast()...)
	for i := range size - 1 {
		m.link(i, i+1)
	}
	m.waitConverged(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	if err := m.sendAll(ctx, 0, m.nodes[size-1].ID(), count, 64); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "all messages", func() bool { return len(m.received(size-1, 0, false)) >= count })
	exactlyOnceInOrder(t, "line", m.received(size-1, 0, false), count)
	if n := m.failureCount(); n != 0 {
		t.Fatalf("%d delivery failures on a lossless line", n)
	}
	t.Logf("%d messages over 4 hops in %v; middle node forwarded %d frames; sender retransmitted %d",
		count, time.Since(start).Round(time.Millisecond), m.nodes[2].Stats().Forwarded, m.nodes[0].Stats().Retransmits)
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
		{"NodeClose", func(m *mesh, i int) {
			m.alive[i] = false
			_ = m.nodes[i].Close()
		}},
		// The transport closes under a running node: the edges close
		// (the peers read the end of their streams) without a goodbye.
		{"TransportClose", func(m *mesh, i int) {
			m.alive[i] = false
			_ = m.trs[i].Close()
		}},
		// The transport falls silent as if the machine crashed: no close
		// reaches the peers; their keepalives notice.
		{"Crash", func(m *mesh, i int) {
			m.alive[i] = false
			m.trs[i].Crash()
		}},
	}
	for _, k := range kills {
		t.Run(k.name, func(t *testing.T) {
			const size, count = 6, 2000
			m := newMesh(t, size, testSeed(t), fast()...)
			for i := range size {
				m.link(i, (i+1)%size)
			}
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
			if victim != 1 && victim != 5 {
				t.Fatalf("next hop from 0 to 3 is node %d, want 1 or 5", victim)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			sent := make(chan error, 1)
			go func() { sent <- m.sendAll(ctx, src, m.nodes[dst].ID(), count, 256) }()
			waitFor(t, 30*time.Second, "half the stream", func() bool { return len(m.received(dst, src, false)) >= count/2 })
			k.kill(m, victim)
			if err := <-sent; err != nil {
				t.Fatal(err)
			}
			waitFor(t, 30*time.Second, "the whole stream", func() bool { return len(m.received(dst, src, false)) >= count })
			exactlyOnceInOrder(t, "rerouted", m.received(dst, src, false), count)
			if n := m.failureCount(); n != 0 {
				t.Fatalf("%d delivery failures; the ring had another way round", n)
			}
			for _, ni := range m.nodes[src].Topology().Nodes {
				if ni.ID == m.nodes[dst].ID() && ni.Distance != 3 {
					t.Fatalf("after the kill node 3 is %d hops from node 0, want 3", ni.Distance)
				}
			}
			t.Logf("sender retransmitted %d", m.nodes[src].Stats().Retransmits)
		})
	}
}

// TestMeshBroadcast floods broadcasts from three origins through a random
// connected mesh of eight: every other node delivers each exactly once.
func TestMeshBroadcast(t *testing.T) {
	const size, count = 8, 200
	seed := testSeed(t)
	m := newMesh(t, size, seed, fast()...)
	for i := 1; i < size; i++ {
		m.link(i, m.rng.IntN(i))
	}
	linked := map[[2]int]bool{}
	for range size / 2 {
		a, b := m.rng.IntN(size), m.rng.IntN(size)
		if a == b || linked[[2]int{a, b}] || linked[[2]int{b, a}] {
			continue
		}
		linked[[2]int{a, b}] = true
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = m.nodes[a].Connect(ctx, m.addrs[b]) // may exist already
		cancel()
	}
	m.waitConverged(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	origins := []int{0, 3, 7}
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
				continue
			}
			waitFor(t, 30*time.Second, fmt.Sprintf("broadcasts from %d at %d", o, r), func() bool { return len(m.received(r, o, true)) >= count })
			exactlyOnceInOrder(t, fmt.Sprintf("broadcast %d -> %d", o, r), m.received(r, o, true), count)
		}
		if got := m.received(o, o, true); len(got) != 0 {
			t.Fatalf("node %d received %d of its own broadcasts", o, len(got))
		}
	}
	if n := m.failureCount(); n != 0 {
		t.Fatalf("%d broadcast deliveries reported failed", n)
	}
}
