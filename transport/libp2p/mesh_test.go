package libp2p_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/reliability"
	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/libp2p"
)

// fast makes failure detection and retransmission quick, as in the node
// package's scenarios, and turns balancing off: these tests build their
// topology by hand.
func fast(extra ...node.Option) []node.Option {
	return append([]node.Option{
		node.WithMinConnections(0),
		node.WithKeepalive(50*time.Millisecond, 4),
		node.WithReliability(reliability.Config{MinRTO: 10 * time.Millisecond, InitialRTO: 50 * time.Millisecond, MaxRTO: 500 * time.Millisecond}),
	}, extra...)
}

// testSeed returns the seed for a randomised test: MESH_SEED if set, else a
// fresh one. It is always printed, so that a failing run can be replayed.
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
	t.Logf("seed %d (replay: MESH_SEED=%d go test -run '^%s$' ./transport/libp2p/)", v, v, t.Name())
	return v
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// debugLogger returns a logger to stderr at debug level if MESH_DEBUG is
// set, else nil.
func debugLogger(name string) *slog.Logger {
	if os.Getenv("MESH_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("n", name)
}

// dump logs what every live node knows, when the test has failed.
func (m *mesh) dump() {
	if !m.t.Failed() {
		return
	}
	for i, nd := range m.nodes {
		if !m.alive[i] {
			continue
		}
		var hops []string
		for j := range m.nodes {
			if j != i {
				hops = append(hops, fmt.Sprintf("%d:%d/d%d", j, m.nextHop(i, j), m.distances(i)[m.nodes[j].ID()]))
			}
		}
		m.t.Logf("node %d %s: %d neighbours, next hops %v\n  stats %+v", i, nd.ID().String()[:8], len(nd.Neighbors()), hops, nd.Stats())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for reporter, evs := range m.failures {
		byPeer := map[string]int{}
		for _, e := range evs {
			byPeer[fmt.Sprintf("to %s broadcast=%v: %v", e.Peer.String()[:8], e.Broadcast, e.Err)]++
		}
		m.t.Logf("node %s reported failures: %v", reporter.String()[:8], byPeer)
	}
}

// mesh is a set of nodes in this process, on real transports over loopback.
type mesh struct {
	t     testing.TB
	rng   *rand.Rand
	nodes []*node.Node
	alive []bool

	mu       sync.Mutex
	failures map[uuid.UUID][]node.Event // DeliveryFailed events by reporting node
	wg       sync.WaitGroup
}

func newMesh(t testing.TB, seed uint64) *mesh {
	m := &mesh{
		t:        t,
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		failures: make(map[uuid.UUID][]node.Event),
	}
	t.Cleanup(m.close)
	t.Cleanup(m.dump)
	return m
}

// add starts a node on the given transports, with a UUID drawn from the
// mesh's seeded generator, and returns its index.
func (m *mesh) add(trs []transport.Transport, opts ...node.Option) int {
	m.t.Helper()
	var id uuid.UUID
	for j := 0; j < 16; j += 8 {
		binary.BigEndian.PutUint64(id[j:], m.rng.Uint64())
	}
	id[6] = id[6]&0x0f | 0x40 // version 4
	id[8] = id[8]&0x3f | 0x80 // RFC 4122 variant
	all := []node.Option{node.WithID(id)}
	if l := debugLogger(fmt.Sprint(len(m.nodes))); l != nil {
		all = append(all, node.WithLogger(l))
	}
	for _, tr := range trs[1:] {
		all = append(all, node.WithTransport(tr))
	}
	nd, err := node.New(trs[0], append(all, opts...)...)
	if err != nil {
		for _, tr := range trs {
			_ = tr.Close()
		}
		m.t.Fatal(err)
	}
	i := len(m.nodes)
	m.nodes = append(m.nodes, nd)
	m.alive = append(m.alive, true)
	m.wg.Go(func() {
		for e := range nd.Events() {
			if e.Kind == node.DeliveryFailed {
				m.mu.Lock()
				m.failures[nd.ID()] = append(m.failures[nd.ID()], e)
				m.mu.Unlock()
			}
		}
	})
	return i
}

// addLibp2p starts a node on a new libp2p transport on loopback.
func (m *mesh) addLibp2p(opts ...node.Option) int {
	m.t.Helper()
	tr, err := libp2p.New(libp2p.Config{Logger: debugLogger(fmt.Sprint("tr", len(m.nodes)))})
	if err != nil {
		m.t.Fatal(err)
	}
	return m.add([]transport.Transport{tr}, opts...)
}

func (m *mesh) close() {
	for i, nd := range m.nodes {
		if m.alive[i] {
			_ = nd.Close()
		}
	}
	m.wg.Wait()
}

// stop closes node i: it says goodbye and leaves.
func (m *mesh) stop(i int) {
	m.alive[i] = false
	_ = m.nodes[i].Close()
}

// hostPort selects, in addrOf, an address that is not a multiaddr: one of
// the QUIC transport's.
const hostPort = "host:port"

// addrOf returns the first address of node j that contains kind (or, for
// hostPort, that is not a multiaddr).
func (m *mesh) addrOf(j int, kind string) string {
	m.t.Helper()
	for _, a := range m.nodes[j].Addrs() {
		if kind == hostPort && !strings.HasPrefix(a, "/") || kind != hostPort && strings.Contains(a, kind) {
			return a
		}
	}
	m.t.Fatalf("node %d has no %q address in %q", j, kind, m.nodes[j].Addrs())
	return ""
}

// link connects node i to node j at its first address of the given kind.
func (m *mesh) link(i, j int, kind string) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := m.addrOf(j, kind)
	if err := m.nodes[i].Connect(ctx, addr); err != nil {
		m.t.Fatalf("connect %d -> %d at %s: %v", i, j, addr, err)
	}
}

// kinds alternates the libp2p transports from link to link.
var kinds = []string{"/quic-v1/", "/tcp/"}

// distances returns node i's hop counts to the other nodes, -1 if
// unreachable.
func (m *mesh) distances(i int) map[uuid.UUID]int {
	dist := map[uuid.UUID]int{}
	for _, ni := range m.nodes[i].Topology().Nodes {
		dist[ni.ID] = ni.Distance
	}
	return dist
}

// converged reports whether every live node reaches every other live node.
func (m *mesh) converged() bool {
	for i := range m.nodes {
		if !m.alive[i] {
			continue
		}
		dist := m.distances(i)
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

// nextHop returns the index of node i's next hop towards node j, or -1.
func (m *mesh) nextHop(i, j int) int {
	for _, ni := range m.nodes[i].Topology().Nodes {
		if ni.ID == m.nodes[j].ID() {
			for k, nd := range m.nodes {
				if nd.ID() == ni.NextHop {
					return k
				}
			}
		}
	}
	return -1
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

// body makes a test message: sender index, sequence number, padding.
func body(from int, seq uint64, size int) []byte {
	b := make([]byte, max(16, size))
	binary.BigEndian.PutUint64(b, uint64(from))
	binary.BigEndian.PutUint64(b[8:], seq)
	return b
}

// collector sorts what one node receives into streams per (sender,
// broadcast?).
type collector struct {
	mu      sync.Mutex
	streams map[string][]uint64
	wrongID int
}

func (m *mesh) collect(ctx context.Context, i int) *collector {
	c := &collector{streams: map[string][]uint64{}}
	nd := m.nodes[i]
	m.wg.Go(func() {
		for {
			d, err := nd.Receive(ctx)
			if err != nil {
				return
			}
			from := int(binary.BigEndian.Uint64(d.Body))
			c.mu.Lock()
			if from >= len(m.nodes) || m.nodes[from].ID() != d.From {
				c.wrongID++
			}
			k := fmt.Sprintf("%d/%v", from, d.Broadcast)
			c.streams[k] = append(c.streams[k], binary.BigEndian.Uint64(d.Body[8:]))
			c.mu.Unlock()
		}
	})
	return c
}

func (c *collector) got(from int, bcast bool) []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]uint64(nil), c.streams[fmt.Sprintf("%d/%v", from, bcast)]...)
}

// total returns how many messages arrived from anyone.
func (c *collector) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.streams {
		n += len(s)
	}
	return n
}

