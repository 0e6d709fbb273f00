package reliability

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
)

var (
	t0    = time.Unix(1_000_000, 0)
	nodeA = uuid.MustParse("aaaaaaaa-0000-4000-8000-000000000001")
	nodeB = uuid.MustParse("bbbbbbbb-0000-4000-8000-000000000002")
	nodeC = uuid.MustParse("cccccccc-0000-4000-8000-000000000003")
	ms    = time.Millisecond
)

func at(d time.Duration) time.Time { return t0.Add(d) }

func mustPush(t *testing.T, s *Sender, now time.Time, body string, targets ...uuid.UUID) Packet {
	t.Helper()
	p, err := s.Push(now, []byte(body), targets)
	if err != nil {
		t.Fatalf("Push(%q): %v", body, err)
	}
	return p
}

func mustAck(t *testing.T, s *Sender, now time.Time, from uuid.UUID, a message.Ack) int {
	t.Helper()
	n, err := s.OnAck(now, from, a)
	if err != nil {
		t.Fatalf("OnAck(%+v): %v", a, err)
	}
	return n
}

// tickAll runs Tick at every deadline up to and including end and returns
// what it produced, with the times.
type tickEvent struct {
	at      time.Time
	resend  []Retransmit
	failed  []Failure
	timeout bool
}

func tickUntil(s *Sender, end time.Time) []tickEvent {
	var evs []tickEvent
	for i := 0; i < 10000; i++ {
		dl, ok := s.Deadline()
		if !ok || dl.After(end) {
			break
		}
		r, f := s.Tick(dl)
		evs = append(evs, tickEvent{at: dl, resend: r, failed: f})
	}
	return evs
}

func TestConfig(t *testing.T) {
	def := Config{}.WithDefaults()
	if def != (Config{Window: 256, InitialWindow: 10, Modulo: 10000, InitialRTO: 200 * ms, MinRTO: 20 * ms, MaxRTO: 5 * time.Second, MaxRetries: 10}) {
		t.Fatalf("defaults = %+v", def)
	}
	if err := def.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := def.MaxSkip(); got != 4872 {
		t.Fatalf("MaxSkip = %d", got)
	}
	bad := []Config{
		{Window: -1}, {Window: 1025}, {Window: 10, Modulo: 19}, {Window: 1, Modulo: 2},
		{Modulo: 1<<31 + 1}, {MinRTO: -1}, {MaxRTO: time.Millisecond},
		{InitialRTO: 10 * time.Second}, {MaxRetries: -1},
		{Window: 10, InitialWindow: 11}, {InitialWindow: -1},
	}
	for _, c := range bad {
		if err := c.WithDefaults().Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidConfig", c, err)
		}
	}
	good := []Config{{Window: 10, Modulo: 20}, {Window: 1024, Modulo: 2048}, {Window: 1, Modulo: 3}, {Window: 3, Modulo: 7}, {Window: 64, InitialWindow: 64}}
	for _, c := range good {
		if err := c.WithDefaults().Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", c, err)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("NewSender with an invalid config did not panic")
		}
	}()
	NewSender(Config{Window: 5000}, 1)
}

func TestSenderWindow(t *testing.T) {
	s := NewSender(Config{Window: 3, Modulo: 7}, 9)
	if s.Epoch() != 9 || s.Full() || s.InFlight() != 0 {
		t.Fatal("fresh sender not empty")
	}
	if _, ok := s.Deadline(); ok {
		t.Fatal("Deadline on an empty sender")
	}
	if _, err := s.Push(t0, []byte("x"), nil); !errors.Is(err, ErrNoTargets) {
		t.Fatalf("Push without targets: %v", err)
	}
	for i := 0; i < 3; i++ {
		p := mustPush(t, s, t0, fmt.Sprint(i), nodeA, nodeA) // duplicates are ignored
		if p.Seq != uint32(i) || p.Base != 0 {
			t.Fatalf("packet %d = %+v", i, p)
		}
	}
	if !s.Full() || s.InFlight() != 3 {
		t.Fatal("window of 3 not full after 3 pushes")
	}
	if _, err := s.Push(t0, []byte("3"), []uuid.UUID{nodeA}); !errors.Is(err, ErrWindowFull) {
		t.Fatalf("Push on a full window: %v", err)
	}
	// The window slides message by message.
	if n := mustAck(t, s, at(10*ms), nodeA, message.Ack{StreamEpoch: 9, Cum: 1}); n != 1 {
		t.Fatalf("freed %d, want 1", n)
	}
	p := mustPush(t, s, at(10*ms), "3", nodeA)
	if p.Seq != 3 || p.Base != 1 {
		t.Fatalf("packet after slide = %+v", p)
	}
	// Across the wrap-around of Modulo 7.
	for i := 4; i < 30; i++ {
		now := at(time.Duration(i) * 10 * ms)
		mustAck(t, s, now, nodeA, message.Ack{StreamEpoch: 9, Cum: uint32(i-2) % 7})
		p := mustPush(t, s, now, fmt.Sprint(i), nodeA)
		if p.Seq != uint32(i)%7 || p.Base != uint32(i-2)%7 || string(p.Body) != fmt.Sprint(i) {
			t.Fatalf("packet %d = %+v", i, p)
		}
		// In flight: i-2, i-1, i (mod 7); nothing else, nor indexes past the modulus.
		for k := uint32(0); k < 9; k++ {
			want := k < 7 && (k == uint32(i)%7 || k == uint32(i-1)%7 || k == uint32(i-2)%7)
			if s.InWindow(k) != want {
				t.Fatalf("after packet %d: InWindow(%d) = %v", i, k, !want)
			}
		}
	}
	if n := mustAck(t, s, at(time.Second), nodeA, message.Ack{StreamEpoch: 9, Cum: 30 % 7}); n != 3 || s.InFlight() != 0 {
		t.Fatalf("final ack freed %d, %d in flight", n, s.InFlight())
	}
	if _, ok := s.Deadline(); ok {
		t.Fatal("Deadline with nothing in flight")
	}
}

