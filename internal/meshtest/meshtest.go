// Package meshtest is the harness of this module's mesh-scenario tests: a
// Mesh of nodes with seeded UUIDs on any transport, collectors that sort
// what a node receives into streams, and the invariant every stream must
// keep: each message sent is delivered exactly once and in order, or
// reported failed.
//
// A package's tests wrap a Mesh with what only they have (faults of the
// memory network, a QUIC transport's crash, bridges over two transports):
//
//	type mesh struct {
//		*meshtest.Mesh
//		net *memory.Network
//	}
//
// Randomised tests take their seed from Seed, so that a failure replays with
// MESH_SEED. Set MESH_DEBUG to give every node a debug logger on stderr.
package meshtest

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/testutil"
	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/reliability"
	"github.com/distrirender/distrirender/transport"
)

// Seed is testutil.Seed: the logged, replayable seed of a randomised test.
func Seed(t testing.TB) uint64 {
	t.Helper()
	return testutil.Seed(t)
}

// WaitFor is testutil.WaitFor: it polls cond until it holds, and fails the
// test if it does not within timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, timeout, what, cond)
}

// Logger returns a debug logger to stderr, its records tagged n=name, if
// MESH_DEBUG is set, else nil.
func Logger(name string) *slog.Logger {
	if os.Getenv("MESH_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("n", name)
}

// Fast makes failure detection (keepalives every 50 ms, four missed) and
// retransmission (RTO 10 to 500 ms) quick, and turns balancing off (no
// minimum of connections): for tests that build their topology by hand.
// extra come after, so they override.
func Fast(extra ...node.Option) []node.Option {
	return append([]node.Option{
		node.WithMinConnections(0),
		node.WithKeepalive(50*time.Millisecond, 4),
		node.WithReliability(reliability.Config{MinRTO: 10 * time.Millisecond, InitialRTO: 50 * time.Millisecond, MaxRTO: 500 * time.Millisecond}),
	}, extra...)
}

// Member returns the options of member number i of a closed cluster with
// secret: a fixed identity key of its own, so that its UUID (the key's)
// overrides the one Mesh.Add draws, and the secret. extra come after.
func Member(secret []byte, i int, extra ...node.Option) []node.Option {
	key := ed25519.NewKeyFromSeed(binary.BigEndian.AppendUint64(make([]byte, 24), uint64(i)+1))
	return append([]node.Option{node.WithIdentity(key), node.WithClusterSecrets(secret)}, extra...)
}

// Listener makes the transport of the mesh's node i and returns it with
// the address at which Link dials it (empty for a node that is only linked
// with LinkAt). It fails t if it cannot.
type Listener func(t testing.TB, i int) (tr transport.Transport, addr string)

// Mesh is a set of nodes in this process, numbered in the order they were
// added. It records every node's events and closes every node when the test
// ends. The methods that add, link or close nodes, Rand, WaitConverged and
// Dump are for the test's goroutine (they may fail the test); the others
// may also be called from goroutines the test starts.
type Mesh struct {
	t      testing.TB
	listen Listener
	rng    *rand.Rand
	wg     sync.WaitGroup // event readers and collectors

	mu       sync.Mutex // guards what follows: collectors and event readers read it
	nodes    []*node.Node
	addrs    []string
	alive    []bool          // counted by Converged
	drained  []chan struct{} // closed when node i's Events channel is
	failures map[int][]node.Event
	kinds    map[node.EventKind]int
	downs    []error // the causes of NeighborDown events
}

// New returns an empty mesh whose Add makes transports with listen, and
// registers its closing with t. Its random generator (Rand), from which the
// nodes' UUIDs are drawn, is seeded with seed.
func New(t testing.TB, seed uint64, listen Listener) *Mesh {
	m := &Mesh{
		t:        t,
		listen:   listen,
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		failures: make(map[int][]node.Event),
		kinds:    make(map[node.EventKind]int),
	}
	t.Cleanup(m.close)
	return m
}

// close closes every node, whether or not it counts as alive (Node.Close
// is idempotent, and a node whose transport was closed under it still
// runs), then waits for every goroutine the mesh started.
func (m *Mesh) close() {
	for _, nd := range m.Nodes() {
		_ = nd.Close()
	}
	m.wg.Wait()
}

// Add starts a node on a transport from the mesh's Listener and returns its
// index.
func (m *Mesh) Add(opts ...node.Option) int {
	m.t.Helper()
	tr, addr := m.listen(m.t, m.Len())
	return m.AddOn([]transport.Transport{tr}, addr, opts...)
}

// AddOn starts a node on the given transports (the first is node.New's,
// the others are added with node.WithTransport), which Link dials at addr,
// and returns its index. Its UUID is drawn from Rand; opts come after the
// mesh's own options, so they may override the logger.
func (m *Mesh) AddOn(trs []transport.Transport, addr string, opts ...node.Option) int {
	m.t.Helper()
	i := m.Len()
	var id uuid.UUID
	for j := 0; j < 16; j += 8 {
		binary.BigEndian.PutUint64(id[j:], m.rng.Uint64())
	}
	id[6] = id[6]&0x0f | 0x40 // version 4
	id[8] = id[8]&0x3f | 0x80 // RFC 4122 variant
	all := []node.Option{node.WithID(id)}
	if l := Logger(strconv.Itoa(i)); l != nil {
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
	drained := make(chan struct{})
	m.mu.Lock()
	m.nodes = append(m.nodes, nd)
	m.addrs = append(m.addrs, addr)
	m.alive = append(m.alive, true)
	m.drained = append(m.drained, drained)
	m.mu.Unlock()
	m.wg.Go(func() {
		defer close(drained)
		for e := range nd.Events() {
			m.mu.Lock()
			m.kinds[e.Kind]++
			if e.Kind == node.NeighborDown {
				m.downs = append(m.downs, e.Err)
			}
			if e.Kind == node.DeliveryFailed {
				m.failures[i] = append(m.failures[i], e)
			}
			m.mu.Unlock()
		}
	})
	return i
}

// Len returns how many nodes were added, closed ones included.
func (m *Mesh) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.nodes)
}

