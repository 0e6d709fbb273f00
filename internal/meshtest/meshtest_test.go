package meshtest_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newMesh(t *testing.T, size int) *meshtest.Mesh {
	seed := meshtest.Seed(t)
	net := memory.NewNetwork(memory.Config{Seed: int64(seed)})
	t.Cleanup(func() { _ = net.Close() })
	m := meshtest.New(t, seed, func(t testing.TB, i int) (transport.Transport, string) {
		tr, err := net.Listen(fmt.Sprint("n", i))
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

// TestMesh drives every part of the harness over a lossless line of three.
func TestMesh(t *testing.T) {
	m := newMesh(t, 3)
	m.Link(0, 1)
	m.Link(1, 2)
	m.WaitConverged(5 * time.Second)
	if d := m.Distance(0, 2); d != 2 {
		t.Fatalf("distance 0 -> 2 is %d, want 2", d)
	}
	if h := m.NextHop(0, 2); h != 1 {
		t.Fatalf("next hop 0 -> 2 is %d, want 1", h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cols := m.CollectAll(ctx)
	c1, c2 := cols[1], cols[2]
	if err := m.SendAll(ctx, 0, m.Node(2).ID(), 50, 32); err != nil {
		t.Fatal(err)
	}
	if err := m.SendFrom(ctx, []int{2}, uuid.Nil, 20, 100); err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, 10*time.Second, "the messages", func() bool {
		return len(c2.Got(0, false)) == 50 && len(c1.Got(2, true)) == 20
	})
	meshtest.CheckStream(t, "unicast 0 -> 2", c2.Got(0, false), nil, 50)
	meshtest.CheckStream(t, "broadcast 2 -> 1", c1.Got(2, true), nil, 20)
	if c1.Total() != 20 || c1.Streams() != 1 || c2.Streams() != 1 || c1.WrongSender()+c2.WrongSender() != 0 {
		t.Fatalf("node 1: %d messages in %d streams, node 2: %d streams; %d+%d from the wrong sender",
			c1.Total(), c1.Streams(), c2.Streams(), c1.WrongSender(), c2.WrongSender())
	}

	// Node 2 leaves: it no longer counts, and messages to it fail.
	m.Close(2)
	if m.Alive(2) || !m.Alive(1) {
		t.Fatal("Close(2) did not mark node 2, and only it, down")
	}
	m.WaitConverged(5 * time.Second)
	meshtest.WaitFor(t, 5*time.Second, "node 0 to lose its route to node 2", func() bool { return m.Distance(0, 2) < 0 })
	dst := m.Node(2).ID()
	if err := m.SendAll(ctx, 0, dst, 5, 16); err != nil {
		t.Fatal(err)
	}
	m.Close(0) // reports the 5 unconfirmed messages failed, and waits for the events
	failed := m.Failed(0, dst, false)
	meshtest.CheckStream(t, "to the node that left", nil, failed, 5)
	// Node 2 may have left with broadcasts not yet acknowledged.
	n0, n2 := len(m.Failures(0)), len(m.Failures(2))
	if n0 != 5 || m.FailureCount() != n0+n2 {
		t.Fatalf("%d failures, %d from node 0 (want 5) and %d from node 2", m.FailureCount(), n0, n2)
	}
}

func TestBody(t *testing.T) {
	b := meshtest.Body(7, 1<<40+3, 100)
	from, seq, ok := meshtest.ParseBody(b)
	if len(b) != 100 || from != 7 || seq != 1<<40+3 || !ok {
		t.Fatalf("ParseBody(Body(7, 2^40+3, 100)) = %d, %d, %v (length %d)", from, seq, ok, len(b))
	}
	if len(meshtest.Body(1, 2, 0)) != 16 {
		t.Fatal("Body shorter than its header")
	}
	if _, _, ok := meshtest.ParseBody([]byte("short")); ok {
		t.Fatal("ParseBody accepted 5 bytes")
	}
}

// fatal records whether a check failed the test, and how.
type fatal struct {
	testing.TB
	msg string
}

func (f *fatal) Helper() {}

func (f *fatal) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// check runs CheckStream on a recorder and returns its failure, if any.
func check(t *testing.T, got []uint64, failed map[uint64]bool, sent int) string {
	f := &fatal{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		meshtest.CheckStream(f, "s", got, failed, sent)
	}()
	<-done
	return f.msg
}

func TestCheckStream(t *testing.T) {
	cases := []struct {
		name   string
		got    []uint64
		failed map[uint64]bool
		sent   int
		want   string // in the failure; empty if the stream is fine
	}{
		{"exact", []uint64{0, 1, 2}, nil, 3, ""},
		{"nothing sent", nil, nil, 0, ""},
		{"gap reported failed", []uint64{0, 2}, map[uint64]bool{1: true}, 3, ""},
		{"tail reported failed", []uint64{0}, map[uint64]bool{1: true, 2: true}, 3, ""},
		{"delivered and reported failed", []uint64{0, 1}, map[uint64]bool{1: true}, 2, ""},
		{"lost", []uint64{0, 2}, nil, 3, "message 1 neither delivered nor reported failed"},
		{"missing tail", []uint64{0, 1}, nil, 3, "message 2 neither"},
		{"twice", []uint64{0, 1, 1, 2}, nil, 3, "1 delivered twice"},
		{"reordered", []uint64{0, 2, 1}, nil, 3, "1 delivered after 2"},
		{"never sent", []uint64{0, 1, 2, 3}, nil, 3, "delivered 3, never sent"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := check(t, c.got, c.failed, c.sent)
			if c.want == "" && msg != "" || !strings.Contains(msg, c.want) {
				t.Fatalf("CheckStream(%v, failed %v, sent %d) failed with %q, want %q", c.got, c.failed, c.sent, msg, c.want)
			}
		})
	}
}

func TestLinkRandom(t *testing.T) {
	m := newMesh(t, 8)
	m.LinkRandom(4)
	m.WaitConverged(5 * time.Second)
	for i, nd := range m.Nodes() {
		if len(nd.Neighbors()) == 0 {
			t.Fatalf("node %d has no neighbour", i)
		}
	}
}