func TestSenderInvalidAcks(t *testing.T) {
	newS := func() *Sender {
		s := NewSender(Config{Window: 10, Modulo: 100}, 5) // MaxSkip 45
		for i := 0; i < 4; i++ {
			mustPush(t, s, t0, fmt.Sprint(i), nodeA)
		}
		mustAck(t, s, at(ms), nodeA, message.Ack{StreamEpoch: 5, Cum: 2}) // lo 2, next 4
		return s
	}
	tests := []struct {
		name string
		from uuid.UUID
		ack  message.Ack
		want error
	}{
		{"wrong epoch", nodeA, message.Ack{StreamEpoch: 4, Cum: 3}, ErrStaleAck},
		{"newer epoch", nodeA, message.Ack{StreamEpoch: 6, Cum: 3}, ErrStaleAck},
		{"not a target", nodeB, message.Ack{StreamEpoch: 5, Cum: 3}, ErrInvalidAck},
		{"old cum", nodeA, message.Ack{StreamEpoch: 5, Cum: 1}, ErrStaleAck},
		{"old cum across the wrap", nodeA, message.Ack{StreamEpoch: 5, Cum: 60}, ErrStaleAck},
		{"cum past next", nodeA, message.Ack{StreamEpoch: 5, Cum: 5}, ErrInvalidAck},
		{"cum far past next", nodeA, message.Ack{StreamEpoch: 5, Cum: 50}, ErrInvalidAck},
		{"cum outside the modulo", nodeA, message.Ack{StreamEpoch: 5, Cum: 100}, ErrInvalidAck},
		{"SACK of an unsent index", nodeA, message.Ack{StreamEpoch: 5, Cum: 2, SACK: []byte{0b100}}, ErrInvalidAck},
		{"SACK of next with cum at next", nodeA, message.Ack{StreamEpoch: 5, Cum: 4, SACK: []byte{0b1}}, ErrInvalidAck},
		{"SACK too long", nodeA, message.Ack{StreamEpoch: 5, Cum: 2, SACK: []byte{1, 0, 0}}, ErrInvalidAck},
		{"SACK bit beyond the window", nodeA, message.Ack{StreamEpoch: 5, Cum: 2, SACK: []byte{0, 0b100}}, ErrInvalidAck},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newS()
			before, _ := s.Deadline()
			rto := s.RTO(nodeA)
			n, err := s.OnAck(at(2*ms), tc.from, tc.ack)
			if !errors.Is(err, tc.want) || n != 0 {
				t.Fatalf("OnAck = %d, %v; want 0, %v", n, err, tc.want)
			}
			after, _ := s.Deadline()
			if s.InFlight() != 2 || s.Base() != 2 || s.Next() != 4 || !after.Equal(before) || s.RTO(nodeA) != rto {
				t.Fatalf("state changed: in flight %d, base %d, next %d, deadline %v -> %v", s.InFlight(), s.Base(), s.Next(), before, after)
			}
			// The sender still works: a valid ack after the bad one.
			if n := mustAck(t, s, at(3*ms), nodeA, message.Ack{StreamEpoch: 5, Cum: 4}); n != 2 {
				t.Fatalf("valid ack freed %d", n)
			}
		})
	}
}

func TestSenderRetriesExhausted(t *testing.T) {
	s := NewSender(Config{InitialRTO: 100 * ms, MinRTO: 10 * ms, MaxRTO: 2 * time.Second, MaxRetries: 3}, 1)
	mustPush(t, s, t0, "m", nodeA)
	evs := tickUntil(s, at(time.Hour))
	// Retransmissions at 100, 300, 700 ms (backoff 100, 200, 400); failure
	// 800 ms after the third.
	want := []time.Duration{100 * ms, 300 * ms, 700 * ms, 1500 * ms}
	if len(evs) != len(want) {
		t.Fatalf("%d ticks, want %d: %+v", len(evs), len(want), evs)
	}
	for i, ev := range evs {
		if !ev.at.Equal(at(want[i])) {
			t.Errorf("tick %d at %v, want %v", i, ev.at.Sub(t0), want[i])
		}
		if i < 3 && (len(ev.resend) != 1 || ev.resend[0].Target != nodeA || string(ev.resend[0].Packet.Body) != "m" || len(ev.failed) != 0) {
			t.Errorf("tick %d = %+v, want one retransmission", i, ev)
		}
	}
	last := evs[3]
	if len(last.resend) != 0 || len(last.failed) != 1 {
		t.Fatalf("last tick = %+v, want one failure", last)
	}
	f := last.failed[0]
	if f.Seq != 0 || f.Target != nodeA || string(f.Body) != "m" || !errors.Is(f.Err, ErrRetriesExhausted) {
		t.Fatalf("failure = %+v", f)
	}
	if s.InFlight() != 0 || s.Base() != 1 {
		t.Fatalf("after failure: %d in flight, base %d", s.InFlight(), s.Base())
	}
	if _, ok := s.Deadline(); ok {
		t.Fatal("timer still running after the failure")
	}
}