// Node returns node i.
func (m *Mesh) Node(i int) *node.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nodes[i]
}

// Nodes returns every node added so far, closed ones included.
func (m *Mesh) Nodes() []*node.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.nodes)
}

// Addr returns the address at which Link dials node i.
func (m *Mesh) Addr(i int) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.addrs[i]
}

// Alive reports whether node i counts in Converged: neither Close nor
// MarkDown was called for it.
func (m *Mesh) Alive(i int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.alive[i]
}

// Rand returns the mesh's seeded random generator, for the test to draw
// its topology and sizes from. It is for the test's goroutine only.
func (m *Mesh) Rand() *rand.Rand { return m.rng }

// Close makes node i leave (it says goodbye and closes its transports) and
// returns when every event it reported has been recorded.
func (m *Mesh) Close(i int) {
	m.MarkDown(i)
	_ = m.Node(i).Close()
	m.mu.Lock()
	drained := m.drained[i]
	m.mu.Unlock()
	<-drained
}

// MarkDown stops counting node i in Converged without closing it, for a
// test that takes the node down another way (its transport crashes or is
// closed under it). The mesh closes it when the test ends.
func (m *Mesh) MarkDown(i int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.alive[i] = false
}

// Link connects node i to node j at the address its Listener gave, and
// fails the test if it cannot within 10 s.
func (m *Mesh) Link(i, j int) {
	m.t.Helper()
	m.LinkAt(i, j, m.Addr(j))
}

// LinkAt connects node i to node j at addr, one of node j's addresses, and
// fails the test if it cannot within 10 s.
func (m *Mesh) LinkAt(i, j int, addr string) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Node(i).Connect(ctx, addr); err != nil {
		m.t.Fatalf("connect %d -> %d at %s: %v", i, j, addr, err)
	}
}

