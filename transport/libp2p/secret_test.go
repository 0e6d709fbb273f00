package libp2p_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/node"
)

// A closed cluster over libp2p (QUIC and TCP): members with the secret
// link and route; a node without it is refused on both sides.
func TestClosedClusterOverLibp2p(t *testing.T) {
	secret := []byte("a libp2p cluster's secret, 32 b.")
	m := newMesh(t, meshtest.Seed(t))
	for i := range 3 {
		m.Add(meshtest.Fast(meshtest.Member(secret, i)...)...)
	}
	outsider := m.Add(meshtest.Fast()...)
	m.link(1, 0, kinds[0])
	m.link(2, 1, kinds[1])
	meshtest.WaitFor(t, 10*time.Second, "the members to route to each other", func() bool {
		d, ok := m.Node(0).Topology().Node(m.Node(2).ID())
		return ok && d.Distance == 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, kind := range kinds {
		if err := m.Node(outsider).Connect(ctx, m.addrOf(0, kind)); !errors.Is(err, node.ErrAuth) {
			t.Fatalf("outsider over %s: %v, want ErrAuth", kind, err)
		}
	}
	meshtest.WaitFor(t, 5*time.Second, "the refusals counted", func() bool { return m.Node(0).Stats().AuthFailures >= 2 })
}