func TestSenderBackoffCapped(t *testing.T) {
	s := NewSender(Config{InitialRTO: 100 * ms, MinRTO: 10 * ms, MaxRTO: 300 * ms, MaxRetries: 5}, 1)
	mustPush(t, s, t0, "m", nodeA)
	evs := tickUntil(s, at(time.Hour))
	var gaps []time.Duration
	prev := t0
	for _, ev := range evs {
		gaps = append(gaps, ev.at.Sub(prev))
		prev = ev.at
	}
	want := []time.Duration{100 * ms, 200 * ms, 300 * ms, 300 * ms, 300 * ms, 300 * ms}
	if fmt.Sprint(gaps) != fmt.Sprint(want) {
		t.Fatalf("gaps %v, want %v", gaps, want)
	}
	if len(evs[5].failed) != 1 {
		t.Fatalf("no failure after 5 retransmissions: %+v", evs[5])
	}
}

func TestSenderRTO(t *testing.T) {
	cfg := Config{InitialRTO: 200 * ms, MinRTO: 20 * ms, MaxRTO: time.Second}
	tests := []struct {
		name    string
		samples []time.Duration // RTT of each message, acked one by one
		want    time.Duration
	}{
		{"no sample", nil, 200 * ms},
		{"first sample: srtt+4*(r/2)", []time.Duration{50 * ms}, 150 * ms},
		{"steady: variance decays", []time.Duration{50 * ms, 50 * ms}, 50*ms + 4*(75*ms/4)},
		// RTTVAR decays to nothing on a steady path; MinRTO stays as the margin.
		{"margin at least MinRTO", []time.Duration{ms, ms, ms, ms, ms, ms, ms, ms, ms, ms}, 21 * ms},
		{"clamped to MaxRTO", []time.Duration{900 * ms}, time.Second},
		{"adapts upwards", []time.Duration{10 * ms, 10 * ms, 10 * ms, 100 * ms}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSender(cfg, 1)
			now := t0
			var prev time.Duration
			for i, r := range tc.samples {
				mustPush(t, s, now, "m", nodeA)
				now = now.Add(r)
				prev = s.RTO(nodeA)
				mustAck(t, s, now, nodeA, message.Ack{StreamEpoch: 1, Cum: uint32(i + 1)})
			}
			got := s.RTO(nodeA)
			if tc.want == 0 {
				if got <= prev {
					t.Fatalf("RTO %v did not grow from %v after a slower sample", got, prev)
				}
				return
			}
			if got != tc.want {
				t.Fatalf("RTO = %v, want %v", got, tc.want)
			}
		})
	}
	if s := NewSender(cfg, 1); s.RTO(nodeC) != 200*ms {
		t.Fatal("RTO of an unknown target is not InitialRTO")
	}
}

func TestSenderKarn(t *testing.T) {
	s := NewSender(Config{InitialRTO: 100 * ms, MinRTO: 10 * ms}, 1)
	mustPush(t, s, t0, "m", nodeA)
	if r, _ := s.Tick(at(100 * ms)); len(r) != 1 {
		t.Fatal("no retransmission")
	}
	// An ack 1 ms after the retransmission is ambiguous: no sample.
	mustAck(t, s, at(101*ms), nodeA, message.Ack{StreamEpoch: 1, Cum: 1})
	if got := s.RTO(nodeA); got != 100*ms {
		t.Fatalf("RTO = %v after an ack of a retransmitted message, want unchanged 100ms", got)
	}
	// A SACK gives the sample; the later cumulative ack does not.
	mustPush(t, s, at(200*ms), "a", nodeA)
	mustPush(t, s, at(200*ms), "b", nodeA)
	mustAck(t, s, at(240*ms), nodeA, message.Ack{StreamEpoch: 1, Cum: 1, SACK: []byte{0b11}})
	if got := s.RTO(nodeA); got != 120*ms {
		t.Fatalf("RTO = %v after a 40ms SACK sample, want 120ms", got)
	}
	mustAck(t, s, at(900*ms), nodeA, message.Ack{StreamEpoch: 1, Cum: 3})
	if got := s.RTO(nodeA); got != 120*ms {
		t.Fatalf("RTO = %v: the cumulative ack of a SACKed copy was sampled", got)
	}
}