// LinkRandom links every node but the first to a random earlier one, which
// makes a random tree, then draws extra more pairs and tries to link each
// (a pair drawn twice or already linked is no error). The draws come from
// Rand, so the topology replays with the seed.
func (m *Mesh) LinkRandom(extra int) {
	m.t.Helper()
	size := m.Len()
	for i := 1; i < size; i++ {
		m.Link(i, m.rng.IntN(i))
	}
	linked := map[[2]int]bool{}
	for range extra {
		a, b := m.rng.IntN(size), m.rng.IntN(size)
		if a == b || linked[[2]int{a, b}] || linked[[2]int{b, a}] {
			continue
		}
		linked[[2]int{a, b}] = true
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = m.Node(a).Connect(ctx, m.Addr(b)) // may exist already
		cancel()
	}
}

// Converged reports whether every live node has a route to every other
// live node. It copies one node's Topology at a time and stops at the first
// node that lacks a route, so a failing check is cheap; one that passes
// costs a Topology copy per live node.
func (m *Mesh) Converged() bool {
	nodes := m.Nodes()
	m.mu.Lock()
	alive := slices.Clone(m.alive)
	m.mu.Unlock()
	live := make(map[uuid.UUID]bool, len(nodes))
	for i, nd := range nodes {
		if alive[i] {
			live[nd.ID()] = true
		}
	}
	for i, nd := range nodes {
		if !alive[i] {
			continue
		}
		reached := 0 // live nodes other than nd with a route
		for _, ni := range nd.Topology().Nodes {
			if ni.Distance > 0 && live[ni.ID] {
				reached++
			}
		}
		if reached < len(live)-1 {
			return false
		}
	}
	return true
}

// WaitConverged waits until Converged holds, and fails the test if it does
// not within timeout.
func (m *Mesh) WaitConverged(timeout time.Duration) {
	m.t.Helper()
	WaitFor(m.t, timeout, "routes to converge", m.Converged)
}

func distances(nd *node.Node) map[uuid.UUID]int {
	dist := map[uuid.UUID]int{}
	for _, ni := range nd.Topology().Nodes {
		dist[ni.ID] = ni.Distance
	}
	return dist
}

// Distance returns how many hops node i counts to node j, or -1 if it has
// no route.
func (m *Mesh) Distance(i, j int) int {
	if d, ok := distances(m.Node(i))[m.Node(j).ID()]; ok {
		return d
	}
	return -1
}

// NextHop returns the index of node i's next hop towards node j, or -1 if
// it has none in the mesh.
func (m *Mesh) NextHop(i, j int) int {
	dst := m.Node(j).ID()
	for _, ni := range m.Node(i).Topology().Nodes {
		if ni.ID != dst {
			continue
		}
		for k, nd := range m.Nodes() {
			if nd.ID() == ni.NextHop {
				return k
			}
		}
	}
	return -1
}

// Failures returns the DeliveryFailed events node i has reported so far.
func (m *Mesh) Failures(i int) []node.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.failures[i])
}

// Failed returns the sequence numbers (see Body) of the messages node i
// reported as failed to dst, among its broadcasts if bcast.
func (m *Mesh) Failed(i int, dst uuid.UUID, bcast bool) map[uint64]bool {
	out := map[uint64]bool{}
	for _, e := range m.Failures(i) {
		if e.Peer == dst && e.Broadcast == bcast {
			if _, seq, ok := ParseBody(e.Body); ok {
				out[seq] = true
			}
		}
	}
	return out
}

// FailureCount returns how many DeliveryFailed events all nodes together
// have reported.
func (m *Mesh) FailureCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return sumLen(m.failures)
}

// sumLen returns the total length of the slices in a map.
func sumLen[K comparable, V any](m map[K][]V) int {
	n := 0
	for _, s := range m {
		n += len(s)
	}
	return n
}

// EventCount returns how many events of the kind all nodes together have
// reported.
func (m *Mesh) EventCount(kind node.EventKind) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.kinds[kind]
}

