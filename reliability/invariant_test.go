package reliability

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/testutil"
	"github.com/distrirender/distrirender/message"
)

// checkSender verifies the Sender's internal invariants: every pending copy
// has a live timer item in the heap, the counters match the copies, and
// every copy's target is tracked.
func checkSender(s *Sender) error {
	type key struct {
		seq uint32
		t   *target
		at  int64
	}
	items := make(map[key]bool, len(s.heap))
	for _, it := range s.heap {
		items[key{it.seq, it.t, it.at.UnixNano()}] = true
	}
	timers := 0
	live := map[*target]int{}
	sacked := map[*target]int{}
	for j := 0; j < s.n; j++ {
		e := s.at(j)
		n := 0
		for i := range e.copies {
			c := &e.copies[i]
			if i > 0 && e.copies[i-1].t.slot >= c.t.slot {
				return fmt.Errorf("msg %d: copies not sorted by slot", e.seq)
			}
			if !c.live() {
				continue
			}
			n++
			live[c.t]++
			if c.state == copySacked {
				sacked[c.t]++
				continue
			}
			timers++
			if !items[key{e.seq, c.t, c.deadline.UnixNano()}] {
				return fmt.Errorf("msg %d: pending copy for %x (due %v) has no timer", e.seq, c.t.id[:2], c.deadline)
			}
		}
		if n != e.live {
			return fmt.Errorf("msg %d: live %d, counted %d", e.seq, e.live, n)
		}
	}
	if s.cwnd < s.cfg.InitialWindow || s.cwnd > int(s.w) || len(s.ring) > int(s.w) || len(s.ring) < s.n {
		return fmt.Errorf("cwnd %d, ring %d, %d in flight, window %d", s.cwnd, len(s.ring), s.n, s.w)
	}
	if timers != s.timers {
		return fmt.Errorf("timers %d, counted %d", s.timers, timers)
	}
	for _, t := range s.tlist {
		if t.live != live[t] || t.sacked != sacked[t] {
			return fmt.Errorf("target %x: live %d sacked %d, counted %d %d", t.id[:2], t.live, t.sacked, live[t], sacked[t])
		}
	}
	return nil
}

// TestSenderInvariantsRandomOps drives one broadcast-style sender with random
// pushes, acks (valid or not), SACKs, target changes and ticks, and checks
// its invariants after every step.
func TestSenderInvariantsRandomOps(t *testing.T) {
	seed := testutil.Seed(t)
	for run := range 200 {
		r := rand.New(rand.NewPCG(seed, uint64(run)))
		cfg := Config{Window: 1 + r.IntN(12), Modulo: 64 + uint32(r.IntN(64)), MaxRetries: 1 + r.IntN(5),
			InitialRTO: 50 * time.Millisecond, MinRTO: 10 * time.Millisecond, MaxRTO: 200 * time.Millisecond}
		s := NewSender(cfg, 1)
		ids := make([]uuid.UUID, 1+r.IntN(60))
		for i := range ids {
			ids[i] = uuid.UUID{byte(i + 1)}
		}
		tracked := map[uuid.UUID]bool{}
		now := t0
		for step := range 400 {
			var op string
			switch k := r.IntN(12); {
			case k < 3:
				op = "push"
				var targets []uuid.UUID
				for _, id := range ids {
					if tracked[id] || r.IntN(3) == 0 {
						targets = append(targets, id)
						tracked[id] = true
					}
				}
				if !s.Full() && len(targets) > 0 {
					if _, err := s.Push(now, []byte{byte(step)}, targets); err != nil {
						t.Fatalf("run %d step %d: push: %v", run, step, err)
					}
				}
			case k < 8:
				op = "ack"
				id := ids[r.IntN(len(ids))]
				tg := s.targets[id]
				if tg == nil {
					continue
				}
				span := int(dist(tg.lo, s.Next(), s.m))
				cum := add(tg.lo, uint32(r.IntN(span+1)), s.m)
				if r.IntN(2) == 0 {
					cum = s.Next() // the common case: all caught up
				}
				sack := make([]byte, (cfg.Window+7)/8)
				for b := 0; b < int(dist(cum, s.Next(), s.m)) && b < cfg.Window; b++ {
					if r.IntN(2) == 0 {
						sack[b/8] |= 1 << (b % 8)
					}
				}
				_, _ = s.OnAck(now, id, message.Ack{StreamEpoch: 1, Cum: cum, SACK: sack})
			case k < 9:
				op = "add"
				id := ids[r.IntN(len(ids))]
				s.AddTarget(id)
				tracked[id] = true
			case k < 10:
				op = "remove"
				id := ids[r.IntN(len(ids))]
				s.RemoveTarget(id, nil)
				delete(tracked, id)
			default:
				op = "tick"
				if d, ok := s.Deadline(); ok && d.After(now) && r.IntN(2) == 0 {
					now = d
				} else {
					now = now.Add(time.Duration(r.IntN(100)) * time.Millisecond)
				}
				s.Tick(now)
			}
			if err := checkSender(s); err != nil {
				t.Fatalf("run %d step %d after %s: %v\n%s", run, step, op, err, s)
			}
		}
	}
}

// TestSenderPushKeepsTimersWhenHeapRebuilds: a Push to many targets may
// trigger the stale-item compaction of the timer heap half way through its
// copies; the copies already scheduled must keep their timers.
func TestSenderPushKeepsTimersWhenHeapRebuilds(t *testing.T) {
	s := NewSender(Config{Window: 10}, 1)
	ids := make([]uuid.UUID, 30)
	for i := range ids {
		ids[i] = uuid.UUID{byte(i + 1)}
	}
	now := t0
	for i := range 10 {
		mustPush(t, s, now, fmt.Sprint(i), ids...)
	}
	for _, id := range ids {
		mustAck(t, s, now, id, message.Ack{StreamEpoch: 1, Cum: 8})
	}
	// 240 stale timer items and 60 live ones: the heap is 4 short of
	// compaction when the next Push starts.
	mustPush(t, s, now, "x", ids...)
	if err := checkSender(s); err != nil {
		t.Fatalf("%v\n%s", err, s)
	}
}