func TestSenderSACKStopsRetries(t *testing.T) {
	cfg := Config{InitialRTO: 100 * ms, MinRTO: 10 * ms, MaxRTO: time.Second, MaxRetries: 2}
	s := NewSender(cfg, 1)
	mustPush(t, s, t0, "0", nodeA)
	mustPush(t, s, t0, "1", nodeA)
	// Index 1 buffered at the receiver, 0 missing (a lost packet).
	mustAck(t, s, at(10*ms), nodeA, message.Ack{StreamEpoch: 1, Cum: 0, SACK: []byte{0b10}})
	evs := tickUntil(s, at(time.Minute))
	var fails, probes int
	var probeTimes []time.Time
	for _, ev := range evs {
		for _, f := range ev.failed {
			fails++
			if f.Seq != 0 {
				t.Fatalf("SACKed message failed: %+v", f)
			}
		}
		for _, r := range ev.resend {
			if r.Packet.Seq == 1 {
				probes++
				probeTimes = append(probeTimes, ev.at)
			}
		}
	}
	if fails != 1 {
		t.Fatalf("%d failures, want 1 (index 0)", fails)
	}
	if probes < 50 {
		t.Fatalf("only %d probes of the SACKed message in a minute", probes)
	}
	// Probes back off from 2*RTO (RTO 30ms after the 10ms sample) up to MaxRTO.
	for i := 1; i < len(probeTimes); i++ {
		if gap := probeTimes[i].Sub(probeTimes[i-1]); gap > time.Second {
			t.Fatalf("probe gap %v above MaxRTO", gap)
		}
	}
	if gap := probeTimes[len(probeTimes)-1].Sub(probeTimes[len(probeTimes)-2]); gap != time.Second {
		t.Fatalf("probe interval settled at %v, want MaxRTO", gap)
	}
	// The SACKed message is still in flight; the base moved past the failed one.
	if s.InFlight() != 1 || s.Base() != 1 {
		t.Fatalf("in flight %d, base %d; want 1, 1", s.InFlight(), s.Base())
	}
	if n := mustAck(t, s, at(time.Minute), nodeA, message.Ack{StreamEpoch: 1, Cum: 2}); n != 1 {
		t.Fatalf("freed %d", n)
	}
}

// A window update (the ack after the application pops) is lost: probes of
// SACKed messages recover it without consuming the retry budget.
func TestSenderProbeAfterLostWindowUpdate(t *testing.T) {
	cfg := Config{Window: 2, Modulo: 4, InitialRTO: 100 * ms, MinRTO: 10 * ms, MaxRTO: time.Second, MaxRetries: 1}
	s := NewSender(cfg, 3)
	r := NewReceiver(cfg)
	for _, b := range []string{"a", "b"} {
		p := mustPush(t, s, t0, b, nodeA)
		if v, err := r.OnData(3, p.Seq, p.Base, p.Body); v != Accepted || err != nil {
			t.Fatal(v, err)
		}
	}
	mustAck(t, s, at(5*ms), nodeA, r.Ack()) // both SACKed, nothing delivered yet
	if !s.Full() {
		t.Fatal("window not full")
	}
	// The application is slow: an hour of probes, no failure.
	now := at(5 * ms)
	for i := 0; i < 100; i++ {
		dl, ok := s.Deadline()
		if !ok {
			t.Fatal("no probe timer")
		}
		now = dl
		resend, failed := s.Tick(now)
		if len(failed) != 0 {
			t.Fatalf("failure while the receiver holds the messages: %+v", failed)
		}
		for _, rt := range resend {
			if v, _ := r.OnData(3, rt.Packet.Seq, rt.Packet.Base, rt.Packet.Body); v != Duplicate {
				t.Fatalf("probe verdict %v", v)
			}
			mustAck(t, s, now, nodeA, r.Ack())
		}
	}
	// The application pops; the window-update ack is lost.
	for range 2 {
		if _, _, ok := r.Pop(); !ok {
			t.Fatal("nothing to pop")
		}
	}
	_ = r.Ack()
	dl, _ := s.Deadline()
	resend, _ := s.Tick(dl)
	if len(resend) == 0 {
		t.Fatal("no probe")
	}
	if v, _ := r.OnData(3, resend[0].Packet.Seq, resend[0].Packet.Base, resend[0].Packet.Body); v != Duplicate {
		t.Fatalf("probe verdict %v", v)
	}
	if n := mustAck(t, s, dl, nodeA, r.Ack()); n != 2 || s.Full() {
		t.Fatalf("re-ack freed %d", n)
	}
}