// Downs returns how many NeighborDown events all nodes together have
// reported whose cause matches err (errors.Is), or all of them if err is
// nil.
// DownCauses returns the causes of every NeighborDown event all nodes
// together have reported, in the order they were recorded per node.
func (m *Mesh) DownCauses() []error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.downs)
}

func (m *Mesh) Downs(err error) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, e := range m.downs {
		if err == nil || errors.Is(e, err) {
			n++
		}
	}
	return n
}

// Body makes a test message of at least 16 bytes: the sender's index and
// the sequence number, big-endian, then zero padding up to size.
func Body(from int, seq uint64, size int) []byte {
	b := make([]byte, max(16, size))
	binary.BigEndian.PutUint64(b, uint64(from))
	binary.BigEndian.PutUint64(b[8:], seq)
	return b
}

// ParseBody reads what Body wrote; ok is false for a body too short.
func ParseBody(b []byte) (from int, seq uint64, ok bool) {
	if len(b) < 16 {
		return 0, 0, false
	}
	return int(binary.BigEndian.Uint64(b)), binary.BigEndian.Uint64(b[8:]), true
}

// SendAll sends count messages made by Body from node i to dst, or
// broadcasts them if dst is uuid.Nil, and returns when all are accepted.
func (m *Mesh) SendAll(ctx context.Context, i int, dst uuid.UUID, count, size int) error {
	nd := m.Node(i)
	for s := range count {
		b := Body(i, uint64(s), size)
		var err error
		if dst == uuid.Nil {
			err = nd.Broadcast(ctx, b)
		} else {
			err = nd.Send(ctx, dst, b)
		}
		if err != nil {
			return fmt.Errorf("send %d of %d from node %d: %w", s, count, i, err)
		}
	}
	return nil
}

// SendFrom runs SendAll from each of the origins at once, with the same
// dst, count and size, and returns when all have, or at the first error
// (the other senders then run on until ctx ends or the mesh closes).
func (m *Mesh) SendFrom(ctx context.Context, origins []int, dst uuid.UUID, count, size int) error {
	errs := make(chan error, len(origins))
	for _, o := range origins {
		m.wg.Go(func() { errs <- m.SendAll(ctx, o, dst, count, size) })
	}
	for range origins {
		if err := <-errs; err != nil {
			return err
		}
	}
	return nil
}

// Dump logs what every live node knows (neighbours, next hops, distances,
// stats) and the failures each reported, if the test has failed. Register
// it with t.Cleanup after New, so that it runs before the nodes close.
func (m *Mesh) Dump() {
	if !m.t.Failed() {
		return
	}
	nodes := m.Nodes()
	for i, nd := range nodes {
		if !m.Alive(i) {
			continue
		}
		var hops []string
		for j := range nodes {
			if j != i {
				hops = append(hops, fmt.Sprintf("%d:%d/d%d", j, m.NextHop(i, j), m.Distance(i, j)))
			}
		}
		m.t.Logf("node %d %s: %d neighbours, next hops %v\n  stats %+v", i, nd.ID().String()[:8], len(nd.Neighbors()), hops, nd.Stats())
	}
	for i, nd := range nodes {
		byPeer := map[string]int{}
		for _, e := range m.Failures(i) {
			byPeer[fmt.Sprintf("to %s broadcast=%v: %v", e.Peer.String()[:8], e.Broadcast, e.Err)]++
		}
		if len(byPeer) > 0 {
			m.t.Logf("node %d %s reported failures: %v", i, nd.ID().String()[:8], byPeer)
		}
	}
}

// streamKey names the stream of one sender's messages to a receiver: its
// unicast (and multicast) messages, or its broadcasts.
type streamKey struct {
	from  int
	bcast bool
}

// Collector holds what one node received, sorted into streams by sender
// and broadcast or not.
type Collector struct {
	mu      sync.Mutex
	streams map[streamKey][]uint64
	wrong   int
}

