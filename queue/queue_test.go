package queue_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/distrirender/distrirender/queue"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitTimeout bounds every wait in these tests; a wait that times out is a
// failure, not a synchronisation.
const waitTimeout = 5 * time.Second

func TestQueueSequential(t *testing.T) {
	type op struct {
		name string
		do   func(*queue.Queue[int]) (int, error)
		want int   // value wanted from a pop, or 1/0 for TryPush success
		err  error // error wanted
	}
	ctx := context.Background()
	push := func(v int) op {
		return op{name: "Push", do: func(q *queue.Queue[int]) (int, error) { return 0, q.Push(ctx, v) }}
	}
	tryPush := func(v int, ok bool) op {
		w := 0
		if ok {
			w = 1
		}
		return op{name: "TryPush", want: w, do: func(q *queue.Queue[int]) (int, error) {
			if q.TryPush(v) {
				return 1, nil
			}
			return 0, nil
		}}
	}
	pop := func(v int, err error) op {
		return op{name: "Pop", want: v, err: err, do: func(q *queue.Queue[int]) (int, error) { return q.Pop(ctx) }}
	}
	tryPop := func(v int, ok bool) op {
		var err error
		if !ok {
			err = errEmpty
		}
		return op{name: "TryPop", want: v, err: err, do: func(q *queue.Queue[int]) (int, error) {
			v, ok := q.TryPop()
			if !ok {
				return v, errEmpty
			}
			return v, nil
		}}
	}
	closeOp := op{name: "Close", do: func(q *queue.Queue[int]) (int, error) { q.Close(); return 0, nil }}
	pushClosed := op{name: "Push", err: queue.ErrClosed, do: func(q *queue.Queue[int]) (int, error) { return 0, q.Push(ctx, 9) }}

	tests := []struct {
		name    string
		cap     int
		ops     []op
		wantLen int
	}{
		{"fifo", 3, []op{push(1), push(2), push(3), pop(1, nil), pop(2, nil), pop(3, nil)}, 0},
		{"tryPush full", 2, []op{tryPush(1, true), tryPush(2, true), tryPush(3, false), tryPop(1, true)}, 1},
		{"tryPop empty", 1, []op{tryPop(0, false), push(5), tryPop(5, true), tryPop(0, false)}, 0},
		{"close drains", 3, []op{push(1), push(2), closeOp, pushClosed, tryPush(3, false), pop(1, nil), tryPop(2, true), pop(0, queue.ErrClosed), pop(0, queue.ErrClosed)}, 0},
		{"close twice", 1, []op{closeOp, closeOp, pop(0, queue.ErrClosed)}, 0},
		{"wrap", 2, []op{push(1), push(2), pop(1, nil), push(3), pop(2, nil), push(4), pop(3, nil), pop(4, nil)}, 0},
		{"len", 4, []op{push(1), push(2), push(3)}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := queue.New[int](tc.cap)
			if q.Cap() != tc.cap {
				t.Fatalf("Cap = %d, want %d", q.Cap(), tc.cap)
			}
			for i, o := range tc.ops {
				got, err := o.do(q)
				if !errors.Is(err, o.err) || (o.err == nil && err != nil) {
					t.Fatalf("op %d %s: err = %v, want %v", i, o.name, err, o.err)
				}
				if got != o.want {
					t.Fatalf("op %d %s: got %d, want %d", i, o.name, got, o.want)
				}
			}
			if q.Len() != tc.wantLen {
				t.Fatalf("Len = %d, want %d", q.Len(), tc.wantLen)
			}
		})
	}
}

var errEmpty = errors.New("empty")

func TestNewPanicsOnBadCapacity(t *testing.T) {
	for _, c := range []int{0, -1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%d) did not panic", c)
				}
			}()
			queue.New[int](c)
		}()
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewRing(%d) did not panic", c)
				}
			}()
			queue.NewRing[int](c)
		}()
	}
}

// result waits for one value on ch, failing the test after waitTimeout.
func result[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("%s: no result within %v", what, waitTimeout)
		panic("unreachable")
	}
}

func TestPushBlocksUntilPop(t *testing.T) {
	q := queue.New[int](1)
	ctx := context.Background()
	if err := q.Push(ctx, 1); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- q.Push(ctx, 2) }()
	select {
	case err := <-done:
		t.Fatalf("Push on a full queue returned %v without waiting", err)
	default:
	}
	if v, err := q.Pop(ctx); v != 1 || err != nil {
		t.Fatalf("Pop = %d, %v", v, err)
	}
	if err := result(t, done, "blocked Push"); err != nil {
		t.Fatal(err)
	}
	if v, err := q.Pop(ctx); v != 2 || err != nil {
		t.Fatalf("Pop = %d, %v", v, err)
	}
}

