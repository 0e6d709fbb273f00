package core

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func testCore(id byte, mut func(*Config)) *Core {
	cfg := Defaults()
	cfg.ID = uuid.UUID{id}
	cfg.Epoch = uint64(id)
	cfg.Addrs = []string{string('a' + rune(id))}
	cfg.MinConns = 0
	cfg.Rand = rand.New(rand.NewPCG(1, 2))
	if mut != nil {
		mut(&cfg)
	}
	c := New(cfg, t0)
	c.SetRoom(t0, 1000)
	return c
}

// pair joins a (dialler, link 1) and b (acceptor, link 2) and delivers
// what they write to each other until both are quiet; it returns every
// frame exchanged.
func pair(t *testing.T, a, b *Core) [][]byte {
	t.Helper()
	hello, _ := message.DecodeHello(mustDecode(t, a.HelloFrame()).Body)
	if adm := b.Admit(t0, 2, a.ID(), a.Epoch(), hello); !adm.Accepted {
		t.Fatalf("admit: %+v", adm)
	}
	frames := framesOf(b.Ready()) // the welcome first
	b.Advance()
	b.WriteDone(t0, 2)
	m := mustDecode(t, frames[0])
	h, _ := message.DecodeHello(m.Body)
	if err := a.Register(t0, 1, b.ID(), b.Epoch(), h, "b"); err != nil {
		t.Fatal(err)
	}
	return append(frames, shuttle(t, a, b, frames[1:])...)
}

// shuttle delivers frames from b to a first, then both ways until quiet,
// and returns the frames it delivered.
func shuttle(t *testing.T, a, b *Core, toA [][]byte) [][]byte {
	t.Helper()
	var all [][]byte
	for _, f := range toA {
		a.Frame(t0, 1, mustDecode(t, f), f)
	}
	for range 100 {
		ra, rb := a.Ready(), b.Ready()
		quiet := len(ra.Writes) == 0 && len(rb.Writes) == 0
		fa, fb := framesOf(ra), framesOf(rb)
		a.Advance()
		b.Advance()
		a.WriteDone(t0, 1)
		b.WriteDone(t0, 2)
		for _, f := range fa {
			b.Frame(t0, 2, mustDecode(t, f), f)
		}
		for _, f := range fb {
			a.Frame(t0, 1, mustDecode(t, f), f)
		}
		all = append(append(all, fa...), fb...)
		if quiet {
			return all
		}
	}
	t.Fatal("never quiet")
	return nil
}

func framesOf(rd Ready) [][]byte {
	var out [][]byte
	for _, w := range rd.Writes {
		for _, f := range w.Frames {
			out = append(out, append([]byte(nil), f...))
		}
	}
	return out
}

