package webrtc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/webrtc"
)

// The node's own mesh scenarios, over WebRTC on the IPv4 loopback, signalled
// through one embedded PeerServer.

// newMesh returns a mesh whose nodes each get a WebRTC transport registered
// on one embedded signalling server, under the peer ID "node<i>".
func newMesh(t *testing.T, size int) *meshtest.Mesh {
	t.Helper()
	url := signalServer(t, webrtc.SignalConfig{ExpireTimeout: time.Second})
	m := meshtest.New(t, meshtest.Seed(t), func(t testing.TB, i int) (transport.Transport, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		tr, err := webrtc.New(ctx, loopback4(webrtc.Config{
			Server: url,
			ID:     fmt.Sprintf("node%d", i),
			Logger: meshtest.Logger(fmt.Sprint("tr", i)),
		}))
		if err != nil {
			t.Fatal(err)
		}
		return tr, tr.Addrs()[0]
	})
	for range size {
		m.Add(meshtest.Fast()...)
	}
	return m
}

// TestMeshUnicastAndBroadcast links five nodes in a ring with a chord, then
// streams unicast messages end to end and floods broadcasts from two
// origins: every message arrives exactly once, in order per sender.
func TestMeshUnicastAndBroadcast(t *testing.T) {
	const size, unicasts, broadcasts = 5, 500, 100
	m := newMesh(t, size)
	for i := range size {
		m.Link(i, (i+1)%size)
	}
	m.Link(0, 2)
	m.WaitConverged(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cols := m.CollectAll(ctx)

	// Unicast 0 -> 3 (two hops either way round) while 1 and 4 broadcast.
	start := time.Now()
	sent := make(chan error, 1)
	go func() { sent <- m.SendAll(ctx, 0, m.Node(3).ID(), unicasts, 200) }()
	origins := []int{1, 4}
	if err := m.SendFrom(ctx, origins, uuid.Nil, broadcasts, 100); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, 30*time.Second, "the unicast stream", func() bool { return len(cols[3].Got(0, false)) >= unicasts })
	meshtest.CheckStream(t, "unicast 0 -> 3", cols[3].Got(0, false), nil, unicasts)
	m.CheckBroadcasts(cols, origins, broadcasts, 30*time.Second)
	t.Logf("%d unicasts and %d broadcasts in %v; sender retransmitted %d",
		unicasts, len(origins)*broadcasts, time.Since(start).Round(time.Millisecond), m.Node(0).Stats().Retransmits)
}

// TestMeshNodeLeaves closes the node that forwards a stream in the middle
// of it: the ring reroutes, and everything arrives.
func TestMeshNodeLeaves(t *testing.T) {
	const size, count = 4, 400
	m := newMesh(t, size)
	for i := range size {
		m.Link(i, (i+1)%size)
	}
	m.WaitConverged(10 * time.Second)
	src, dst := 0, 2
	victim := m.NextHop(src, dst)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := m.Collect(ctx, dst)
	sent := make(chan error, 1)
	go func() { sent <- m.SendAll(ctx, src, m.Node(dst).ID(), count, 256) }()
	meshtest.WaitFor(t, 30*time.Second, "a third of the stream", func() bool { return len(c.Got(src, false)) >= count/3 })
	m.Close(victim)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, 30*time.Second, "the whole stream", func() bool { return len(c.Got(src, false)) >= count })
	meshtest.CheckStream(t, "rerouted", c.Got(src, false), nil, count)
	if n := m.FailureCount(); n != 0 {
		t.Fatalf("%d delivery failures; the ring had another way round", n)
	}
}
