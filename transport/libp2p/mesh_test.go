package libp2p_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/libp2p"
)

// mesh is a set of nodes in this process on transports over loopback: Add
// puts a node on a new libp2p transport, add on any transports. Nodes are
// linked by the kind of address to dial (link), not with Mesh.Link.
type mesh struct {
	*meshtest.Mesh
	t testing.TB
}

func newMesh(t testing.TB, seed uint64) *mesh {
	m := &mesh{t: t, Mesh: meshtest.New(t, seed, func(t testing.TB, i int) (transport.Transport, string) {
		return newLibp2p(t, i), ""
	})}
	t.Cleanup(m.Dump) // before the mesh closes the nodes
	return m
}

// newLibp2p returns a libp2p transport on loopback for node i; the node
// closes it.
func newLibp2p(t testing.TB, i int) *libp2p.Transport {
	t.Helper()
	tr, err := libp2p.New(libp2p.Config{Logger: meshtest.Logger(fmt.Sprint("tr", i))})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// add starts a node on the given transports (see meshtest.Mesh.AddOn) and
// returns its index.
func (m *mesh) add(trs []transport.Transport, opts ...node.Option) int {
	m.t.Helper()
	return m.AddOn(trs, "", opts...)
}

// hostPort selects, in addrOf, an address that is not a multiaddr: one of
// the QUIC transport's.
const hostPort = "host:port"

// addrOf returns the first address of node j that contains kind (or, for
// hostPort, that is not a multiaddr).
func (m *mesh) addrOf(j int, kind string) string {
	m.t.Helper()
	addrs := m.Node(j).Addrs()
	for _, a := range addrs {
		if kind == hostPort && !strings.HasPrefix(a, "/") || kind != hostPort && strings.Contains(a, kind) {
			return a
		}
	}
	m.t.Fatalf("node %d has no %q address in %q", j, kind, addrs)
	return ""
}

// link connects node i to node j at its first address of the given kind.
func (m *mesh) link(i, j int, kind string) {
	m.t.Helper()
	m.LinkAt(i, j, m.addrOf(j, kind))
}

// kinds alternates the libp2p transports from link to link.
var kinds = []string{"/quic-v1/", "/tcp/"}

// TestMeshLine sends 2,000 messages end to end along a line of 5 nodes.
func TestMeshLine(t *testing.T) {
	const size, count = 5, 2000
	m := newMesh(t, meshtest.Seed(t))
	for range size {
		m.Add(meshtest.Fast()...)
	}
	for i := range size - 1 {
		m.link(i, i+1, kinds[i%2])
	}
	m.WaitConverged(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := m.Collect(ctx, size-1)
	if err := m.SendAll(ctx, 0, m.Node(size-1).ID(), count, 100+m.Rand().IntN(900)); err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, time.Minute, "all messages", func() bool { return len(c.Got(0, false)) >= count })
	meshtest.CheckStream(t, "line", c.Got(0, false), nil, count)
	if n := m.FailureCount(); n != 0 {
		t.Fatalf("%d delivery failures on a lossless line", n)
	}
	t.Logf("middle node forwarded %d frames; sender retransmitted %d", m.Node(2).Stats().Forwarded, m.Node(0).Stats().Retransmits)
}

// TestMeshRingForwarderClosed closes the node that forwards a stream in the
// middle of it: the ring has another way round, and everything arrives.
func TestMeshRingForwarderClosed(t *testing.T) {
	const size, count = 6, 1000
	m := newMesh(t, meshtest.Seed(t))
	for range size {
		m.Add(meshtest.Fast()...)
	}
	for i := range size {
		m.link(i, (i+1)%size, kinds[i%2])
	}
	m.WaitConverged(10 * time.Second)
	src, dst := 0, 2
	if via := m.NextHop(src, dst); via != 1 {
		t.Fatalf("next hop from 0 to 2 is node %d, want 1 on the short side of the ring", via)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := m.Collect(ctx, dst)
	sent := make(chan error, 1)
	go func() { sent <- m.SendAll(ctx, src, m.Node(dst).ID(), count, 256) }()
	meshtest.WaitFor(t, 30*time.Second, "a third of the stream", func() bool { return len(c.Got(src, false)) >= count/3 })
	m.Close(1)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, time.Minute, "the whole stream", func() bool { return len(c.Got(src, false)) >= count })
	meshtest.CheckStream(t, "rerouted", c.Got(src, false), nil, count)
	if n := m.FailureCount(); n != 0 {
		t.Fatalf("%d delivery failures; the ring had another way round", n)
	}
	if d := m.Distance(src, dst); d != 4 {
		t.Fatalf("after node 1 left, node 2 is %d hops from node 0, want 4", d)
	}
}

// TestMeshBroadcast floods broadcasts from three origins over 6 nodes: each
// arrives once at every other node, in order per origin.
func TestMeshBroadcast(t *testing.T) {
	const size, count = 6, 100
	m := newMesh(t, meshtest.Seed(t))
	for range size {
		m.Add(meshtest.Fast()...)
	}
	// A ring with two chords, so that floods meet themselves.
	for i := range size {
		m.link(i, (i+1)%size, kinds[i%2])
	}
	m.link(0, 3, kinds[0])
	m.link(1, 4, kinds[1])
	m.WaitConverged(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cols := m.CollectAll(ctx)
	origins := []int{0, 2, 5}
	if err := m.SendFrom(ctx, origins, uuid.Nil, count, 64+m.Rand().IntN(64)); err != nil {
		t.Fatal(err)
	}
	m.CheckBroadcasts(cols, origins, count, time.Minute)
}