func TestContextCancel(t *testing.T) {
	t.Run("Push", func(t *testing.T) {
		q := queue.New[int](1)
		q.TryPush(1)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- q.Push(ctx, 2) }()
		cancel()
		if err := result(t, done, "Push"); !errors.Is(err, context.Canceled) {
			t.Fatalf("Push err = %v, want context.Canceled", err)
		}
		if q.Len() != 1 {
			t.Fatalf("Len = %d after cancelled Push", q.Len())
		}
	})
	t.Run("Pop", func(t *testing.T) {
		q := queue.New[int](1)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { _, err := q.Pop(ctx); done <- err }()
		cancel()
		if err := result(t, done, "Pop"); !errors.Is(err, context.Canceled) {
			t.Fatalf("Pop err = %v, want context.Canceled", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		q := queue.New[int](1)
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		if _, err := q.Pop(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Pop err = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("ready wins over done ctx", func(t *testing.T) {
		q := queue.New[int](1)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for range 100 {
			if err := q.Push(ctx, 1); err != nil {
				t.Fatalf("Push with room and done ctx: %v", err)
			}
			if _, err := q.Pop(ctx); err != nil {
				t.Fatalf("Pop with value and done ctx: %v", err)
			}
		}
	})
}

func TestCloseWhileBlocked(t *testing.T) {
	t.Run("Push", func(t *testing.T) {
		q := queue.New[int](1)
		q.TryPush(1)
		done := make(chan error, 1)
		go func() { done <- q.Push(context.Background(), 2) }()
		q.Close()
		if err := result(t, done, "Push"); !errors.Is(err, queue.ErrClosed) {
			t.Fatalf("Push err = %v, want ErrClosed", err)
		}
		if v, err := q.Pop(context.Background()); v != 1 || err != nil {
			t.Fatalf("Pop after Close = %d, %v, want 1, nil", v, err)
		}
	})
	t.Run("Pop", func(t *testing.T) {
		q := queue.New[int](1)
		const waiters = 8
		done := make(chan error, waiters)
		for range waiters {
			go func() { _, err := q.Pop(context.Background()); done <- err }()
		}
		q.Close()
		for range waiters {
			if err := result(t, done, "Pop"); !errors.Is(err, queue.ErrClosed) {
				t.Fatalf("Pop err = %v, want ErrClosed", err)
			}
		}
	})
}

func TestSpace(t *testing.T) {
	q := queue.New[int](2)
	select {
	case <-q.Space():
		t.Fatal("Space signalled before any Pop")
	default:
	}
	q.TryPush(1)
	q.TryPush(2)
	if q.TryPush(3) {
		t.Fatal("TryPush succeeded on a full queue")
	}
	q.TryPop()
	q.TryPop()
	// Two pops, one coalesced signal.
	result(t, q.Space(), "Space")
	select {
	case <-q.Space():
		t.Fatal("Space signals were not coalesced")
	default:
	}
	if !q.TryPush(3) {
		t.Fatal("TryPush after Space failed")
	}
}

// TestSpaceDrivenLoop is the use Space exists for: an event loop that never
// blocks on the queue delivers every value by waiting on Space when full.
func TestSpaceDrivenLoop(t *testing.T) {
	const n = 10000
	q := queue.New[int](4)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	go func() {
		for i := 0; i < n; {
			if q.TryPush(i) {
				i++
				continue
			}
			select {
			case <-q.Space():
			case <-ctx.Done():
				return
			}
		}
		q.Close()
	}()
	for want := 0; ; want++ {
		v, err := q.Pop(ctx)
		if errors.Is(err, queue.ErrClosed) {
			if want != n {
				t.Fatalf("closed after %d values, want %d", want, n)
			}
			return
		}
		if err != nil {
			t.Fatalf("Pop: %v", err)
		}
		if v != want {
			t.Fatalf("Pop = %d, want %d", v, want)
		}
	}
}

// TestManyProducersConsumers checks, under -race, that every pushed value is
// popped exactly once and that each producer's values stay in order.
func TestManyProducersConsumers(t *testing.T) {
	const producers, consumers, perProducer = 8, 8, 2000
	q := queue.New[[2]int](16)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var pwg sync.WaitGroup
	for p := range producers {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for i := range perProducer {
				if err := q.Push(ctx, [2]int{p, i}); err != nil {
					t.Errorf("Push: %v", err)
					return
				}
			}
		}()
	}
	got := make([][][2]int, consumers)
	var cwg sync.WaitGroup
	for c := range consumers {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for {
				v, err := q.Pop(ctx)
				if errors.Is(err, queue.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Pop: %v", err)
					return
				}
				got[c] = append(got[c], v)
			}
		}()
	}
	pwg.Wait()
	q.Close()
	cwg.Wait()

	seen := make([][]bool, producers)
	for p := range seen {
		seen[p] = make([]bool, perProducer)
	}
	total := 0
	for c, vs := range got {
		last := make([]int, producers)
		for p := range last {
			last[p] = -1
		}
		for _, v := range vs {
			p, i := v[0], v[1]
			if seen[p][i] {
				t.Fatalf("value %v popped twice", v)
			}
			seen[p][i] = true
			// One consumer sees one producer's values in push order.
			if i <= last[p] {
				t.Fatalf("consumer %d: producer %d value %d after %d", c, p, i, last[p])
			}
			last[p] = i
			total++
		}
	}
	if total != producers*perProducer {
		t.Fatalf("popped %d values, want %d", total, producers*perProducer)
	}
}

func BenchmarkQueuePushPop(b *testing.B) {
	q := queue.New[int](1024)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := q.Push(ctx, i); err != nil {
			b.Fatal(err)
		}
		if _, err := q.Pop(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkQueueProducerConsumer(b *testing.B) {
	q := queue.New[int](1024)
	ctx := context.Background()
	b.ReportAllocs()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := q.Pop(ctx); err != nil {
				return
			}
		}
	}()
	for i := 0; b.Loop(); i++ {
		if err := q.Push(ctx, i); err != nil {
			b.Fatal(err)
		}
	}
	q.Close()
	<-done
}
