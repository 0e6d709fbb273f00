package reliability_test

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/reliability"
)

// A sender and a receiver exchange messages over a "network" that loses the
// first transmission of the second message; the sender's timer repairs it.
func Example() {
	cfg := reliability.Config{Window: 4, Modulo: 100}
	dst := uuid.MustParse("00000000-0000-4000-8000-000000000001")
	s := reliability.NewSender(cfg, 1) // epoch 1: the sending node's incarnation
	r := reliability.NewReceiver(cfg)
	now := time.Unix(0, 0)

	deliver := func(p reliability.Packet) {
		v, err := r.OnData(s.Epoch(), p.Seq, p.Base, p.Body)
		if err != nil {
			return // hostile or corrupt: drop
		}
		for {
			body, seq, ok := r.Pop()
			if !ok {
				break
			}
			fmt.Printf("delivered %d: %s\n", seq, body)
		}
		if v != reliability.Stale {
			a := r.Ack() // sent back to the origin as an ack message
			freed, _ := s.OnAck(now, dst, a)
			fmt.Printf("ack cum=%d sack=%08b freed=%d\n", a.Cum, a.SACK, freed)
		}
	}

	for i, text := range []string{"tile 1", "tile 2", "tile 3"} {
		p, err := s.Push(now, []byte(text), []uuid.UUID{dst})
		if err != nil {
			panic(err)
		}
		if i != 1 { // the network loses "tile 2"
			deliver(p)
		}
	}
	// The event loop sleeps until the sender's deadline, then ticks.
	dl, _ := s.Deadline()
	now = dl
	resend, failed := s.Tick(now)
	for _, rt := range resend {
		deliver(rt.Packet)
	}
	fmt.Println("failed:", len(failed), "in flight:", s.InFlight())
	// Output:
	// delivered 0: tile 1
	// ack cum=1 sack=[] freed=1
	// ack cum=1 sack=[00000010] freed=0
	// delivered 1: tile 2
	// delivered 2: tile 3
	// ack cum=3 sack=[] freed=2
	// failed: 0 in flight: 0
}