// Collect receives everything node i gets until ctx ends or the node is
// closed and drained. The sender is read from the body (see Body); a
// delivery whose body names another node than the one it came from, or is
// too short to name one, counts as from the wrong sender.
func (m *Mesh) Collect(ctx context.Context, i int) *Collector {
	c := &Collector{streams: map[streamKey][]uint64{}}
	nd := m.Node(i)
	m.wg.Go(func() {
		for {
			d, err := nd.Receive(ctx)
			if err != nil {
				return
			}
			from, seq, ok := ParseBody(d.Body)
			m.mu.Lock() // nodes may be added meanwhile
			wrong := !ok || from < 0 || from >= len(m.nodes) || m.nodes[from].ID() != d.From
			m.mu.Unlock()
			c.mu.Lock()
			if wrong {
				c.wrong++
			}
			if ok {
				k := streamKey{from, d.Broadcast}
				c.streams[k] = append(c.streams[k], seq)
			}
			c.mu.Unlock()
		}
	})
	return c
}

// CollectAll starts a Collect on every node added so far and returns the
// collectors by node index.
func (m *Mesh) CollectAll(ctx context.Context) []*Collector {
	cols := make([]*Collector, m.Len())
	for i := range cols {
		cols[i] = m.Collect(ctx, i)
	}
	return cols
}

// CheckBroadcasts waits up to timeout until every node but the origin has
// count broadcasts from each origin (sent with SendFrom; cols from
// CollectAll), then fails the test unless each of those streams is exactly
// 0 to count-1 in order, no origin received its own broadcasts, no node
// reported a delivery failure and no delivery named a wrong sender.
func (m *Mesh) CheckBroadcasts(cols []*Collector, origins []int, count int, timeout time.Duration) {
	m.t.Helper()
	for _, o := range origins {
		for r := range cols {
			if r == o {
				if got := cols[o].Got(o, true); len(got) != 0 {
					m.t.Errorf("node %d received %d of its own broadcasts", o, len(got))
				}
				continue
			}
			WaitFor(m.t, timeout, fmt.Sprintf("broadcasts from %d at %d", o, r), func() bool { return len(cols[r].Got(o, true)) >= count })
			CheckStream(m.t, fmt.Sprintf("broadcast %d -> %d", o, r), cols[r].Got(o, true), nil, count)
		}
	}
	if n := m.FailureCount(); n != 0 {
		m.t.Errorf("%d deliveries reported failed", n)
	}
	for r, c := range cols {
		if n := c.WrongSender(); n != 0 {
			m.t.Errorf("node %d: %d deliveries with the wrong sender", r, n)
		}
	}
}

// Got returns the sequence numbers received so far from node from, among
// its broadcasts if bcast, in the order they arrived.
func (c *Collector) Got(from int, bcast bool) []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.streams[streamKey{from, bcast}])
}

// Total returns how many messages have been received from anyone.
func (c *Collector) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return sumLen(c.streams)
}

// Streams returns how many streams have delivered at least one message.
func (c *Collector) Streams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.streams)
}

// WrongSender returns how many deliveries came from another node than
// their body names, or had a body too short to name one.
func (c *Collector) WrongSender() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wrong
}

// CheckStream asserts the invariant of one stream: every message sent
// (sequence numbers 0 to sent-1) was delivered exactly once and in order,
// or is in failed; nothing else arrived. With failed nil, got must be
// exactly 0, 1, ..., sent-1. It returns how many were delivered and how many
// reported failed.
func CheckStream(t testing.TB, what string, got []uint64, failed map[uint64]bool, sent int) (delivered, nfailed int) {
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

// Settled waits until every message of a stream (0 to sent-1) has been
// delivered or reported failed, and fails the test if that takes longer
// than timeout.
func Settled(t testing.TB, timeout time.Duration, what string, got func() []uint64, failed func() map[uint64]bool, sent int) {
	t.Helper()
	WaitFor(t, timeout, what+" to settle", func() bool {
		g, f := got(), failed()
		n := len(g)
		for s := range f {
			if !slices.Contains(g, s) {
				n++
			}
		}
		return n >= sent
	})
}
