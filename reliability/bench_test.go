package reliability

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
)

// BenchmarkSenderReceiver measures the per-message cost of the lossless
// path with the window kept full: Window packets are on the "wire" (a FIFO);
// each op delivers the oldest (OnData, Pop, Ack), feeds the ack to the
// sender (OnAck, which frees one slot), pushes the next message onto the
// wire and asks for the Deadline, as an event loop would. One op is one
// message.
func BenchmarkSenderReceiver(b *testing.B) {
	for _, w := range []int{10, 256} {
		b.Run(fmt.Sprintf("window=%d", w), func(b *testing.B) {
			cfg := Config{Window: w, Modulo: 10000}
			s := NewSender(cfg, 1)
			r := NewReceiver(cfg)
			dst := []uuid.UUID{uuid.New()}
			body := make([]byte, 64)
			now := t0
			wire := make([]Packet, w) // ring of in-flight packets
			head := 0
			for i := range wire {
				wire[i], _ = s.Push(now, body, dst)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				now = now.Add(time.Microsecond)
				p := wire[head]
				if v, _ := r.OnData(1, p.Seq, p.Base, p.Body); v != Accepted {
					b.Fatalf("verdict %v", v)
				}
				if _, _, ok := r.Pop(); !ok {
					b.Fatal("nothing to pop")
				}
				if n, err := s.OnAck(now, dst[0], r.Ack()); n != 1 || err != nil {
					b.Fatalf("OnAck = %d, %v", n, err)
				}
				np, err := s.Push(now, body, dst)
				if err != nil {
					b.Fatal(err)
				}
				wire[head] = np
				head = (head + 1) % w
				if _, ok := s.Deadline(); !ok {
					b.Fatal("no deadline")
				}
			}
		})
	}
}

// BenchmarkSlowReceiver is the same loop with the application one window
// behind: every ack carries a full SACK bitmap.
func BenchmarkSlowReceiver(b *testing.B) {
	for _, w := range []int{10, 256} {
		b.Run(fmt.Sprintf("window=%d", w), func(b *testing.B) {
			cfg := Config{Window: w, Modulo: 10000}
			s := NewSender(cfg, 1)
			r := NewReceiver(cfg)
			dst := []uuid.UUID{uuid.New()}
			body := make([]byte, 64)
			now := t0
			for !s.Full() {
				p, _ := s.Push(now, body, dst)
				r.OnData(1, p.Seq, p.Base, p.Body)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				now = now.Add(time.Microsecond)
				if _, _, ok := r.Pop(); !ok {
					b.Fatal("nothing to pop")
				}
				if n, err := s.OnAck(now, dst[0], r.Ack()); n != 1 || err != nil {
					b.Fatalf("OnAck = %d, %v", n, err)
				}
				p, err := s.Push(now, body, dst)
				if err != nil {
					b.Fatal(err)
				}
				if v, _ := r.OnData(1, p.Seq, p.Base, p.Body); v != Accepted {
					b.Fatalf("verdict %v", v)
				}
				s.Deadline()
			}
		})
	}
}

// BenchmarkBroadcastAck measures OnAck on a broadcast stream with 100
// targets: one op is one ack from one target.
func BenchmarkBroadcastAck(b *testing.B) {
	const targets = 100
	cfg := Config{Window: 10, Modulo: 10000}
	s := NewSender(cfg, 1)
	ids := make([]uuid.UUID, targets)
	cums := make([]uint32, targets)
	for i := range ids {
		ids[i] = uuid.New()
	}
	now := t0
	for !s.Full() {
		s.Push(now, nil, ids)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Microsecond)
		k := i % targets
		cums[k] = (cums[k] + 1) % cfg.Modulo
		if _, err := s.OnAck(now, ids[k], ackOf(1, cums[k])); err != nil {
			b.Fatal(err)
		}
		for !s.Full() {
			s.Push(now, nil, ids)
		}
		s.Deadline()
	}
}
