package core

import (
	"testing"

	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/reliability"
)

// join makes a (link la) and b (link lb) neighbours and runs the two until
// they are quiet, as pair does for links 1 and 2.
func join(t *testing.T, a, b *Core, la, lb LinkID) {
	t.Helper()
	hello, _ := message.DecodeHello(mustDecode(t, a.HelloFrame()).Body)
	if adm := b.Admit(t0, lb, a.ID(), a.Epoch(), hello); !adm.Accepted {
		t.Fatalf("admit: %+v", adm)
	}
	welcome := mustDecode(t, framesOf(b.Ready())[0])
	h, _ := message.DecodeHello(welcome.Body)
	if err := a.Register(t0, la, b.ID(), b.Epoch(), h, "x"); err != nil {
		t.Fatal(err)
	}
}

// hop is one direction of an edge between two cores of a line.
type hop struct {
	from     *Core
	fromLink LinkID
	to       *Core
	toLink   LinkID
}

// quiesce carries every Write across the edges until no core writes.
func quiesce(t *testing.T, hops []hop) {
	t.Helper()
	for range 1000 {
		moved := false
		pending := map[*Core]Ready{}
		for _, h := range hops {
			if _, ok := pending[h.from]; !ok {
				pending[h.from] = h.from.Ready()
			}
		}
		type delivery struct {
			h hop
			f []byte
		}
		var out []delivery
		for _, h := range hops {
			for _, w := range pending[h.from].Writes {
				if w.Link != h.fromLink {
					continue
				}
				for _, f := range w.Frames {
					out = append(out, delivery{h, append([]byte(nil), f...)})
				}
			}
		}
		for c := range pending {
			c.Advance()
		}
		for _, h := range hops {
			h.from.WriteDone(t0, h.fromLink)
		}
		for _, d := range out {
			moved = true
			d.h.to.Frame(t0, d.h.toLink, mustDecode(t, d.f), d.f)
		}
		if !moved {
			return
		}
	}
	t.Fatal("never quiet")
}

// The steady state allocates nothing in the core: a forwarding node edits
// and queues the frame it read, a sender encodes the header in place into
// the buffer of the send request (the driver's one allocation per message),
// and the batch of each Write is reused.
func TestSteadyStateAllocatesNothing(t *testing.T) {
	wide := func(c *Config) {
		c.Rel = reliability.Config{Window: 1024, InitialWindow: 1024, Modulo: 10_000}.WithDefaults()
		c.Backlog = 4096
		c.ForwardBuf = 4096
		c.ReuseFrom = 16 << 10 // as a node sets it: small frames are not tracked
	}
	a, b, c := testCore(1, wide), testCore(2, wide), testCore(3, wide)
	join(t, a, b, 1, 2)
	join(t, b, c, 3, 4)
	line := []hop{{a, 1, b, 2}, {b, 2, a, 1}, {b, 3, c, 4}, {c, 4, b, 3}}
	quiesce(t, line)
	if _, ok := a.Routes().NextHop(c.ID()); !ok {
		t.Fatal("a has no route to c")
	}

	// Every slot of the window's ring used once, and acknowledged: the
	// ring keeps what it allocated for its copies.
	c.SetRoom(t0, 1<<20)
	for i := range 1024 {
		a.Send(t0, sendReq(uint64(10_000+i), c.ID(), "warm-up"))
	}
	quiesce(t, line)
	if d := c.Stats().Delivered; d != 1024 {
		t.Fatalf("warm-up: %d of 1024 delivered", d)
	}

	const runs = 900
	reqs := make([]*SendRequest, runs+1)
	for i := range reqs {
		reqs[i] = sendReq(uint64(100+i), c.ID(), "sixty-four bytes of body, more or less, as in the benchmark..")
	}
	var sent [][]byte
	i := 0
	allocs := testing.AllocsPerRun(runs, func() {
		a.Send(t0, reqs[i])
		i++
		rd := a.Ready()
		for _, w := range rd.Writes {
			sent = append(sent, w.Frames...)
		}
		a.Advance()
		a.WriteDone(t0, 1)
	})
	if len(sent) != runs+1 {
		t.Fatalf("%d frames sent for %d messages", len(sent), runs+1)
	}
	t.Logf("sender: %.2f allocations per message", allocs)
	if allocs > 0.1 {
		t.Errorf("the sender's core allocates %.2f times per message, want none", allocs)
	}

	i = 0
	allocs = testing.AllocsPerRun(runs, func() {
		f := sent[i]
		i++
		b.Frame(t0, 2, mustDecodeNoAlloc(f), f)
		b.Ready()
		b.Advance()
		b.WriteDone(t0, 3)
	})
	t.Logf("forwarder: %.2f allocations per message", allocs)
	if allocs > 0.1 {
		t.Errorf("the forwarding core allocates %.2f times per message, want none", allocs)
	}
}

func mustDecodeNoAlloc(f []byte) message.Message {
	m, err := message.Decode(f, 0)
	if err != nil {
		panic(err)
	}
	return m
}