// The base moves past a message that failed; the receiver, told by Base,
// stops waiting for it.
func TestSenderBaseSkipsFailedMessage(t *testing.T) {
	cfg := Config{InitialRTO: 100 * ms, MinRTO: 10 * ms, MaxRetries: 2}
	s := NewSender(cfg, 1)
	r := NewReceiver(cfg)
	for i, b := range []string{"lost", "b", "c"} {
		p := mustPush(t, s, t0, b, nodeA)
		if i > 0 { // index 0 never arrives
			if v, err := r.OnData(1, p.Seq, p.Base, p.Body); v != Accepted || err != nil {
				t.Fatal(v, err)
			}
		}
	}
	mustAck(t, s, at(10*ms), nodeA, r.Ack())
	var failedSeqs []uint32
	for len(failedSeqs) == 0 {
		dl, ok := s.Deadline()
		if !ok {
			t.Fatal("no timer")
		}
		resend, failed := s.Tick(dl)
		for _, f := range failed {
			failedSeqs = append(failedSeqs, f.Seq)
		}
		_ = resend // index 0 is still lost; the receiver has 1 and 2
	}
	if len(failedSeqs) != 1 || failedSeqs[0] != 0 || s.Base() != 1 {
		t.Fatalf("failed %v, base %d", failedSeqs, s.Base())
	}
	if _, _, ok := r.Pop(); ok {
		t.Fatal("receiver delivered past a hole before learning the base")
	}
	// The next probe carries Base 1: the receiver skips index 0.
	dl, _ := s.Deadline()
	resend, _ := s.Tick(dl)
	if len(resend) == 0 || resend[0].Packet.Base != 1 {
		t.Fatalf("probe %+v", resend)
	}
	r.OnData(1, resend[0].Packet.Seq, resend[0].Packet.Base, resend[0].Packet.Body)
	var got []string
	for {
		b, _, ok := r.Pop()
		if !ok {
			break
		}
		got = append(got, string(b))
	}
	if fmt.Sprint(got) != "[b c]" {
		t.Fatalf("delivered %q", got)
	}
	if n := mustAck(t, s, dl, nodeA, r.Ack()); n != 2 || s.InFlight() != 0 {
		t.Fatalf("freed %d, %d in flight", n, s.InFlight())
	}
}

func TestSenderBroadcastTargets(t *testing.T) {
	s := NewSender(Config{InitialRTO: 100 * ms, MinRTO: 10 * ms}, 2)
	mustPush(t, s, t0, "0", nodeA, nodeB)
	mustPush(t, s, t0, "1", nodeA, nodeB)
	if n := mustAck(t, s, at(ms), nodeA, message.Ack{StreamEpoch: 2, Cum: 2}); n != 0 {
		t.Fatalf("freed %d before B acked", n)
	}
	if n := mustAck(t, s, at(ms), nodeB, message.Ack{StreamEpoch: 2, Cum: 1}); n != 1 {
		t.Fatalf("freed %d, want 1", n)
	}
	// Retransmissions go only to the target that has not acknowledged.
	resend, _ := s.Tick(at(100 * ms))
	if len(resend) != 1 || resend[0].Target != nodeB || resend[0].Packet.Seq != 1 || resend[0].Packet.Base != 1 {
		t.Fatalf("resend %+v", resend)
	}

	// B leaves: its copy fails with the cause; the message leaves the window.
	cause := errors.New("node left")
	failed := s.RemoveTarget(nodeB, cause)
	if len(failed) != 1 || failed[0].Seq != 1 || failed[0].Target != nodeB ||
		!errors.Is(failed[0].Err, ErrTargetGone) || !errors.Is(failed[0].Err, cause) {
		t.Fatalf("RemoveTarget = %+v", failed)
	}
	if s.InFlight() != 0 {
		t.Fatalf("%d in flight after B left", s.InFlight())
	}
	if _, err := s.OnAck(at(200*ms), nodeB, message.Ack{StreamEpoch: 2, Cum: 2}); !errors.Is(err, ErrInvalidAck) {
		t.Fatalf("ack from a removed target: %v", err)
	}
	if s.RemoveTarget(nodeB, nil) != nil {
		t.Fatal("removing an unknown target failed something")
	}

	// C appears while 2 and 3 are in flight: its first transmissions are due at once.
	mustPush(t, s, at(300*ms), "2", nodeA)
	mustPush(t, s, at(300*ms), "3", nodeA)
	s.AddTarget(nodeC)
	s.AddTarget(nodeC) // idempotent
	if dl, ok := s.Deadline(); !ok || !dl.IsZero() {
		t.Fatalf("Deadline after AddTarget = %v, %v; want zero time", dl, ok)
	}
	resend, failed = s.Tick(at(301 * ms))
	if len(failed) != 0 || len(resend) != 2 || resend[0].Target != nodeC || resend[0].Packet.Seq != 2 || resend[1].Packet.Seq != 3 {
		t.Fatalf("Tick after AddTarget = %+v, %+v", resend, failed)
	}
	if dl, _ := s.Deadline(); !dl.Equal(at(311 * ms)) { // A's first timeout (RTT 1 ms + the MinRTO margin)
		t.Fatalf("Deadline = %v", dl.Sub(t0))
	}
	mustAck(t, s, at(310*ms), nodeA, message.Ack{StreamEpoch: 2, Cum: 4})
	if n := mustAck(t, s, at(321*ms), nodeC, message.Ack{StreamEpoch: 2, Cum: 4}); n != 2 {
		t.Fatalf("freed %d", n)
	}
	if got := s.RTO(nodeC); got != 60*ms { // first sample 20ms, from the AddTarget transmission
		t.Fatalf("RTO(C) = %v", got)
	}
}

