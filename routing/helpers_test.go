package routing

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
)

// t0 is the fake clock's start; epochs in tests are UnixNano values below it.
var t0 = time.Unix(1_700_000_000, 0)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// randID returns a random version 4 UUID drawn from r.
func randID(r *rand.Rand) uuid.UUID {
	var u uuid.UUID
	for i := 0; i < 16; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			u[i+j] = byte(v >> (8 * j))
		}
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// id returns a fixed UUID whose last byte is b, so tests read and sort simply.
func id(b byte) uuid.UUID {
	var u uuid.UUID
	u[0] = 0x10
	u[15] = b
	return u
}

func sortedIDs(ids ...uuid.UUID) []uuid.UUID {
	s := slices.Clone(ids)
	slices.SortFunc(s, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	return slices.Compact(s)
}

func state(origin uuid.UUID, epoch, seq uint64, nbrs ...uuid.UUID) message.State {
	return message.State{Origin: origin, Epoch: epoch, Seq: seq, Neighbors: sortedIDs(nbrs...)}
}

// mustApply applies s and fails unless it is Accepted.
func mustApply(tb testing.TB, tab *Table, now time.Time, s message.State) {
	tb.Helper()
	if v, err := tab.ApplyState(now, s); v != Accepted || err != nil {
		tb.Fatalf("ApplyState(%s seq %d) = %v, %v; want accepted", s.Origin, s.Seq, v, err)
	}
}

// graph is an undirected graph over nodes[0..n); nodes[0] is the local node.
type graph struct {
	ids  []uuid.UUID
	adj  []map[int]bool // symmetric edges plus one-sided listings
	miss []bool         // no record for this node
}

// randomGraph builds n nodes, each linked to about deg random others.
// Some edges are one-sided (listed by one end only) when oneSided is set.
func randomGraph(r *rand.Rand, n, deg int, oneSided bool) *graph {
	g := &graph{ids: make([]uuid.UUID, n), adj: make([]map[int]bool, n), miss: make([]bool, n)}
	for i := range g.ids {
		g.ids[i] = randID(r)
		g.adj[i] = map[int]bool{}
	}
	for i := range n {
		for range deg / 2 {
			j := r.IntN(n)
			if j == i {
				continue
			}
			g.adj[i][j] = true
			if !oneSided || r.IntN(20) != 0 {
				g.adj[j][i] = true
			}
		}
	}
	return g
}

func (g *graph) nbrs(i int) []uuid.UUID {
	var out []uuid.UUID
	for j := range g.adj[i] {
		out = append(out, g.ids[j])
	}
	return sortedIDs(out...)
}

// load builds a Table for g.ids[0] holding every other node's record.
func (g *graph) load(tb testing.TB, now time.Time, cfg Config) *Table {
	tab := New(g.ids[0], 1, now, cfg)
	for _, n := range g.nbrs(0) {
		tab.AddNeighbor(now, n, 1)
	}
	for i := 1; i < len(g.ids); i++ {
		if !g.miss[i] {
			mustApply(tb, tab, now, state(g.ids[i], 1, 1, g.nbrs(i)...))
		}
	}
	return tab
}
