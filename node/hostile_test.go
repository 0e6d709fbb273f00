package node_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/transport"
)

// evil is a hand-driven neighbour that speaks the wire protocol directly.
type evil struct {
	id    uuid.UUID
	epoch uint64
	edge  transport.Edge
}

func (e *evil) frame(typ message.Type, index int32, target uuid.UUID, ref uint32, body []byte) []byte {
	m := message.Message{
		UID:    message.UID{Node: e.id, Index: index},
		Header: message.Header{Type: typ, HopLimit: 8, Target: target, Epoch: e.epoch, Ref: ref},
		Body:   body,
	}
	return m.Encode()
}

// dialEvil opens an edge from a new transport at addr to the node at to,
// completes the handshake with hello, and returns the hand-driven neighbour.
func dialEvil(ctx context.Context, t *testing.T, m *mesh, addr, to string, hello message.Hello) *evil {
	t.Helper()
	tr, err := m.net.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	edge, err := tr.Dial(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	ev := &evil{id: uuid.New(), epoch: uint64(time.Now().UnixNano()), edge: edge}
	ev.send(t, ev.frame(message.TypeHello, 0, uuid.Nil, 0, hello.Append(nil)))
	welcome, err := edge.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if wm, err := message.Decode(welcome, 0); err != nil || wm.Header.Type != message.TypeWelcome {
		t.Fatalf("handshake: %v %v", wm.Header.Type, err)
	}
	return ev
}

func (e *evil) send(t *testing.T, f []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.edge.Send(ctx, f); err != nil {
		t.Fatal(err)
	}
}

func TestHostileFramesNeverReachTheApplication(t *testing.T) {
	m := newMesh(t, 2, meshtest.Seed(t), meshtest.Fast()...)
	m.Link(0, 1)
	m.WaitConverged(5 * time.Second)
	a, b := m.Node(0), m.Node(1)

	// A stream from a to b exists, so an ack "from b" can name an index
	// that a never sent.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cb := m.Collect(ctx, 1)
	if err := m.SendAll(ctx, 0, b.ID(), 3, 32); err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, 5*time.Second, "the first messages", func() bool { return len(cb.Got(0, false)) == 3 })

	ev := dialEvil(ctx, t, m, "evil", m.Addr(0), message.Hello{Addrs: []string{"evil"}})
	// Drain what a sends; the edge closes with the test.
	go func() {
		for {
			if _, err := ev.edge.Receive(context.Background()); err != nil {
				return
			}
		}
	}()

	var bState message.State
	for _, ni := range a.Topology().Nodes {
		if ni.ID == b.ID() {
			bState = message.State{Origin: b.ID(), Epoch: ni.Epoch, Seq: ni.Seq + 1<<40, Neighbors: ni.Neighbors, Addrs: ni.Addrs}
		}
	}
	good := ev.frame(message.TypeKeepalive, 0, uuid.Nil, 0, nil)
	badVersion := append([]byte(nil), good...)
	badVersion[0] = 99
	unknownType := append([]byte(nil), good...)
	unknownType[1] = 200
	fakeAckFromB := message.Message{
		UID:    message.UID{Node: b.ID(), Index: message.AckIndex},
		Header: message.Header{Type: message.TypeAck, HopLimit: 8, Target: a.ID(), Epoch: b.Epoch()},
		// a's first unicast stream of this life has stream epoch Epoch()+1.
		Body: message.Ack{StreamEpoch: a.Epoch() + 1, Cum: 5000}.Append(nil),
	}
	fromA := message.Message{
		UID:    message.UID{Node: a.ID(), Index: 7},
		Header: message.Header{Type: message.TypeMsg, HopLimit: 8, Target: a.ID(), Epoch: a.Epoch()},
		Body:   []byte("spoofed"),
	}
	cases := []struct {
		name  string
		frame []byte
	}{
		{"garbage", []byte("this is not a frame at all, not even close")},
		{"empty", nil},
		{"truncated", good[:message.HeaderSize-3]},
		{"wrong version", badVersion},
		{"unknown type", unknownType},
		{"ack for an index never sent", fakeAckFromB.Encode()},
		{"ack for a stream never opened", ev.frame(message.TypeAck, message.AckIndex, a.ID(), 0, message.Ack{StreamEpoch: a.Epoch(), Cum: 1}.Append(nil))},
		{"absurd sequence number", ev.frame(message.TypeNetworkState, 0, uuid.Nil, 0, message.StateList{bState}.Append(nil))},
		{"state body that does not parse", ev.frame(message.TypeNetworkState, 0, uuid.Nil, 0, []byte{0, 5, 1, 2})},
		{"data claiming to come from the node itself", fromA.Encode()},
		{"welcome to the node that accepted", ev.frame(message.TypeWelcome, 0, uuid.Nil, 0, message.Hello{}.Append(nil))},
	}
	ca := m.Collect(ctx, 0)
	for _, c := range cases {
		before := a.Stats().Hostile
		ev.send(t, c.frame)
		meshtest.WaitFor(t, 5*time.Second, c.name+" to be counted", func() bool { return a.Stats().Hostile > before })
	}
	// b's record survived the absurd sequence number: routes still work.
	if err := m.SendAll(ctx, 1, a.ID(), 50, 32); err != nil {
		t.Fatal(err)
	}
	if err := m.SendAll(ctx, 0, b.ID(), 50, 32); err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, 10*time.Second, "traffic after the attack", func() bool {
		return len(ca.Got(1, false)) == 50 && len(cb.Got(0, false)) == 3+50
	})
	meshtest.CheckStream(t, "b to a", ca.Got(1, false), nil, 50)
	nStreams, wrong := ca.Streams(), ca.WrongSender()
	if nStreams != 1 || wrong != 0 {
		t.Fatalf("the application saw %d streams (%d from unexpected senders), want only b's", nStreams, wrong)
	}
	if a.Stats().Hostile < uint64(len(cases)) {
		t.Fatalf("hostile count %d < %d cases", a.Stats().Hostile, len(cases))
	}
}

