package render

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// workerIDs returns the two workers of the scheduler tests.
func workerIDs() (a, b uuid.UUID) {
	return uuid.MustParse("00000000-0000-4000-8000-00000000000a"), uuid.MustParse("00000000-0000-4000-8000-00000000000b")
}

// schedStep is one thing that happens to a scheduler in a test, at t0+at,
// with what it must answer.
type schedStep struct {
	at     time.Duration
	op     string // request, result, lose, decline, expire, dispatch
	w      uuid.UUID
	slot   int
	tile   int
	want   []assignment // dispatch: the assignments
	missed []missed     // expire: the missed deadlines
	fresh  bool         // result: first result for the tile
}

func TestScheduler(t *testing.T) {
	wa, wb := workerIDs()
	t0 := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	as := func(w uuid.UUID, slot, tile int) assignment { return assignment{w: w, slot: slot, tile: tile} }
	cases := []struct {
		name    string
		tiles   int
		timeout time.Duration
		steps   []schedStep
		// what the scheduler holds at the end
		done, reassigned, speculative, duplicates int
	}{
		{name: "requests are served oldest first, tiles in order", tiles: 4, steps: []schedStep{
			{op: "request", w: wa, slot: 0},
			{op: "request", w: wb, slot: 0},
			{op: "request", w: wa, slot: 1},
			{op: "dispatch", want: []assignment{as(wa, 0, 0), as(wb, 0, 1), as(wa, 1, 2)}},
			{op: "request", w: wa, slot: 0}, // already assigned: ignored
			{op: "dispatch"},
		}},
		{name: "a result asks for the slot's next tile; a second result is a duplicate", tiles: 3, steps: []schedStep{
			{op: "request", w: wa, slot: 0},
			{op: "dispatch", want: []assignment{as(wa, 0, 0)}},
			{at: time.Second, op: "result", w: wa, slot: 0, tile: 0, fresh: true},
			{at: time.Second, op: "dispatch", want: []assignment{as(wa, 0, 1)}},
			{at: 2 * time.Second, op: "result", w: wb, slot: 3, tile: 0},
		}, done: 1, duplicates: 1},
		{name: "a missed deadline hands the tile out again; the late result still counts", tiles: 1, timeout: 10 * time.Second, steps: []schedStep{
			{op: "request", w: wa, slot: 0},
			{op: "dispatch", want: []assignment{as(wa, 0, 0)}},
			{op: "request", w: wb, slot: 0},
			{op: "dispatch"},
			{at: 10 * time.Second, op: "expire"}, // at the deadline: not yet
			{at: 10*time.Second + 1, op: "expire", missed: []missed{{w: wa, tile: 0}}},
			{at: 10*time.Second + 1, op: "dispatch", want: []assignment{as(wb, 0, 0)}},
			{at: 11 * time.Second, op: "result", w: wa, slot: 0, tile: 0, fresh: true},
		}, done: 1, reassigned: 1},
		{name: "a lost worker's tiles go to the others", tiles: 2, steps: []schedStep{
			{op: "request", w: wa, slot: 0},
			{op: "request", w: wa, slot: 1},
			{op: "dispatch", want: []assignment{as(wa, 0, 0), as(wa, 1, 1)}},
			{op: "request", w: wb, slot: 0},
			{op: "lose", w: wa},
			{op: "dispatch", want: []assignment{as(wb, 0, 0)}},
			{op: "request", w: wa, slot: 0}, // back again
			{op: "dispatch", want: []assignment{as(wa, 0, 1)}},
		}, reassigned: 2},
		{name: "a declined worker gets nothing", tiles: 2, steps: []schedStep{
			{op: "request", w: wa, slot: 0},
			{op: "decline", w: wa},
			{op: "request", w: wa, slot: 1},
			{op: "dispatch"},
		}},
		{name: "an idle slot gets a speculative copy after twice the mean tile time", tiles: 2, steps: []schedStep{
			{op: "request", w: wa, slot: 0},
			{op: "request", w: wb, slot: 0},
			{op: "dispatch", want: []assignment{as(wa, 0, 0), as(wb, 0, 1)}},
			{at: time.Second, op: "result", w: wa, slot: 0, tile: 0, fresh: true}, // mean 1s
			{at: time.Second, op: "dispatch"},                                     // tile 1 in flight for 1s
			{at: 2 * time.Second, op: "dispatch"},                                 // 2s: not more than twice the mean
			{at: 2*time.Second + 1, op: "dispatch", want: []assignment{as(wa, 0, 1)}},
			{at: 3 * time.Second, op: "result", w: wb, slot: 0, tile: 1, fresh: true},
			{at: 3 * time.Second, op: "result", w: wa, slot: 0, tile: 1},
		}, done: 2, speculative: 1, duplicates: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newScheduler(c.tiles, c.timeout)
			for i, st := range c.steps {
				now := t0.Add(st.at)
				switch st.op {
				case "request":
					s.request(st.w, st.slot, now)
				case "result":
					if fresh, ok := s.result(st.w, st.slot, st.tile, time.Millisecond, now); !ok || fresh != st.fresh {
						t.Fatalf("step %d: result fresh %v ok %v, want fresh %v", i, fresh, ok, st.fresh)
					}
				case "lose":
					s.lose(st.w)
				case "decline":
					s.decline(st.w, "busy")
				case "expire":
					if got := s.expire(now); !slices.Equal(got, st.missed) {
						t.Fatalf("step %d: expire %v, want %v", i, got, st.missed)
					}
				case "dispatch":
					if got := s.dispatch(now); !slices.Equal(got, st.want) {
						t.Fatalf("step %d: dispatch %v, want %v", i, got, st.want)
					}
				}
			}
			if s.done != c.done || s.reassigned != c.reassigned || s.speculative != c.speculative || s.duplicates != c.duplicates {
				t.Errorf("done %d reassigned %d speculative %d duplicates %d, want %d %d %d %d",
					s.done, s.reassigned, s.speculative, s.duplicates, c.done, c.reassigned, c.speculative, c.duplicates)
			}
		})
	}
}

