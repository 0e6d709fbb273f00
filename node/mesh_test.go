package node_test

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
	"go.uber.org/goleak"

	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/transport/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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
	t.Logf("seed %d (replay: MESH_SEED=%d go test -run '^%s$' ./node/)", v, v, t.Name())
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
		time.Sleep(2 * time.Millisecond)
	}
}

// mesh is a set of nodes on one in-memory network.
type mesh struct {
	t     testing.TB
	net   *memory.Network
	rng   *rand.Rand
	nodes []*node.Node
	addrs []string
	alive []bool

	mu       sync.Mutex
	failures map[uuid.UUID][]node.Event // DeliveryFailed events by reporting node
	kinds    map[node.EventKind]int     // every event seen, by kind
	wg       sync.WaitGroup
}

func newMesh(t testing.TB, size int, seed uint64, opts ...node.Option) *mesh {
	t.Helper()
	m := &mesh{
		t:        t,
		net:      memory.NewNetwork(memory.Config{Seed: int64(seed)}),
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		failures: make(map[uuid.UUID][]node.Event),
		kinds:    make(map[node.EventKind]int),
	}
	for range size {
		m.add(opts...)
	}
	t.Cleanup(m.close)
	return m
}

// add starts one more node with a UUID drawn from the mesh's seeded RNG.
func (m *mesh) add(opts ...node.Option) int {
	m.t.Helper()
	i := len(m.nodes)
	addr := fmt.Sprintf("n%d", i)
	tr, err := m.net.Listen(addr)
	if err != nil {
		m.t.Fatal(err)
	}
	var id uuid.UUID
	for j := 0; j < 16; j += 8 {
		binary.BigEndian.PutUint64(id[j:], m.rng.Uint64())
	}
	id[6] = id[6]&0x0f | 0x40 // version 4
	id[8] = id[8]&0x3f | 0x80 // RFC 4122 variant
	nd, err := node.New(tr, append([]node.Option{node.WithID(id)}, opts...)...)
	if err != nil {
		m.t.Fatal(err)
	}
	m.mu.Lock() // collectors read m.nodes concurrently
	m.nodes = append(m.nodes, nd)
	m.mu.Unlock()
	m.addrs = append(m.addrs, addr)
	m.alive = append(m.alive, true)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for e := range nd.Events() {
			m.mu.Lock()
			m.kinds[e.Kind]++
			if e.Kind == node.DeliveryFailed {
				m.failures[nd.ID()] = append(m.failures[nd.ID()], e)
			}
			m.mu.Unlock()
		}
	}()
	return i
}

func (m *mesh) close() {
	for i, nd := range m.nodes {
		if m.alive[i] {
			nd.Close()
		}
	}
	m.wg.Wait()
	m.net.Close()
}

func (m *mesh) link(i, j int) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.nodes[i].Connect(ctx, m.addrs[j]); err != nil {
		m.t.Fatalf("connect %d -> %d: %v", i, j, err)
	}
}

// kill makes node i die abruptly: its links go silent, nobody is told.
func (m *mesh) kill(i int) {
	m.net.Kill(m.addrs[i])
	m.alive[i] = false
	m.nodes[i].Close()
}

// converged reports whether every live node reaches every other live node.
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

// failed returns the indexes of messages node i reported as failed to dst.
func (m *mesh) failed(i int, dst uuid.UUID, bcast bool) map[uint64]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[uint64]bool{}
	for _, e := range m.failures[m.nodes[i].ID()] {
		if e.Peer == dst && e.Broadcast == bcast {
			out[binary.BigEndian.Uint64(e.Body[8:])] = true
		}
	}
	return out
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

// stream is what one receiver got from one sender.
type stream struct {
	mu   sync.Mutex
	seqs []uint64
}

// collector receives everything node i gets, sorted into streams per
// (sender, broadcast?), until the context ends.
type collector struct {
	mu      sync.Mutex
	streams map[string]*stream
	wrongID int
}

func (m *mesh) collect(ctx context.Context, i int) *collector {
	c := &collector{streams: map[string]*stream{}}
	nd := m.nodes[i]
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			d, err := nd.Receive(ctx)
			if err != nil {
				return
			}
			from := int(binary.BigEndian.Uint64(d.Body))
			m.mu.Lock()
			wrong := from >= len(m.nodes) || m.nodes[from].ID() != d.From
			m.mu.Unlock()
			c.mu.Lock()
			if wrong {
				c.wrongID++
			}
			k := fmt.Sprintf("%d/%v", from, d.Broadcast)
			s := c.streams[k]
			if s == nil {
				s = &stream{}
				c.streams[k] = s
			}
			c.mu.Unlock()
			s.mu.Lock()
			s.seqs = append(s.seqs, binary.BigEndian.Uint64(d.Body[8:]))
			s.mu.Unlock()
		}
	}()
	return c
}

func (c *collector) got(from int, bcast bool) []uint64 {
	c.mu.Lock()
	s := c.streams[fmt.Sprintf("%d/%v", from, bcast)]
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.seqs...)
}

// checkStream asserts the invariant: every message sent (0..sent-1) was
// delivered exactly once and in order, or reported failed; nothing else
// arrived. It returns how many were delivered and how many failed.
func checkStream(t testing.TB, what string, got []uint64, failed map[uint64]bool, sent int) (delivered, nfailed int) {
	t.Helper()
	seen := make(map[uint64]bool, len(got))
	var last int64 = -1
	for _, s := range got {
		if s >= uint64(sent) {
			t.Fatalf("%s: delivered %d, never sent", what, s)
		}
		if seen[s] {
			t.Fatalf("%s: %d delivered twice", what, s)
		}
		if int64(s) < last {
			t.Fatalf("%s: %d delivered after %d", what, s, last)
		}
		seen[s], last = true, int64(s)
	}
	for s := range uint64(sent) {
		if !seen[s] && !failed[s] {
			t.Fatalf("%s: message %d neither delivered nor reported failed", what, s)
		}
	}
	return len(got), len(failed)
}

// settled waits until every message of a stream is delivered or failed.
func settled(t testing.TB, timeout time.Duration, what string, got func() []uint64, failed func() map[uint64]bool, sent int) {
	t.Helper()
	waitFor(t, timeout, what+" to settle", func() bool {
		g, f := got(), failed()
		n := len(g)
		for s := range f {
			if !containsSeq(g, s) {
				n++
			}
		}
		return n >= sent
	})
}

func containsSeq(s []uint64, v uint64) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
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
			return fmt.Errorf("send %d of %d: %w", s, count, err)
		}
	}
	return nil
}