func TestSenderFailAll(t *testing.T) {
	s := NewSender(Config{}, 1)
	mustPush(t, s, t0, "0", nodeA, nodeB)
	mustPush(t, s, t0, "1", nodeA)
	mustAck(t, s, at(ms), nodeA, message.Ack{StreamEpoch: 1, Cum: 1})
	failed := s.FailAll(nil)
	var got []string
	for _, f := range failed {
		if !errors.Is(f.Err, ErrClosed) {
			t.Fatalf("failure %+v", f)
		}
		got = append(got, fmt.Sprintf("%d>%s", f.Seq, f.Target.String()[:1]))
	}
	if fmt.Sprint(got) != "[0>b 1>a]" {
		t.Fatalf("FailAll = %v", got)
	}
	if s.InFlight() != 0 {
		t.Fatalf("%d in flight", s.InFlight())
	}
	if _, ok := s.Deadline(); ok {
		t.Fatal("timer after FailAll")
	}
	cause := errors.New("shutdown")
	mustPush(t, s, t0, "2", nodeA)
	if f := s.FailAll(cause); len(f) != 1 || f[0].Err != cause {
		t.Fatalf("FailAll(cause) = %+v", f)
	}
}

// After an outage longer than MaxSkip failed messages, the base is held by
// the unreachable target; sync probes resynchronise its receiver when it
// comes back, and the stream resumes.
func TestSenderBlockedSyncProbe(t *testing.T) {
	cfg := Config{Window: 10, Modulo: 20, InitialRTO: 100 * ms, MinRTO: 10 * ms, MaxRTO: time.Second, MaxRetries: 1}
	s := NewSender(cfg, 1)
	r := NewReceiver(cfg)
	for i := 0; i < 10; i++ {
		p := mustPush(t, s, t0, fmt.Sprint(i), nodeA)
		if i == 0 { // the receiver sees only the first packet, and acks are lost
			r.OnData(1, p.Seq, p.Base, p.Body)
		}
	}
	var failed int
	var probes []time.Time
	var stuck time.Time
	for len(probes) < 8 {
		dl, ok := s.Deadline()
		if !ok {
			t.Fatal("no timer")
		}
		resend, f := s.Tick(dl)
		failed += len(f)
		if failed < 10 {
			continue
		}
		// Once the block has lasted the whole retry budget, Stuck names
		// the target, and keeps naming it.
		if id, ok := s.Stuck(dl); ok {
			if id != nodeA {
				t.Fatalf("at %v: Stuck = %v", dl.Sub(t0), id)
			}
			if stuck.IsZero() {
				stuck = dl
			}
		} else if !stuck.IsZero() {
			t.Fatalf("at %v: Stuck forgot the target it named at %v", dl.Sub(t0), stuck.Sub(t0))
		}
		if len(resend) == 0 {
			continue // the moment Stuck names it
		}
		// Sync probes carry the head message, back off, and never fail.
		if len(resend) != 1 || resend[0].Target != nodeA || resend[0].Packet.Seq != 5 || resend[0].Packet.Base != 5 {
			t.Fatalf("sync tick: %+v", resend)
		}
		probes = append(probes, dl)
	}
	// lo stays 0, so the base stops at MaxSkip = 5 although 0..9 all failed.
	if id, blocked := s.Blocked(); !blocked || id != nodeA {
		t.Fatalf("Blocked = %v, %v", id, blocked)
	}
	if failed != 10 || s.Base() != 5 || s.InFlight() != 5 {
		t.Fatalf("failed %d, base %d, in flight %d", failed, s.Base(), s.InFlight())
	}
	if gap := probes[7].Sub(probes[6]); gap != time.Second {
		t.Fatalf("sync probe interval %v, want MaxRTO", gap)
	}
	if stuck.IsZero() {
		t.Fatal("Stuck never named the target that blocks the window")
	}
	// The target comes back: one probe resynchronises it.
	dl, _ := s.Deadline()
	resend, _ := s.Tick(dl)
	p := resend[0].Packet
	if v, err := r.OnData(1, p.Seq, p.Base, p.Body); v != Accepted || err != nil {
		t.Fatalf("probe: %v %v", v, err)
	}
	var got []string
	for {
		b, _, ok := r.Pop()
		if !ok {
			break
		}
		got = append(got, string(b))
	}
	if fmt.Sprint(got) != "[0 5]" { // 1..4 skipped; 5 was reported failed, yet arrives
		t.Fatalf("delivered %q", got)
	}
	if n := mustAck(t, s, dl, nodeA, r.Ack()); n != 5 || s.InFlight() != 0 {
		t.Fatalf("resync freed %d, %d in flight", n, s.InFlight())
	}
	if _, blocked := s.Blocked(); blocked {
		t.Fatal("still blocked")
	}
	if _, ok := s.Deadline(); ok {
		t.Fatal("timer running after the resync")
	}
	p = mustPush(t, s, dl, "10", nodeA)
	if v, _ := r.OnData(1, p.Seq, p.Base, p.Body); v != Accepted {
		t.Fatalf("after resync: %v (packet %+v, receiver at %d)", v, p, r.Next())
	}
}

