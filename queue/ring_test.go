package queue_test

import (
	"runtime"
	"testing"
	"weak"

	"github.com/distrirender/distrirender/queue"
)

func TestRing(t *testing.T) {
	// Each op: 'u' push (want ok), 'o' pop (want value/ok), 'e' peek.
	type op struct {
		kind byte
		v    int
		ok   bool
	}
	tests := []struct {
		name    string
		cap     int
		ops     []op
		wantLen int
	}{
		{"empty pop", 2, []op{{'o', 0, false}, {'e', 0, false}}, 0},
		{"fifo", 3, []op{{'u', 1, true}, {'u', 2, true}, {'e', 1, true}, {'o', 1, true}, {'o', 2, true}, {'o', 0, false}}, 0},
		{"full", 2, []op{{'u', 1, true}, {'u', 2, true}, {'u', 3, false}, {'o', 1, true}, {'u', 3, true}, {'o', 2, true}, {'o', 3, true}}, 0},
		{"cap one", 1, []op{{'u', 1, true}, {'u', 2, false}, {'e', 1, true}, {'o', 1, true}, {'u', 2, true}}, 1},
		{"wrap many", 3, []op{
			{'u', 1, true}, {'u', 2, true}, {'o', 1, true}, {'u', 3, true}, {'u', 4, true},
			{'o', 2, true}, {'u', 5, true}, {'o', 3, true}, {'o', 4, true}, {'e', 5, true}, {'u', 6, true},
		}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := queue.NewRing[int](tc.cap)
			if r.Cap() != tc.cap {
				t.Fatalf("Cap = %d", r.Cap())
			}
			for i, o := range tc.ops {
				switch o.kind {
				case 'u':
					if ok := r.Push(o.v); ok != o.ok {
						t.Fatalf("op %d: Push(%d) = %v, want %v", i, o.v, ok, o.ok)
					}
				case 'o', 'e':
					var v int
					var ok bool
					if o.kind == 'o' {
						v, ok = r.Pop()
					} else {
						v, ok = r.Peek()
					}
					if v != o.v || ok != o.ok {
						t.Fatalf("op %d %c: got %d, %v, want %d, %v", i, o.kind, v, ok, o.v, o.ok)
					}
				}
				if r.Full() != (r.Len() == r.Cap()) {
					t.Fatalf("op %d: Full = %v with Len %d", i, r.Full(), r.Len())
				}
			}
			if r.Len() != tc.wantLen {
				t.Fatalf("Len = %d, want %d", r.Len(), tc.wantLen)
			}
		})
	}
}

// TestRingModel compares Ring against a slice on a long pseudo-random run.
func TestRingModel(t *testing.T) {
	r := queue.NewRing[int](7)
	var model []int
	x := uint32(1)
	for i := range 100000 {
		x = x*1664525 + 1013904223
		if x>>16&1 == 0 {
			ok := r.Push(i)
			if ok != (len(model) < 7) {
				t.Fatalf("step %d: Push = %v with %d values", i, ok, len(model))
			}
			if ok {
				model = append(model, i)
			}
		} else {
			v, ok := r.Pop()
			if ok != (len(model) > 0) || (ok && v != model[0]) {
				t.Fatalf("step %d: Pop = %d, %v, model %v", i, v, ok, model)
			}
			if ok {
				model = model[1:]
			}
		}
		if r.Len() != len(model) {
			t.Fatalf("step %d: Len = %d, want %d", i, r.Len(), len(model))
		}
	}
}

// TestRingClearsPoppedSlots checks that a popped value is not kept alive.
func TestRingClearsPoppedSlots(t *testing.T) {
	r := queue.NewRing[*[1 << 20]byte](4)
	body := new([1 << 20]byte)
	w := weak.Make(body)
	r.Push(body)
	if got, _ := r.Pop(); got != body {
		t.Fatal("Pop returned a different pointer")
	}
	body = nil
	for range 10 {
		runtime.GC()
		if w.Value() == nil {
			runtime.KeepAlive(r)
			return
		}
	}
	t.Fatal("popped value still reachable: Ring retained it")
}

func BenchmarkRingPushPop(b *testing.B) {
	r := queue.NewRing[[]byte](1024)
	v := make([]byte, 16)
	b.ReportAllocs()
	for b.Loop() {
		r.Push(v)
		r.Pop()
	}
}

func BenchmarkRingFillDrain(b *testing.B) {
	r := queue.NewRing[int](1024)
	b.ReportAllocs()
	for b.Loop() {
		for i := 0; r.Push(i); i++ {
		}
		for {
			if _, ok := r.Pop(); !ok {
				break
			}
		}
	}
}
