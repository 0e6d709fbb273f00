package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/reliability"
)

// Send's fast path returns before the loop has seen the message: a node
// closed right after a burst of Sends still delivers or reports every one
// of them, in order, and Send after Close fails.
func TestCloseRightAfterSendsKeepsThePromise(t *testing.T) {
	cases := []struct {
		name   string
		window int
	}{
		{"window 10", 10},
		{"window 256", 256},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			const count = 2000
			m := newMesh(t, 2, meshtest.Seed(t), meshtest.Fast(
				node.WithReliability(reliability.Config{Window: c.window, Modulo: 10_000}))...)
			m.Link(0, 1)
			m.WaitConverged(10 * time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			col := m.Collect(ctx, 1)
			dst := m.Node(1).ID()
			if err := m.SendAll(ctx, 0, dst, count, 64); err != nil {
				t.Fatal(err)
			}
			m.Close(0)
			if err := m.Node(0).Send(ctx, dst, []byte("late")); err == nil {
				t.Fatal("Send after Close succeeded")
			}
			got := func() []uint64 { return col.Got(0, false) }
			failed := func() map[uint64]bool { return m.Failed(0, dst, false) }
			meshtest.Settled(t, 30*time.Second, "stream", got, failed, count)
			d, f := meshtest.CheckStream(t, "stream", got(), failed(), count)
			t.Logf("%d delivered, %d reported failed at close", d, f)
		})
	}
}
