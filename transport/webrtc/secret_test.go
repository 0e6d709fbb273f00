package webrtc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/node"
)

// A closed cluster over WebRTC data channels: members with the secret link
// and route; a node without it is refused on both sides, although the
// signalling server connected it.
func TestClosedClusterOverWebRTC(t *testing.T) {
	secret := []byte("a webrtc cluster's secret, 32 b.")
	m := newMesh(t, 0)
	for i := range 3 {
		m.Add(meshtest.Fast(meshtest.Member(secret, i)...)...)
	}
	outsider := m.Add(meshtest.Fast()...)
	m.Link(1, 0)
	m.Link(2, 1)
	meshtest.WaitFor(t, 20*time.Second, "the members to route to each other", func() bool {
		d, ok := m.Node(0).Topology().Node(m.Node(2).ID())
		return ok && d.Distance == 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Node(outsider).Connect(ctx, m.Addr(0)); !errors.Is(err, node.ErrAuth) {
		t.Fatalf("outsider: %v, want ErrAuth", err)
	}
	meshtest.WaitFor(t, 5*time.Second, "the refusal counted", func() bool { return m.Node(0).Stats().AuthFailures >= 1 })
}