func TestSchedulerNextWake(t *testing.T) {
	wa, wb := workerIDs()
	t0 := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	s := newScheduler(2, 10*time.Second)
	if _, ok := s.nextWake(t0); ok {
		t.Fatal("a wake-up with nothing handed out")
	}
	s.request(wa, 0, t0)
	s.dispatch(t0)
	s.request(wb, 0, t0.Add(time.Second))
	s.dispatch(t0.Add(time.Second))
	if at, ok := s.nextWake(t0); !ok || !at.Equal(t0.Add(10*time.Second+1)) {
		t.Fatalf("next wake %v %v, want the first deadline", at, ok)
	}
	// A result makes the mean 2s; wa's slot waits, and wb's tile becomes
	// due a copy 4s after it went out, before its deadline.
	s.result(wa, 0, 0, time.Millisecond, t0.Add(2*time.Second))
	if got := s.dispatch(t0.Add(2 * time.Second)); len(got) != 0 {
		t.Fatalf("dispatched %v", got)
	}
	if at, ok := s.nextWake(t0.Add(2 * time.Second)); !ok || !at.Equal(t0.Add(5*time.Second+1)) {
		t.Fatalf("next wake %v %v, want when tile 1 is due a copy", at, ok)
	}
	// Only wb's own slot waits: no copy for it, so no wake-up for one.
	s2 := newScheduler(1, 10*time.Second)
	s2.request(wb, 0, t0)
	s2.dispatch(t0)
	s2.result(wb, 0, 0, 0, t0.Add(time.Second))
	if _, ok := s2.nextWake(t0.Add(time.Hour)); ok {
		t.Error("a wake-up on a finished job")
	}
}

// TestSlowWorkerDoesNotBlock checks that a worker whose sends block holds
// up neither the loop nor the sends to other workers.
func TestSlowWorkerDoesNotBlock(t *testing.T) {
	wa, wb := workerIDs()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	sentToB := make(chan []byte, 1)
	blockedOnA := make(chan struct{}, 1)
	r := &crun{
		outboxes:   map[uuid.UUID]chan []byte{},
		sendFailed: make(chan sendFailure, sendFailures),
		ctx:        ctx,
		wg:         &wg,
		sendTo: func(ctx context.Context, to uuid.UUID, b []byte) error {
			if to == wa {
				select {
				case blockedOnA <- struct{}{}:
				default:
				}
				<-ctx.Done() // a full window that never drains
				return ctx.Err()
			}
			sentToB <- b
			return nil
		},
	}
	start := time.Now()
	r.send(wa, []byte("to a"))
	<-blockedOnA
	for range outboxSize { // fills a's outbox behind the blocked send
		r.send(wa, []byte("to a"))
	}
	r.send(wb, []byte("to b"))
	if el := time.Since(start); el > time.Second {
		t.Errorf("queueing took %v", el)
	}
	select {
	case b := <-sentToB:
		if string(b) != "to b" {
			t.Errorf("sent %q to b", b)
		}
	case <-time.After(sendTimeout / 2):
		t.Fatal("the message to b waited for a")
	}
	// One more for a overflows its outbox: a is reported lost at once.
	r.send(wa, []byte("to a"))
	select {
	case f := <-r.sendFailed:
		if f.w != wa || f.err == nil {
			t.Errorf("failure %+v", f)
		}
	case <-time.After(time.Second):
		t.Fatal("a full outbox was not reported")
	}
}