// Messages of one stream may have different targets (a node that appeared
// or left between pushes); each target's acks only touch its own copies.
func TestSenderMixedTargets(t *testing.T) {
	s := NewSender(Config{}, 1)
	mustPush(t, s, t0, "0", nodeA)
	mustPush(t, s, t0, "1", nodeB)
	if n := mustAck(t, s, at(ms), nodeB, message.Ack{StreamEpoch: 1, Cum: 2}); n != 0 {
		t.Fatalf("B's ack freed %d while A holds index 0", n)
	}
	if _, err := s.OnAck(at(ms), nodeC, message.Ack{StreamEpoch: 1, Cum: 1}); !errors.Is(err, ErrInvalidAck) {
		t.Fatalf("ack from a node never addressed: %v", err)
	}
	if n := mustAck(t, s, at(2*ms), nodeA, message.Ack{StreamEpoch: 1, Cum: 1}); n != 2 {
		t.Fatalf("A's ack freed %d, want 2", n)
	}
	if _, ok := s.Deadline(); ok || s.InFlight() != 0 || s.Next() != 2 {
		t.Fatal("not empty")
	}
}

func TestFastRetransmit(t *testing.T) {
	now := time.Unix(100, 0)
	dst := uuid.New()
	cfg := Config{InitialRTO: time.Second}.WithDefaults()
	cases := []struct {
		name   string
		sacked []int // offsets from seq 0 that arrive
		resend []uint32
	}{
		{"three later messages arrived: 0 is lost", []int{1, 2, 3}, []uint32{0}},
		{"two are not enough (reordering)", []int{1, 2}, nil},
		{"holes below three arrivals are all lost", []int{2, 4, 5, 6}, []uint32{0, 1, 3}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := NewSender(cfg, 7)
			for range 8 {
				if _, err := s.Push(now, []byte("x"), []uuid.UUID{dst}); err != nil {
					t.Fatal(err)
				}
			}
			sack := make([]byte, 1)
			for _, o := range c.sacked {
				sack[0] |= 1 << o
			}
			later := now.Add(10 * time.Millisecond)
			if _, err := s.OnAck(later, dst, message.Ack{StreamEpoch: 7, Cum: 0, SACK: sack}); err != nil {
				t.Fatal(err)
			}
			resend, failed := s.Tick(later)
			if len(failed) != 0 {
				t.Fatalf("failures: %v", failed)
			}
			var got []uint32
			for _, r := range resend {
				got = append(got, r.Packet.Seq)
			}
			if !slices.Equal(got, c.resend) {
				t.Fatalf("resent %v, want %v", got, c.resend)
			}
			// Retransmitted once: the same ack again triggers nothing more.
			if _, err := s.OnAck(later, dst, message.Ack{StreamEpoch: 7, Cum: 0, SACK: sack}); err != nil {
				t.Fatal(err)
			}
			if resend, _ := s.Tick(later); len(resend) != 0 {
				t.Fatalf("second ack resent %d copies", len(resend))
			}
		})
	}
}

// A path whose round trip exceeds the initial RTO: before the first sample
// one copy is retransmitted per timeout and the others wait (backed off),
// so their acknowledgements are valid samples; afterwards nothing times out
// (RFC 6298 §5.5–5.7 with Karn's rule). It used to resend every message.
func TestSenderLongRoundTrip(t *testing.T) {
	cfg := Config{Window: 10, InitialRTO: 200 * ms, MinRTO: 20 * ms, MaxRTO: 5 * time.Second}
	cases := []struct {
		rtt        time.Duration
		maxResends int
		rtoAtLeast time.Duration
	}{
		{100 * ms, 0, 100 * ms},
		{300 * ms, 1, 300 * ms},
		{600 * ms, 2, 600 * ms},
		{time.Second, 3, time.Second},
	}
	for _, c := range cases {
		t.Run(c.rtt.String(), func(t *testing.T) {
			s := NewSender(cfg, 1)
			resends := 0
			now := t0
			for round := range 5 {
				start := now
				for range 10 {
					mustPush(t, s, now, "m", nodeA)
				}
				end := start.Add(c.rtt)
				resends += resendsBefore(t, s, end)
				now = end
				mustAck(t, s, now, nodeA, message.Ack{StreamEpoch: 1, Cum: uint32(10 * (round + 1))})
			}
			if resends > c.maxResends {
				t.Fatalf("%d retransmissions over 50 messages, want at most %d (all in the first window)", resends, c.maxResends)
			}
			if rto := s.RTO(nodeA); rto < c.rtoAtLeast {
				t.Fatalf("RTO %v below the round trip %v", rto, c.rtt)
			}
		})
	}
}

// resendsBefore runs every Tick due before end and returns how many copies
// were resent; a failure fails the test.
func resendsBefore(t *testing.T, s *Sender, end time.Time) int {
	t.Helper()
	k := 0
	for _, ev := range tickUntil(s, end.Add(-1)) {
		k += len(ev.resend)
		if len(ev.failed) > 0 {
			t.Fatalf("%d failures at %v", len(ev.failed), ev.at.Sub(t0))
		}
	}
	return k
}

// fill pushes until the congestion window is full and returns how many.
func fill(t *testing.T, s *Sender, now time.Time) int {
	t.Helper()
	k := 0
	for !s.Full() {
		mustPush(t, s, now, "m", nodeA)
		k++
	}
	return k
}

// ackAll acknowledges everything in flight at now.
func ackAll(t *testing.T, s *Sender, now time.Time) {
	t.Helper()
	mustAck(t, s, now, nodeA, message.Ack{StreamEpoch: 1, Cum: s.Next()})
}

