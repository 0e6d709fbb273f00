package memory

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestItemHeap checks the heap against a sorted slice on random operations.
func TestItemHeap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h itemHeap
	var model []item
	base := time.Unix(0, 0)
	cmp := func(a, b item) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return int(a.seq) - int(b.seq)
	}
	for i := range 20000 {
		if len(h) == 0 || r.IntN(3) > 0 && len(h) < 100 {
			it := item{at: base.Add(time.Duration(r.IntN(50))), seq: uint64(i)}
			h.push(it)
			model = append(model, it)
			continue
		}
		slices.SortFunc(model, cmp)
		got := h.pop()
		if got.at != model[0].at || got.seq != model[0].seq {
			t.Fatalf("step %d: popped %+v, want %+v", i, got, model[0])
		}
		model = model[1:]
	}
}