// checkExact asserts that got is exactly 0..sent-1, in order: every message
// delivered once, none lost, none invented.
func checkExact(t testing.TB, what string, got []uint64, sent int) {
	t.Helper()
	if len(got) != sent {
		t.Errorf("%s: %d messages delivered, want %d", what, len(got), sent)
	}
	for i, s := range got {
		if s != uint64(i) {
			t.Fatalf("%s: message %d delivered at position %d (duplicate, loss or reordering)", what, s, i)
		}
	}
}

// sendAll sends count messages from node i to dst (or broadcasts with
// dst == uuid.Nil) and returns when all are accepted.
func (m *mesh) sendAll(ctx context.Context, i int, dst uuid.UUID, count, size int) error {
	for s := range count {
		b := body(i, uint64(s), size)
		var err error
		if dst == uuid.Nil {
			err = m.nodes[i].Broadcast(ctx, b)
		} else {
			err = m.nodes[i].Send(ctx, dst, b)
		}
		if err != nil {
			return fmt.Errorf("send %d of %d from node %d: %w", s, count, i, err)
		}
	}
	return nil
}

// TestMeshLine sends 2,000 messages end to end along a line of 5 nodes.
func TestMeshLine(t *testing.T) {
	const size, count = 5, 2000
	m := newMesh(t, testSeed(t))
	for range size {
		m.addLibp2p(fast()...)
	}
	for i := range size - 1 {
		m.link(i, i+1, kinds[i%2])
	}
	m.waitConverged(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := m.collect(ctx, size-1)
	if err := m.sendAll(ctx, 0, m.nodes[size-1].ID(), count, 100+m.rng.IntN(900)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "all messages", func() bool { return len(c.got(0, false)) >= count })
	checkExact(t, "line", c.got(0, false), count)
	if n := m.failureCount(); n != 0 {
		t.Fatalf("%d delivery failures on a lossless line", n)
	}
	t.Logf("middle node forwarded %d frames; sender retransmitted %d", m.nodes[2].Stats().Forwarded, m.nodes[0].Stats().Retransmits)
}

// TestMeshRingForwarderClosed closes the node that forwards a stream in the
// middle of it: the ring has another way round, and everything arrives.
func TestMeshRingForwarderClosed(t *testing.T) {
	const size, count = 6, 1000
	m := newMesh(t, testSeed(t))
	for range size {
		m.addLibp2p(fast()...)
	}
	for i := range size {
		m.link(i, (i+1)%size, kinds[i%2])
	}
	m.waitConverged(10 * time.Second)
	src, dst := 0, 2
	if via := m.nextHop(src, dst); via != 1 {
		t.Fatalf("next hop from 0 to 2 is node %d, want 1 on the short side of the ring", via)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := m.collect(ctx, dst)
	sent := make(chan error, 1)
	go func() { sent <- m.sendAll(ctx, src, m.nodes[dst].ID(), count, 256) }()
	waitFor(t, 30*time.Second, "a third of the stream", func() bool { return len(c.got(src, false)) >= count/3 })
	m.stop(1)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the whole stream", func() bool { return len(c.got(src, false)) >= count })
	checkExact(t, "rerouted", c.got(src, false), count)
	if n := m.failureCount(); n != 0 {
		t.Fatalf("%d delivery failures; the ring had another way round", n)
	}
	if d := m.distances(src)[m.nodes[dst].ID()]; d != 4 {
		t.Fatalf("after node 1 left, node 2 is %d hops from node 0, want 4", d)
	}
}

// TestMeshBroadcast floods broadcasts from three origins over 6 nodes: each
// arrives once at every other node, in order per origin.
func TestMeshBroadcast(t *testing.T) {
	const size, count = 6, 100
	m := newMesh(t, testSeed(t))
	for range size {
		m.addLibp2p(fast()...)
	}
	// A ring with two chords, so that floods meet themselves.
	for i := range size {
		m.link(i, (i+1)%size, kinds[i%2])
	}
	m.link(0, 3, kinds[0])
	m.link(1, 4, kinds[1])
	m.waitConverged(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cols := make([]*collector, size)
	for i := range size {
		cols[i] = m.collect(ctx, i)
	}
	origins := []int{0, 2, 5}
	errs := make(chan error, len(origins))
	for _, o := range origins {
		size := 64 + m.rng.IntN(64)
		go func() { errs <- m.sendAll(ctx, o, uuid.Nil, count, size) }()
	}
	for range origins {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	want := (size - 1) * len(origins) * count
	waitFor(t, time.Minute, "every broadcast everywhere", func() bool {
		n := 0
		for _, c := range cols {
			n += c.total()
		}
		return n >= want
	})
	for _, o := range origins {
		for r := range size {
			got := cols[r].got(o, true)
			if r == o {
				if len(got) != 0 {
					t.Errorf("node %d received %d of its own broadcasts", o, len(got))
				}
				continue
			}
			checkExact(t, fmt.Sprintf("broadcast %d -> %d", o, r), got, count)
		}
	}
	if n := m.failureCount(); n != 0 {
		t.Errorf("%d broadcast deliveries reported failed", n)
	}
	for r, c := range cols {
		if c.wrongID != 0 {
			t.Errorf("node %d: %d deliveries with the wrong sender", r, c.wrongID)
		}
	}
}