// The congestion window (fast-path issue, item 2): slow start from the
// initial window up to the cap when the window is the limit, no growth when
// the application is, halving on loss at most once per round trip and
// never below the initial window, and late copies (acks of the messages in
// front keep coming) not taken for lost.
func TestSenderCongestionWindow(t *testing.T) {
	cfg := Config{Window: 64, InitialRTO: 100 * ms, MinRTO: 10 * ms, MaxRTO: time.Second}
	t.Run("slow start to the cap", func(t *testing.T) {
		s := NewSender(cfg, 1)
		now := t0
		var got []int
		for range 5 {
			got = append(got, fill(t, s, now))
			now = now.Add(10 * ms)
			ackAll(t, s, now)
		}
		if want := []int{10, 20, 40, 64, 64}; !slices.Equal(got, want) {
			t.Fatalf("messages per round %v, want %v", got, want)
		}
	})
	t.Run("application-limited: no growth", func(t *testing.T) {
		s := NewSender(cfg, 1)
		now := t0
		for range 5 {
			for range 5 {
				mustPush(t, s, now, "m", nodeA)
			}
			now = now.Add(10 * ms)
			ackAll(t, s, now)
		}
		if w := s.CongestionWindow(); w != 10 {
			t.Fatalf("window %d after rounds of 5 messages, want 10", w)
		}
	})
	t.Run("loss halves once per round trip, not below the initial window", func(t *testing.T) {
		s := NewSender(cfg, 1)
		now := t0
		for range 3 {
			fill(t, s, now)
			now = now.Add(10 * ms)
			ackAll(t, s, now)
		}
		if w := s.CongestionWindow(); w != 64 {
			t.Fatalf("window %d, want 64", w)
		}
		fill(t, s, now)
		// Nothing is acknowledged: every copy times out in the same Tick,
		// one congestion event.
		dl, _ := s.Deadline()
		if r, _ := s.Tick(dl); len(r) == 0 {
			t.Fatal("no retransmission")
		}
		if w := s.CongestionWindow(); w != 32 {
			t.Fatalf("window %d after one loss event, want 32", w)
		}
		for range 5 {
			dl, _ = s.Deadline()
			s.Tick(dl)
		}
		if w := s.CongestionWindow(); w != 10 {
			t.Fatalf("window %d after repeated losses, want the floor 10", w)
		}
	})
	t.Run("late, not lost", func(t *testing.T) {
		s := NewSender(cfg, 1)
		now := t0
		fill(t, s, now)
		now = now.Add(10 * ms)
		ackAll(t, s, now) // one 10 ms sample: the RTO is 30 ms
		start := now
		n := uint32(fill(t, s, now))
		// They drain one every 10 ms, behind a queue: each ack shows
		// progress, so no copy times out although most wait far longer
		// than the 30 ms RTO.
		resends := 0
		for k := uint32(1); k <= n; k++ {
			now = start.Add(time.Duration(k) * 10 * ms)
			resends += resendsBefore(t, s, now)
			mustAck(t, s, now, nodeA, message.Ack{StreamEpoch: 1, Cum: 10 + k})
		}
		if resends != 0 {
			t.Fatalf("%d retransmissions of copies whose acks were still coming", resends)
		}
	})
}

// A sender that keeps released messages hands over each body once, when it
// leaves the window: Acked when every target acknowledged it, not when any
// failed (its body was handed out in a Failure).
func TestSenderKeepReleased(t *testing.T) {
	s := NewSender(Config{InitialRTO: 100 * ms, MinRTO: 10 * ms, MaxRTO: time.Second, MaxRetries: 1}, 1)
	s.KeepReleased()
	mustPush(t, s, t0, "a", nodeA, nodeB)
	mustPush(t, s, t0, "b", nodeA)
	mustPush(t, s, t0, "c", nodeA, nodeB)
	if got := s.TakeReleased(nil); len(got) != 0 {
		t.Fatalf("released before any ack: %+v", got)
	}
	mustAck(t, s, at(5*ms), nodeA, message.Ack{StreamEpoch: 1, Cum: 3})
	if got := s.TakeReleased(nil); len(got) != 0 {
		// "a" waits for B and holds the base: "b" is done but behind it.
		t.Fatalf("after A's ack: %+v", got)
	}
	mustAck(t, s, at(6*ms), nodeB, message.Ack{StreamEpoch: 1, Cum: 1})
	got := s.TakeReleased(nil)
	want := []Released{{Body: []byte("a"), Acked: true}, {Body: []byte("b"), Acked: true}}
	if len(got) != len(want) {
		t.Fatalf("after B's ack of a: %+v, want %+v", got, want)
	}
	for i := range want {
		if string(got[i].Body) != string(want[i].Body) || got[i].Acked != want[i].Acked {
			t.Fatalf("after B's ack of a: %+v, want %+v", got, want)
		}
	}
	// "c" fails towards B: released, not Acked.
	tickUntil(s, at(time.Hour))
	got = s.TakeReleased(got[:0])
	if len(got) != 1 || string(got[0].Body) != "c" || got[0].Acked {
		t.Fatalf("after c failed towards B: %+v, want c, not acked", got)
	}
	if got := s.TakeReleased(nil); len(got) != 0 {
		t.Fatalf("released twice: %+v", got)
	}
}
