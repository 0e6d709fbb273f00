package core

import (
	"testing"
	"time"

	"github.com/distrirender/distrirender/message"
)

// Failures of the "protocol correctness" issue reproduced on cores, each a
// scripted exchange that failed before its fix.

// Failure 1: a duplicate that moves the receiver's base past a missing
// message must still deliver what is now at the head of the window.
func TestDuplicateThatSkipsAheadDelivers(t *testing.T) {
	a, b := testCore(1, nil), testCore(2, nil)
	pair(t, a, b)
	a.Send(t0, sendReq(1, b.ID(), "zero"))
	a.Send(t0, sendReq(2, b.ID(), "one"))
	data := framesOf(a.Ready())
	a.Advance()
	// Index 0 is lost; index 1 arrives and waits for it.
	b.Frame(t0, 2, mustDecode(t, data[1]), data[1])
	if rd := b.Ready(); len(rd.Deliveries) != 0 {
		t.Fatalf("delivered %d before index 0", len(rd.Deliveries))
	}
	b.Advance()
	// The sender gave up on index 0 (its base moved to 1) and sends index 1
	// again: a duplicate for the receiver, which must now skip 0.
	m := mustDecode(t, data[1])
	m.Header.Ref = 1
	f := m.Encode()
	b.Frame(t0, 2, mustDecode(t, f), f)
	rd := b.Ready()
	if len(rd.Deliveries) != 1 || string(rd.Deliveries[0].Body) != "one" {
		t.Fatalf("deliveries after the skip: %+v", rd.Deliveries)
	}
}

// Failure 6: a dialler whose welcome was lost says hello again; the
// acceptor welcomes it again within the handshake time, and counts a hello
// after that as hostile.
func TestRepeatedHelloIsWelcomedAgain(t *testing.T) {
	a, b := testCore(1, nil), testCore(2, nil)
	pair(t, a, b)
	hello := a.HelloFrame()
	cases := []struct {
		name    string
		at      time.Duration
		welcome bool
	}{
		{"at once", 0, true},
		{"within the handshake", b.Config().Handshake - time.Millisecond, true},
		{"after the handshake", b.Config().Handshake, false},
	}
	for _, c := range cases {
		before := b.Stats().Hostile
		b.Frame(t0.Add(c.at), 2, mustDecode(t, hello), hello)
		welcomed := false
		for _, f := range framesOf(b.Ready()) {
			welcomed = welcomed || message.PeekType(f) == message.TypeWelcome
		}
		b.Advance()
		b.WriteDone(t0.Add(c.at), 2)
		if welcomed != c.welcome || (b.Stats().Hostile > before) == c.welcome {
			t.Errorf("%s: welcomed %v, hostile %d", c.name, welcomed, b.Stats().Hostile-before)
		}
	}
}
