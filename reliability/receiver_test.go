package reliability

import (
	"bytes"
	"errors"
	"testing"

	"github.com/distrirender/distrirender/message"
)

// rop is one step of a receiver script.
type rop struct {
	// data
	data        bool
	epoch       uint64
	seq, base   uint32
	body        string
	want        Verdict
	wantInvalid bool
	// pop: pop until empty, expecting these bodies
	pop  bool
	pops []string
	// ack: expect this ack
	ack     bool
	cum     uint32
	sack    []byte
	ackEpch uint64
}

func d(epoch uint64, seq, base uint32, body string, want Verdict) rop {
	return rop{data: true, epoch: epoch, seq: seq, base: base, body: body, want: want}
}

func bad(epoch uint64, seq, base uint32) rop {
	return rop{data: true, epoch: epoch, seq: seq, base: base, body: "bad", want: Invalid, wantInvalid: true}
}

func pops(bodies ...string) rop { return rop{pop: true, pops: bodies} }

func ack(epoch uint64, cum uint32, sack ...byte) rop {
	return rop{ack: true, ackEpch: epoch, cum: cum, sack: sack}
}

func TestReceiverScripts(t *testing.T) {
	w10 := Config{Window: 10}               // Modulo 10000, MaxSkip 4995
	small := Config{Window: 10, Modulo: 20} // MaxSkip 5
	tests := []struct {
		name string
		cfg  Config
		ops  []rop
	}{
		{"in order", w10, []rop{
			d(1, 0, 0, "a", Accepted), d(1, 1, 0, "b", Accepted),
			ack(1, 0, 0b11), pops("a", "b"), ack(1, 2),
		}},
		{"first packet sets the delivery point to its base", w10, []rop{
			d(7, 42, 40, "x", Accepted), ack(7, 40, 0b100), pops(),
			d(7, 40, 40, "v", Accepted), d(7, 41, 40, "w", Accepted), pops("v", "w", "x"), ack(7, 43),
		}},
		{"duplicate of a buffered message", w10, []rop{
			d(1, 1, 0, "b", Accepted), d(1, 1, 0, "b", Duplicate), ack(1, 0, 0b10),
		}},
		{"duplicate of a delivered message", w10, []rop{
			d(1, 0, 0, "a", Accepted), pops("a"), d(1, 0, 0, "a", Duplicate), ack(1, 1),
		}},
		{"out of window while the application is slow", w10, []rop{
			d(1, 0, 0, "a", Accepted),
			// base 1 ahead of the delivery point, but index 0 is buffered:
			// the floor moves, the delivery point waits for Pop.
			d(1, 10, 1, "k", OutOfWindow), d(1, 9, 1, "j", Accepted),
			ack(1, 0, 0b1, 0b10), pops("a"), ack(1, 1, 0, 0b1),
			d(1, 10, 1, "k", Accepted), ack(1, 1, 0, 0b11),
		}},
		{"stale epoch changes nothing", w10, []rop{
			d(5, 0, 0, "a", Accepted), d(4, 1, 0, "b", Stale), d(4, 0, 0, "z", Stale),
			ack(5, 0, 0b1), pops("a"),
		}},
		{"new epoch discards the old stream", w10, []rop{
			d(1, 0, 0, "a", Accepted), d(1, 2, 0, "c", Accepted),
			d(2, 7, 7, "x", Accepted), ack(2, 7, 0b1), pops("x"),
			d(1, 1, 0, "b", Stale),
		}},
		{"invalid packets change nothing", w10, []rop{
			bad(1, 10000, 0), bad(1, 0, 10000), bad(1, 10, 0), bad(1, 5, 9999-4),
			ack(0, 0),
			d(1, 3, 0, "d", Accepted), bad(2, 20, 0), ack(1, 0, 0b1000),
		}},
		{"base skips holes, keeps buffered messages deliverable", w10, []rop{
			d(1, 2, 0, "c", Accepted),
			d(1, 5, 4, "f", Accepted),                     // 0 and 1 given up: skipped; 2 buffered: kept
			ack(1, 2, 0b1001), pops("c"), ack(1, 4, 0b10), // 3 skipped too
			d(1, 4, 4, "e", Accepted), pops("e", "f"), ack(1, 6),
		}},
		{"a late message below the base is still delivered in order", w10, []rop{
			d(1, 2, 0, "c", Accepted), d(1, 5, 4, "f", Accepted),
			d(1, 3, 0, "d", Accepted), pops("c", "d"), ack(1, 4, 0b10),
		}},
		{"base jump past the whole window", w10, []rop{
			d(1, 0, 0, "a", Accepted), pops("a"),
			d(1, 130, 125, "x", Accepted), ack(1, 125, 0b100000),
		}},
		{"packet from the stream's past", small, []rop{
			// deliver 0..14
			d(1, 0, 0, "0", Accepted), d(1, 1, 0, "1", Accepted), d(1, 2, 0, "2", Accepted),
			d(1, 3, 0, "3", Accepted), d(1, 4, 0, "4", Accepted), d(1, 5, 0, "5", Accepted),
			d(1, 6, 0, "6", Accepted), d(1, 7, 0, "7", Accepted), d(1, 8, 0, "8", Accepted),
			d(1, 9, 0, "9", Accepted), pops("0", "1", "2", "3", "4", "5", "6", "7", "8", "9"),
			d(1, 10, 5, "10", Accepted), d(1, 11, 5, "11", Accepted), d(1, 12, 5, "12", Accepted),
			d(1, 13, 5, "13", Accepted), d(1, 14, 5, "14", Accepted), pops("10", "11", "12", "13", "14"),
			// base 3 is 12 behind and 8 ahead of 15: neither plausible
			d(1, 3, 3, "old", Duplicate), ack(1, 15),
			// base 5 is 10 behind: a retransmission of something delivered
			d(1, 14, 5, "14", Duplicate),
			// base 0 is 15 behind = 5 ahead: advance (the sender gave up on 15..19)
			d(1, 1, 0, "21", Accepted), ack(1, 0, 0b10), pops(), d(1, 0, 0, "20", Accepted), pops("20", "21"),
		}},
		{"delivery point moves only by Pop", w10, []rop{
			d(1, 0, 0, "a", Accepted), ack(1, 0, 0b1), d(1, 1, 0, "b", Accepted), ack(1, 0, 0b11),
			pops("a", "b"), ack(1, 2),
		}},
		{"SACK is trimmed and spans bytes", w10, []rop{
			d(1, 1, 0, "b", Accepted), d(1, 9, 0, "j", Accepted), ack(1, 0, 0b10, 0b10),
		}},
		{"wrap-around at the modulo", w10, []rop{
			d(3, 9998, 9998, "a", Accepted), d(3, 0, 9998, "c", Accepted), d(3, 9999, 9998, "b", Accepted),
			d(3, 1, 9998, "d", Accepted), pops("a", "b", "c", "d"), ack(3, 2),
			d(3, 9999, 9998, "b", Duplicate), d(3, 1, 9999, "d", Duplicate),
		}},
		{"modulo not a multiple of the window", Config{Window: 3, Modulo: 7}, []rop{
			d(1, 5, 5, "5", Accepted), d(1, 0, 5, "7", Accepted), d(1, 6, 5, "6", Accepted),
			d(1, 1, 6, "8", OutOfWindow), pops("5", "6", "7"), ack(1, 1),
			d(1, 1, 6, "8", Accepted), d(1, 3, 1, "10", Accepted), d(1, 2, 1, "9", Accepted),
			d(1, 4, 2, "11", OutOfWindow), pops("8", "9", "10"), ack(1, 4),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReceiver(tc.cfg)
			for i, op := range tc.ops {
				switch {
				case op.data:
					v, err := r.OnData(op.epoch, op.seq, op.base, []byte(op.body))
					if v != op.want {
						t.Fatalf("op %d: OnData(%d, %d, %d) = %v, want %v", i, op.epoch, op.seq, op.base, v, op.want)
					}
					if op.wantInvalid != (err != nil) || (err != nil && !errors.Is(err, ErrInvalidData)) {
						t.Fatalf("op %d: OnData error %v, want invalid %v", i, err, op.wantInvalid)
					}
				case op.pop:
					var got []string
					for {
						b, _, ok := r.Pop()
						if !ok {
							break
						}
						got = append(got, string(b))
					}
					if !equalStrings(got, op.pops) {
						t.Fatalf("op %d: popped %q, want %q", i, got, op.pops)
					}
				case op.ack:
					a := r.Ack()
					want := message.Ack{StreamEpoch: op.ackEpch, Cum: op.cum, SACK: op.sack}
					if a.StreamEpoch != want.StreamEpoch || a.Cum != want.Cum || !bytes.Equal(a.SACK, want.SACK) {
						t.Fatalf("op %d: Ack() = %+v, want %+v", i, a, want)
					}
					if len(a.SACK) > 0 && a.SACK[len(a.SACK)-1] == 0 {
						t.Fatalf("op %d: SACK %v not trimmed", i, a.SACK)
					}
				}
				if r.Buffered() > int(r.w) {
					t.Fatalf("op %d: %d buffered, window %d", i, r.Buffered(), r.w)
				}
			}
		})
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestReceiverPopReportsIndex(t *testing.T) {
	r := NewReceiver(Config{Window: 4, Modulo: 9})
	var seqs []uint32
	for i := 0; i < 40; i++ {
		seq := uint32(i % 9)
		base := seq
		if v, err := r.OnData(1, seq, base, []byte{byte(i)}); v != Accepted || err != nil {
			t.Fatalf("message %d: %v %v", i, v, err)
		}
		b, s, ok := r.Pop()
		if !ok || b[0] != byte(i) || r.Next() != (s+1)%9 {
			t.Fatalf("message %d: Pop = %v %d %v, next %d", i, b, s, ok, r.Next())
		}
		seqs = append(seqs, s)
	}
	for i, s := range seqs {
		if s != uint32(i%9) {
			t.Fatalf("Pop %d returned index %d, want %d", i, s, i%9)
		}
	}
	if _, _, ok := r.Pop(); ok {
		t.Fatal("Pop on an empty receiver succeeded")
	}
}

func TestReceiverUninitialised(t *testing.T) {
	r := NewReceiver(Config{})
	if _, _, ok := r.Pop(); ok {
		t.Fatal("Pop before any data succeeded")
	}
	if a := r.Ack(); a.Cum != 0 || a.SACK != nil || a.StreamEpoch != 0 || r.Epoch() != 0 {
		t.Fatalf("Ack before data = %+v", a)
	}
}

func TestVerdictString(t *testing.T) {
	for v, want := range map[Verdict]string{
		Accepted: "accepted", Duplicate: "duplicate", OutOfWindow: "out-of-window",
		Stale: "stale", Invalid: "invalid", Verdict(99): "Verdict(99)",
	} {
		if got := v.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", uint8(v), got, want)
		}
	}
}
