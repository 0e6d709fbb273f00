package libp2p_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/libp2p"
	"github.com/distrirender/distrirender/transport/quic"
)

func (m *mesh) newQUIC() *quic.Transport {
	m.t.Helper()
	tr, err := quic.Listen("127.0.0.1:0", quic.Config{})
	if err != nil {
		m.t.Fatal(err)
	}
	return tr
}

// newLibp2p returns a libp2p transport for the next node.
func (m *mesh) newLibp2p() *libp2p.Transport {
	m.t.Helper()
	return newLibp2p(m.t, m.Len())
}

// TestMixedMesh joins QUIC-only nodes and libp2p-only nodes through two
// bridge nodes that hold both transports. Unicast, multicast and broadcast
// streams cross the bridges; the bridge that carries the unicast stream
// leaves in the middle of it, and every stream still arrives complete, in
// order, exactly once, over the other bridge.
//
//	Q0 ─┬─ B0 ─┬─ L0      Q0─Q1 and L0─L1 are linked too:
//	Q1 ─┴─ B1 ─┴─ L1      each side reaches the other only through a bridge.
func TestMixedMesh(t *testing.T) {
	m := newMesh(t, meshtest.Seed(t))
	q0 := m.add([]transport.Transport{m.newQUIC()}, meshtest.Fast()...)
	q1 := m.add([]transport.Transport{m.newQUIC()}, meshtest.Fast()...)
	l0 := m.add([]transport.Transport{m.newLibp2p()}, meshtest.Fast()...)
	l1 := m.add([]transport.Transport{m.newLibp2p()}, meshtest.Fast()...)
	b0 := m.add([]transport.Transport{m.newQUIC(), m.newLibp2p()}, meshtest.Fast()...)
	b1 := m.add([]transport.Transport{m.newLibp2p(), m.newQUIC()}, meshtest.Fast()...) // other order
	names := map[int]string{q0: "Q0", q1: "Q1", l0: "L0", l1: "L1", b0: "B0", b1: "B1"}

	for _, b := range []int{b0, b1} {
		// Each bridge dials one side and is dialled by the other, so both
		// Connect paths cross transports.
		m.link(b, q0, hostPort)
		m.link(q1, b, hostPort)
		m.link(l0, b, kinds[b%2])
		m.link(b, l1, kinds[(b+1)%2])
	}
	m.link(q0, q1, hostPort)
	m.link(l1, l0, "/tcp/")
	m.WaitConverged(10 * time.Second)
	via := m.NextHop(q0, l0)
	if via != b0 && via != b1 {
		t.Fatalf("Q0 reaches L0 through node %d, want a bridge", via)
	}
	other := b0 + b1 - via
	t.Logf("Q0 -> L0 goes through %s; %s will leave mid-stream", names[via], names[via])

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cols := map[int]*meshtest.Collector{}
	for _, i := range []int{q0, q1, l0, l1, other} {
		cols[i] = m.Collect(ctx, i)
	}
	const uni, multi, bcast = 2000, 1500, 1500
	type flow struct {
		name string
		run  func() error
	}
	flows := []flow{
		{"unicast Q0->L0", func() error { return m.SendAll(ctx, q0, m.Node(l0).ID(), uni, 300) }},
		{"unicast L1->Q1", func() error { return m.SendAll(ctx, l1, m.Node(q1).ID(), uni, 300) }},
		{"multicast Q1->{L0,L1}", func() error {
			dsts := []uuid.UUID{m.Node(l0).ID(), m.Node(l1).ID()}
			for s := range multi {
				if err := m.Node(q1).Multicast(ctx, dsts, meshtest.Body(q1, uint64(s), 200)); err != nil {
					return fmt.Errorf("multicast %d: %w", s, err)
				}
			}
			return nil
		}},
		{"broadcast L0", func() error { return m.SendAll(ctx, l0, uuid.Nil, bcast, 100) }},
	}
	errs := make(chan error, len(flows))
	for _, f := range flows {
		go func() {
			if err := f.run(); err != nil {
				errs <- fmt.Errorf("%s: %w", f.name, err)
				return
			}
			errs <- nil
		}()
	}
	meshtest.WaitFor(t, 30*time.Second, "a third of Q0's stream", func() bool { return len(cols[l0].Got(q0, false)) >= uni/3 })
	at := len(cols[l0].Got(q0, false))
	m.Close(via)
	t.Logf("%s left when L0 had %d of Q0's %d messages, Q1 %d of L1's, L0 %d of Q1's multicast, L1 %d of L0's broadcast",
		names[via], at, uni, len(cols[q1].Got(l1, false)), len(cols[l0].Got(q1, false)), len(cols[l1].Got(l0, true)))
	if at >= uni {
		t.Fatalf("Q0's stream was complete before %s left: nothing tested", names[via])
	}
	for range flows {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}

	type want struct {
		at, from int
		bcast    bool
		count    int
	}
	wants := []want{
		{l0, q0, false, uni},
		{q1, l1, false, uni},
		{l0, q1, false, multi},
		{l1, q1, false, multi},
	}
	for _, r := range []int{q0, q1, l1, other} {
		wants = append(wants, want{r, l0, true, bcast})
	}
	for _, w := range wants {
		what := fmt.Sprintf("%s -> %s (broadcast %v)", names[w.from], names[w.at], w.bcast)
		meshtest.WaitFor(t, 30*time.Second, what, func() bool { return len(cols[w.at].Got(w.from, w.bcast)) >= w.count })
		meshtest.CheckStream(t, what, cols[w.at].Got(w.from, w.bcast), nil, w.count)
	}
	// The only failures allowed are deliveries to the bridge that left.
	for i := range m.Len() {
		for _, e := range m.Failures(i) {
			if e.Peer != m.Node(via).ID() {
				t.Errorf("%s: delivery to %s failed: %v", names[i], e.Peer.String()[:8], e.Err)
			}
		}
	}
	if hop := m.NextHop(q0, l0); hop != other {
		t.Errorf("after %s left, Q0 reaches L0 through node %d, want %s", names[via], hop, names[other])
	}
	for _, i := range []int{q0, q1, l0, l1} {
		if slices.Contains(m.Node(i).Neighbors(), m.Node(via).ID()) {
			t.Errorf("%s still lists the bridge that left as a neighbour", names[i])
		}
	}
}
