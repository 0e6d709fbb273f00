package edgeset

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/distrirender/distrirender/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// edge is a do-nothing transport.Edge.
type edge struct{ id int }

func (e *edge) Send(context.Context, []byte) error      { return nil }
func (e *edge) Receive(context.Context) ([]byte, error) { return nil, nil }
func (e *edge) Close() error                            { return nil }
func (e *edge) LocalAddr() string                       { return "local" }
func (e *edge) RemoteAddr() string                      { return fmt.Sprint(e.id) }
func (e *edge) String() string                          { return fmt.Sprint(e.id) }

func errClosed(op string) error { return fmt.Errorf("test: %s: %w", op, transport.ErrClosed) }

func sorted(es []*edge) []*edge {
	return slices.SortedFunc(slices.Values(es), func(a, b *edge) int { return a.id - b.id })
}

func newEdges(n int) []*edge {
	es := make([]*edge, n)
	for i := range es {
		es[i] = &edge{i}
	}
	return es
}

func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestTracking(t *testing.T) {
	e := newEdges(4)
	tests := []struct {
		name string
		// run works on a fresh set and returns what Close should return.
		run func(t *testing.T, s *Set[*edge]) []*edge
	}{
		{"empty", func(t *testing.T, s *Set[*edge]) []*edge { return nil }},
		{"tracked edges", func(t *testing.T, s *Set[*edge]) []*edge {
			for _, x := range e[:3] {
				if !s.Track(x) {
					t.Fatalf("Track(%d) on an open set = false", x.id)
				}
			}
			return e[:3]
		}},
		{"track twice", func(t *testing.T, s *Set[*edge]) []*edge {
			s.Track(e[0])
			s.Track(e[0])
			return e[:1]
		}},
		{"untracked edges", func(t *testing.T, s *Set[*edge]) []*edge {
			for _, x := range e {
				s.Track(x)
			}
			if !s.Untrack(e[1]) || !s.Untrack(e[3]) {
				t.Fatal("Untrack of a tracked edge = false")
			}
			if s.Untrack(e[1]) {
				t.Fatal("second Untrack = true")
			}
			return []*edge{e[0], e[2]}
		}},
		{"untrack unknown", func(t *testing.T, s *Set[*edge]) []*edge {
			s.Track(e[0])
			if s.Untrack(e[2]) {
				t.Fatal("Untrack of an edge never tracked = true")
			}
			return e[:1]
		}},
		{"queued edges", func(t *testing.T, s *Set[*edge]) []*edge {
			s.Track(e[0])
			s.Queue() <- e[0]
			return e[:1]
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New[*edge](1)
			want := tt.run(t, s)
			if got := sorted(s.Tracked()); !slices.Equal(got, sorted(want)) {
				t.Errorf("Tracked() = %v, want %v", got, want)
			}
			if s.Closed() {
				t.Fatal("Closed() before Close = true")
			}
			got, first := s.Close()
			if !first || !slices.Equal(sorted(got), sorted(want)) {
				t.Errorf("Close() = %v, %v; want %v, true", got, first, want)
			}
			if !s.Closed() {
				t.Error("Closed() after Close = false")
			}
			select {
			case <-s.Done():
			default:
				t.Error("Done() not closed after Close")
			}
			if got, first := s.Close(); got != nil || first {
				t.Errorf("second Close() = %v, %v; want nil, false", got, first)
			}
			if s.Track(e[0]) {
				t.Error("Track after Close = true")
			}
			// Closed edges still untrack themselves after Close.
			for _, x := range want {
				if !s.Untrack(x) {
					t.Errorf("Untrack(%d) after Close = false", x.id)
				}
			}
			if got := s.Tracked(); len(got) != 0 {
				t.Errorf("Tracked() after Close and Untrack = %v", got)
			}
		})
	}
}

func TestAccept(t *testing.T) {
	queued := &edge{7}
	tests := []struct {
		name string
		ctx  func() context.Context
		// before runs before Accept, during while it waits.
		before, during func(s *Set[*edge])
		want           transport.Edge
		wantErr        error
	}{
		{name: "queued", ctx: context.Background, before: func(s *Set[*edge]) { s.Queue() <- queued }, want: queued},
		{name: "queued while waiting", ctx: context.Background, during: func(s *Set[*edge]) { s.Queue() <- queued }, want: queued},
		{name: "closed", ctx: context.Background, before: func(s *Set[*edge]) { s.Close() }, wantErr: transport.ErrClosed},
		// A closed set wins over a queued edge: Close closes that edge.
		{name: "closed with a queued edge", ctx: context.Background, before: func(s *Set[*edge]) { s.Queue() <- queued; s.Close() }, wantErr: transport.ErrClosed},
		{name: "closed while waiting", ctx: context.Background, during: func(s *Set[*edge]) { s.Close() }, wantErr: transport.ErrClosed},
		{name: "context ended", ctx: cancelled, wantErr: context.Canceled},
		{name: "closed and context ended", ctx: cancelled, before: func(s *Set[*edge]) { s.Close() }, wantErr: transport.ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New[*edge](1)
			if tt.before != nil {
				tt.before(s)
			}
			var wg sync.WaitGroup
			if tt.during != nil {
				wg.Go(func() {
					time.Sleep(20 * time.Millisecond) // let Accept block
					tt.during(s)
				})
			}
			got, err := s.Accept(tt.ctx(), errClosed)
			wg.Wait()
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Accept() error = %v, want %v", err, tt.wantErr)
			}
			if errors.Is(tt.wantErr, transport.ErrClosed) && err.Error() != "test: Accept: transport: closed" {
				t.Errorf("Accept() error = %q, want errClosed(\"Accept\")", err)
			}
			if got != tt.want {
				t.Errorf("Accept() = %v, want %v", got, tt.want)
			}
			if err != nil && got != nil {
				t.Errorf("Accept() with an error returned a non-nil edge %#v", got)
			}
		})
	}
}

// TestCloseRace tracks and untracks edges while the set closes: Close
// returns every edge that Track took and nobody untracked, and none that
// Track refused; Tracked after Close returns the edges still tracked.
func TestCloseRace(t *testing.T) {
	for range 50 {
		const n = 64
		s := New[*edge](0)
		es := newEdges(n)
		var tracked, untracked [n]bool // each written by one goroutine
		var got []*edge
		var wg sync.WaitGroup
		for i, e := range es {
			wg.Go(func() {
				tracked[i] = s.Track(e)
				if tracked[i] && i%3 == 0 {
					untracked[i] = s.Untrack(e)
				}
			})
		}
		wg.Go(func() { got, _ = s.Close() })
		wg.Wait()

		in := make(map[*edge]bool)
		for _, e := range got {
			if !tracked[e.id] {
				t.Fatalf("Close() returned edge %d, which Track refused", e.id)
			}
			in[e] = true
		}
		var live []*edge
		for i, e := range es {
			if tracked[i] && !untracked[i] {
				live = append(live, e)
				if !in[e] {
					t.Fatalf("Close() left out edge %d, tracked and not untracked", i)
				}
			}
		}
		if got := sorted(s.Tracked()); !slices.Equal(got, live) {
			t.Fatalf("Tracked() after Close = %v, want %v", got, live)
		}
	}
}
