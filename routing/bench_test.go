package routing

import (
	"fmt"
	"slices"
	"testing"

	"github.com/distrirender/distrirender/message"
)

// benchTable loads a random graph of n nodes with about 7 neighbours each
// (fixed seed, so runs compare) and returns it with a remote node whose
// edges the benchmark toggles.
func benchTable(b *testing.B, n int) (*Table, *graph, int) {
	b.Helper()
	g := randomGraph(newRand(1), n, 7, false)
	tab := g.load(b, t0, Config{})
	tab.Version()
	for i := 1; i < n; i++ {
		if len(g.adj[i]) > 0 {
			return tab, g, i
		}
	}
	b.Fatal("no node with neighbours")
	return nil, nil, 0
}

// BenchmarkRecompute measures one full route recomputation after a change:
// each iteration applies a destroy_edge or new_edge for one remote edge and
// then queries Version, which recomputes.
func BenchmarkRecompute(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			tab, g, u := benchTable(b, n)
			origin := g.ids[u]
			peer := g.nbrs(u)[0]
			seq := uint64(1)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				seq++
				c := message.EdgeChange{Origin: origin, Epoch: 1, Seq: seq, Peer: peer}
				if v, err := tab.ApplyEdgeChange(t0, i%2 == 1, c); v != Accepted {
					b.Fatalf("%v %v", v, err)
				}
				tab.Version()
			}
			b.StopTimer()
			b.ReportMetric(float64(len(tab.Reachable())), "reachable")
		})
	}
	// cold: as after a record was added or removed, every interned adjacency
	// list is rebuilt from UUIDs before the search.
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("cold/nodes=%d", n), func(b *testing.B) {
			tab, _, _ := benchTable(b, n)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				tab.slotGen++
				tab.dirty = true
				tab.Version()
			}
		})
	}
}

// BenchmarkApplyState measures applying full records to a 1000-node table:
// "refresh" re-originates a record with the same neighbours (the common case:
// no recomputation needed), "changed" alternates between two neighbour lists
// and includes the recomputation the change causes.
func BenchmarkApplyState(b *testing.B) {
	for _, mode := range []string{"refresh", "changed"} {
		b.Run(mode, func(b *testing.B) {
			tab, _, _ := benchTable(b, 1000)
			states := slices.DeleteFunc(tab.States(nil), func(s message.State) bool { return s.Origin == tab.Self() })
			alt := make([]message.State, len(states))
			for i, s := range states {
				alt[i] = s
				if mode == "changed" && len(s.Neighbors) > 0 {
					alt[i].Neighbors = s.Neighbors[1:]
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				j := i % len(states)
				s := &states[j]
				if i/len(states)%2 == 1 {
					s = &alt[j]
				}
				s.Seq = uint64(2 + i/len(states))
				if v, err := tab.ApplyState(t0, *s); v != Accepted {
					b.Fatalf("%v %v", v, err)
				}
				if mode == "changed" {
					tab.Version()
				}
			}
		})
	}
}
