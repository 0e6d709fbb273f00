package reliability

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
)

func ackOf(epoch uint64, cum uint32, sack ...byte) message.Ack {
	return message.Ack{StreamEpoch: epoch, Cum: cum, SACK: sack}
}

// FuzzReceiver drives a Receiver with arbitrary packets and pops, encoded
// as bytes: whatever a hostile sender does, nothing panics, the buffer stays
// within Window, deliveries follow the index order, and acks are well formed.
func FuzzReceiver(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 2})
	f.Add([]byte{0, 1, 7, 5, 9, 9, 1, 2, 2, 0, 3, 3, 1, 0, 0, 4, 200, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		cfg := Config{Window: 4, Modulo: 11}
		r := NewReceiver(cfg)
		var lastSeq uint32
		popped := false
		for len(ops) >= 4 {
			op, a, b, c := ops[0], ops[1], ops[2], ops[3]
			ops = ops[4:]
			switch op % 3 {
			case 0: // data: epoch a%3, seq b, base c (mostly in range)
				epoch := r.Epoch()
				v, err := r.OnData(uint64(a%3), uint32(b)%13, uint32(c)%13, []byte{b})
				if (err != nil) != (v == Invalid) {
					t.Fatalf("verdict %v with error %v", v, err)
				}
				if v == Stale && r.Epoch() != epoch {
					t.Fatal("stale packet changed the epoch")
				}
				if uint64(a%3) > epoch && v != Invalid {
					popped = false // a new stream starts
				}
			case 1:
				if body, seq, ok := r.Pop(); ok {
					if popped && seq == lastSeq {
						t.Fatalf("index %d popped twice in a row", seq)
					}
					if body[0]%13 != byte(seq) {
						t.Fatalf("popped body %d as index %d", body[0], seq)
					}
					lastSeq, popped = seq, true
				}
			case 2:
				ack := r.Ack()
				if ack.Cum >= cfg.Modulo || len(ack.SACK) > 1 || (len(ack.SACK) == 1 && ack.SACK[0] == 0) || highestBit(ack.SACK) >= cfg.Window {
					t.Fatalf("malformed ack %+v", ack)
				}
			}
			if r.Buffered() > cfg.Window {
				t.Fatalf("%d buffered", r.Buffered())
			}
		}
	})
}

// FuzzSenderAcks feeds a Sender arbitrary acks between pushes, ticks and
// membership changes: nothing panics, the window never exceeds Window, the
// sender's invariants hold (checkSender), no
// (message, target) is reported failed twice, and without acks everything in
// flight fails in bounded time (or the sender reports itself blocked).
func FuzzSenderAcks(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 1, 2, 0, 0, 2, 0, 0, 0})
	f.Add([]byte{0, 1, 3, 255, 1, 4, 0, 1, 2, 9, 9, 9, 1, 0, 6, 3})
	f.Fuzz(func(t *testing.T, ops []byte) {
		cfg := Config{Window: 4, Modulo: 9, InitialRTO: 10 * ms, MinRTO: ms, MaxRTO: 40 * ms, MaxRetries: 2}
		s := NewSender(cfg, 1)
		now := t0
		pushed := 0
		failedOnce := map[[2]int]bool{}
		record := func(fs []Failure) {
			for _, f := range fs {
				k := [2]int{int(f.Body[0]), int(f.Target[0])}
				if failedOnce[k] {
					t.Fatalf("message %d to %s failed twice", f.Body[0], f.Target)
				}
				failedOnce[k] = true
			}
		}
		for len(ops) >= 4 {
			op, a, b, c := ops[0], ops[1], ops[2], ops[3]
			ops = ops[4:]
			now = now.Add(time.Duration(a%16) * ms)
			switch op % 4 {
			case 0:
				if !s.Full() && pushed < 256 { // bodies name messages by one byte
					if _, err := s.Push(now, []byte{byte(pushed)}, []uuid.UUID{nodeA, nodeB}[:1+int(b%2)]); err != nil {
						t.Fatal(err)
					}
					pushed++
				}
			case 1:
				from := nodeA
				if c&0x80 != 0 {
					from = nodeB
				}
				s.OnAck(now, from, ackOf(uint64(c%2), uint32(b)%10, c&0x7f))
			case 2:
				_, f := s.Tick(now)
				record(f)
			case 3:
				if b%8 == 0 {
					record(s.RemoveTarget(nodeB, nil))
				} else if b%8 == 1 {
					s.AddTarget(nodeB) // fresh copies, which may fail again
					for k := range failedOnce {
						if k[1] == int(nodeB[0]) {
							delete(failedOnce, k)
						}
					}
				}
			}
			if s.InFlight() > cfg.Window {
				t.Fatalf("%d in flight", s.InFlight())
			}
			if err := checkSender(s); err != nil {
				t.Fatalf("%v\n%s", err, s)
			}
			if dl, ok := s.Deadline(); ok && s.InFlight() == 0 && !dl.IsZero() {
				t.Fatalf("deadline %v with nothing in flight", dl)
			}
		}
		// Drain: with no acks at all everything in flight fails in bounded time.
		for i := 0; i < 1000 && s.InFlight() > 0; i++ {
			dl, ok := s.Deadline()
			if !ok {
				if _, blocked := s.Blocked(); !blocked {
					t.Fatalf("%d in flight, no timer, not blocked", s.InFlight())
				}
				break
			}
			now = dl
			_, f := s.Tick(now)
			record(f)
		}
	})
}