func TestAPIErrors(t *testing.T) {
	m := newMesh(t, 2, meshtest.Seed(t), append(meshtest.Fast(), node.WithMaxBody(1024), node.WithQueues(16, 1))...)
	a := m.Node(0)
	ctx := context.Background()
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"send to self", a.Send(ctx, a.ID(), []byte("x")), node.ErrSelf},
		{"send to nil", a.Send(ctx, uuid.Nil, []byte("x")), node.ErrNilTarget},
		{"body too large", a.Send(ctx, m.Node(1).ID(), make([]byte, 1025)), node.ErrTooLarge},
		{"broadcast too large", a.Broadcast(ctx, make([]byte, 1025)), node.ErrTooLarge},
		{"multicast including self", a.Multicast(ctx, []uuid.UUID{m.Node(1).ID(), a.ID()}, nil), node.ErrSelf},
		{"connect to nowhere", a.Connect(ctx, "nowhere"), transport.ErrUnreachable},
		{"connect to self", a.Connect(ctx, m.Addr(0)), node.ErrRejected},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !errors.Is(c.err, c.want) {
				t.Fatalf("got %v, want %v", c.err, c.want)
			}
		})
	}
	if _, err := node.New(nil); !errors.Is(err, node.ErrInvalidOption) {
		t.Fatalf("New(nil): %v", err)
	}
}

func TestSendBlocksThenHonoursContext(t *testing.T) {
	// An unreachable destination: the window (10) and backlog (1) fill, then
	// Send blocks until its context ends, and the message it gave up on is
	// never sent.
	m := newMesh(t, 1, meshtest.Seed(t), append(meshtest.Fast(), node.WithQueues(16, 1))...)
	a := m.Node(0)
	ghost := uuid.New()
	for i := range 11 {
		if err := a.Send(context.Background(), ghost, meshtest.Body(0, uint64(i), 16)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := a.Send(ctx, ghost, meshtest.Body(0, 11, 16)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send on a full stream: %v, want deadline exceeded", err)
	}
	m.Close(0) // and wait until its events are recorded
	if err := a.Send(context.Background(), ghost, []byte("x")); !errors.Is(err, node.ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	if _, err := a.Receive(context.Background()); !errors.Is(err, node.ErrClosed) {
		t.Fatalf("Receive after Close: %v", err)
	}
	// Close reported the 11 accepted messages as failed, and not the 12th.
	if got := len(m.Failed(0, ghost, false)); got != 11 {
		t.Fatalf("%d failures reported at close, want 11", got)
	}
}

func TestGracefulCloseIsSeenAtOnce(t *testing.T) {
	// Keepalives are slow here, so only the goodbye can explain a quick
	// NeighborDown.
	m := newMesh(t, 2, meshtest.Seed(t), node.WithKeepalive(time.Hour, 3), node.WithMinConnections(0))
	m.Link(0, 1)
	m.WaitConverged(5 * time.Second)
	m.Close(1)
	meshtest.WaitFor(t, 5*time.Second, "node 0 to see node 1 leave", func() bool { return len(m.Node(0).Neighbors()) == 0 })
	if st := m.Node(0).Stats(); st.NeighborsDown != 1 {
		t.Fatalf("NeighborsDown = %d", st.NeighborsDown)
	}
}