func mustDecode(t testing.TB, f []byte) message.Message {
	t.Helper()
	m, err := message.Decode(f, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sendReq(id uint64, to uuid.UUID, body string) *SendRequest {
	f := make([]byte, message.HeaderSize+len(body))
	copy(f[message.HeaderSize:], body)
	return &SendRequest{ID: id, Dsts: []uuid.UUID{to}, Frames: [][]byte{f}}
}

func TestOneWritePerEdgeAtATime(t *testing.T) {
	a, b := testCore(1, nil), testCore(2, nil)
	pair(t, a, b)
	for i := range 3 {
		a.Send(t0, sendReq(uint64(i+1), b.ID(), "x"))
	}
	rd := a.Ready()
	if len(rd.Writes) != 1 || len(rd.Writes[0].Frames) != 3 || len(rd.Answers) != 3 {
		t.Fatalf("first Ready: %d writes, %d answers", len(rd.Writes), len(rd.Answers))
	}
	a.Advance()
	a.Send(t0, sendReq(4, b.ID(), "y"))
	if rd := a.Ready(); len(rd.Writes) != 0 {
		t.Fatal("a second Write before WriteDone")
	}
	a.Advance()
	a.WriteDone(t0, 1)
	if rd := a.Ready(); len(rd.Writes) != 1 || len(rd.Writes[0].Frames) != 1 {
		t.Fatalf("after WriteDone: %+v", rd.Writes)
	}
}

func TestOneAckPerBatchAndRoom(t *testing.T) {
	cases := []struct {
		name      string
		room      int
		delivered int
		blocked   bool
	}{
		{"room for all", 100, 5, false},
		{"room for two", 2, 2, true},
		{"no room", 0, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := testCore(1, nil), testCore(2, nil)
			pair(t, a, b)
			for i := range 5 {
				a.Send(t0, sendReq(uint64(i+1), b.ID(), "m"))
			}
			data := framesOf(a.Ready())
			a.Advance()
			b.SetRoom(t0, c.room)
			for _, f := range data {
				b.Frame(t0, 2, mustDecode(t, f), f)
			}
			rd := b.Ready()
			acks := 0
			for _, f := range framesOf(rd) {
				if message.PeekType(f) == message.TypeAck {
					acks++
				}
			}
			if len(rd.Deliveries) != c.delivered || b.Blocked() != c.blocked || acks != 1 {
				t.Fatalf("%d delivered, blocked %v, %d acks; want %d, %v, 1", len(rd.Deliveries), b.Blocked(), acks, c.delivered, c.blocked)
			}
			b.Advance()
			b.WriteDone(t0, 2)
			b.SetRoom(t0, 100)
			if rd := b.Ready(); len(rd.Deliveries) != 5-c.delivered || b.Blocked() {
				t.Fatalf("after room: %d more delivered, blocked %v", len(rd.Deliveries), b.Blocked())
			}
		})
	}
}

func TestCancelParkedSend(t *testing.T) {
	a := testCore(1, func(c *Config) { c.Backlog = 1 })
	dst := uuid.UUID{9} // unknown: the window fills, the backlog too
	var answers []Answer
	for i := range 13 {
		a.Send(t0, sendReq(uint64(i+1), dst, "x"))
		answers = append(answers, a.Ready().Answers...)
		a.Advance()
	}
	if len(answers) != 11 { // a window of 10 and a backlog of 1
		t.Fatalf("%d answers, want 11", len(answers))
	}
	a.Cancel(t0, 12)
	a.Cancel(t0, 1) // answered already: nothing
	rd := a.Ready()
	if len(rd.Answers) != 1 || rd.Answers[0].ID != 12 || !errors.Is(rd.Answers[0].Err, ErrCancelled) {
		t.Fatalf("answers %+v", rd.Answers)
	}
	a.Advance()
	a.Shutdown(t0)
	if rd := a.Ready(); len(rd.Answers) != 1 || rd.Answers[0].ID != 13 || !errors.Is(rd.Answers[0].Err, ErrClosed) {
		t.Fatalf("shutdown answers %+v", rd.Answers)
	}
}

func TestRemoteInputIsCounted(t *testing.T) {
	a, b := testCore(1, nil), testCore(2, nil)
	pair(t, a, b)
	ghost := func(typ message.Type, from uuid.UUID, body []byte) []byte {
		m := &message.Message{UID: message.UID{Node: from}, Header: message.Header{Type: typ, HopLimit: 1, Target: a.ID()}, Body: body}
		return m.Encode()
	}
	cases := []struct {
		name    string
		link    LinkID
		frame   []byte
		hostile uint64
	}{
		{"frame on an unknown edge", 99, ghost(message.TypeKeepalive, b.ID(), nil), 0},
		{"control frame from another ID", 1, ghost(message.TypeKeepalive, uuid.UUID{7}, nil), 1},
		{"data claiming to come from this node", 1, ghost(message.TypeMsg, a.ID(), []byte("x")), 1},
		{"malformed network_state", 1, ghost(message.TypeNetworkState, b.ID(), []byte{0}), 1},
		{"malformed digest", 1, ghost(message.TypeNetworkStateDigest, b.ID(), []byte{1, 2, 3}), 1},
		{"hello from the node this one dialled", 1, ghost(message.TypeHello, b.ID(), nil), 1},
		{"a duplicated welcome", 1, ghost(message.TypeWelcome, b.ID(), nil), 0},
	}
	for _, c := range cases {
		before := a.Stats().Hostile
		a.Frame(t0, c.link, mustDecode(t, c.frame), c.frame)
		if got := a.Stats().Hostile - before; got != c.hostile {
			t.Errorf("%s: %d counted, want %d", c.name, got, c.hostile)
		}
		a.Ready()
		a.Advance()
	}
	if len(a.Neighbors()) != 1 {
		t.Fatal("hostile input cost the neighbour")
	}
}

// records counts the link-state records in network_state frames.
func records(t *testing.T, frames [][]byte) int {
	n := 0
	for _, f := range frames {
		if message.PeekType(f) == message.TypeNetworkState {
			sl, err := message.DecodeStateList(mustDecode(t, f).Body)
			if err != nil {
				t.Fatal(err)
			}
			n += len(sl)
		}
	}
	return n
}

// Two nodes that agree open a new edge: the digests show they differ only
// in their own two records, which are all that is sent. Version 1 of the
// protocol sent both whole databases.
func TestDigestSendsOnlyWhatDiffers(t *testing.T) {
	a, b := testCore(1, nil), testCore(2, nil)
	// Give both the same third-party records: a mesh they both know.
	for i := range 20 {
		s := message.State{Origin: uuid.UUID{100 + byte(i)}, Epoch: 1, Seq: 1}
		for _, c := range []*Core{a, b} {
			c.rt.ApplyState(t0, s)
		}
	}
	if got := records(t, pair(t, a, b)); got < 2 {
		t.Fatalf("first edge: %d records", got)
	}
	a.EdgeFailed(t0, 1, errors.New("cut"))
	b.EdgeFailed(t0, 2, errors.New("cut"))
	a.Ready()
	a.Advance()
	b.Ready()
	b.Advance()
	if got := records(t, pair(t, a, b)); got != 2 {
		t.Fatalf("an edge between nodes that agree sent %d records, want their own 2", got)
	}
}
