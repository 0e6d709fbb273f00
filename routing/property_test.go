package routing

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/testutil"
	"github.com/distrirender/distrirender/message"
)

// model is a deliberately naive link-state database: maps of sets and the
// ordering rules written out plainly. The property test checks the Table
// against it.
type model struct {
	self  uuid.UUID
	selfN map[uuid.UUID]bool
	recs  map[uuid.UUID]*mrec
}

type mrec struct {
	epoch, seq uint64
	nbrs       map[uuid.UUID]bool
	expires    time.Time // kept by FuzzTable only
}

func newModel(self uuid.UUID) *model {
	return &model{self: self, selfN: map[uuid.UUID]bool{}, recs: map[uuid.UUID]*mrec{}}
}

func setOf(ids []uuid.UUID) map[uuid.UUID]bool {
	m := map[uuid.UUID]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}

func (m *model) applyState(s message.State) Verdict {
	r := m.recs[s.Origin]
	switch {
	case r == nil, s.Epoch > r.epoch, s.Epoch == r.epoch && s.Seq > r.seq:
		m.recs[s.Origin] = &mrec{epoch: s.Epoch, seq: s.Seq, nbrs: setOf(s.Neighbors)}
		return Accepted
	case s.Epoch == r.epoch && s.Seq == r.seq:
		return Duplicate
	}
	return Stale
}

func (m *model) applyChange(added bool, c message.EdgeChange) Verdict {
	r := m.recs[c.Origin]
	switch {
	case r == nil, c.Epoch > r.epoch:
		return Gap
	case c.Epoch < r.epoch, c.Seq < r.seq:
		return Stale
	case c.Seq == r.seq:
		return Duplicate
	case c.Seq != r.seq+1:
		return Gap
	}
	r.seq = c.Seq
	if added {
		r.nbrs[c.Peer] = true
	} else {
		delete(r.nbrs, c.Peer)
	}
	return Accepted
}

// lists reports whether x's record lists y (the local node included).
func (m *model) lists(x, y uuid.UUID) bool {
	if x == m.self {
		return m.selfN[y]
	}
	r := m.recs[x]
	return r != nil && r.nbrs[y]
}

func (m *model) known(x uuid.UUID) bool { return x == m.self || m.recs[x] != nil }

func (m *model) bfs(src uuid.UUID) map[uuid.UUID]int {
	dist := map[uuid.UUID]int{src: 0}
	q := []uuid.UUID{src}
	for len(q) > 0 {
		u := q[0]
		q = q[1:]
		var nb map[uuid.UUID]bool
		if u == m.self {
			nb = m.selfN
		} else {
			nb = m.recs[u].nbrs
		}
		for v := range nb {
			if _, seen := dist[v]; seen || !m.known(v) || !m.lists(v, u) {
				continue
			}
			dist[v] = dist[u] + 1
			q = append(q, v)
		}
	}
	return dist
}

// routes returns the distance and the lowest valid next hop of every
// reachable node: a neighbour n is a valid next hop to dst iff the edge to n
// is confirmed and dist(n, dst) == dist(self, dst) - 1.
func (m *model) routes() (map[uuid.UUID]int, map[uuid.UUID]uuid.UUID) {
	dist := m.bfs(m.self)
	from := map[uuid.UUID]map[uuid.UUID]int{}
	for n := range m.selfN {
		if m.lists(n, m.self) {
			from[n] = m.bfs(n)
		}
	}
	hops := map[uuid.UUID]uuid.UUID{}
	for dst, d := range dist {
		if dst == m.self {
			continue
		}
		best, found := uuid.Nil, false
		for n, dn := range from {
			if x, ok := dn[dst]; ok && x == d-1 && (!found || bytes.Compare(n[:], best[:]) < 0) {
				best, found = n, true
			}
		}
		hops[dst] = best
	}
	return dist, hops
}

// check compares the Table with the model: the database and every route.
func check(t *testing.T, tab *Table, m *model, universe []uuid.UUID) {
	t.Helper()
	states := tab.States(nil)
	if len(states) != len(m.recs)+1 {
		t.Fatalf("table holds %d records; model %d", len(states), len(m.recs)+1)
	}
	for _, s := range states {
		if s.Origin == m.self {
			if !equalIDs(s.Neighbors, sortedIDs(slices.Collect(maps.Keys(m.selfN))...)) {
				t.Fatalf("local neighbours %v", s.Neighbors)
			}
			continue
		}
		r := m.recs[s.Origin]
		if r == nil || r.epoch != s.Epoch || r.seq != s.Seq || !equalIDs(s.Neighbors, sortedIDs(slices.Collect(maps.Keys(r.nbrs))...)) {
			t.Fatalf("record %s: table (%d,%d,%v) model %+v", s.Origin, s.Epoch, s.Seq, s.Neighbors, r)
		}
	}
	entries := 0
	for _, r := range m.recs {
		entries += len(r.nbrs)
	}
	if tab.entries != entries {
		t.Fatalf("table counts %d neighbour entries; model %d", tab.entries, entries)
	}
	dist, hops := m.routes()
	for _, dst := range universe {
		d, ok := tab.Distance(dst)
		wd, wok := dist[dst]
		if ok != wok || d != wd {
			t.Fatalf("Distance(%s) = %d, %v; naive %d, %v", dst, d, ok, wd, wok)
		}
		h, ok := tab.NextHop(dst)
		wh, wok := hops[dst]
		if ok != wok || h != wh {
			t.Fatalf("NextHop(%s) = %s, %v; naive %s, %v (distance %d)", dst, h, ok, wh, wok, wd)
		}
	}
	var want []uuid.UUID
	for id := range dist {
		if id != m.self {
			want = append(want, id)
		}
	}
	if got := tab.Reachable(); !equalIDs(got, sortedIDs(want...)) || tab.ReachableCount() != len(want) {
		t.Fatalf("Reachable has %d nodes (count %d); naive %d", len(got), tab.ReachableCount(), len(want))
	}
	want = want[:0]
	for id, r := range m.recs {
		if _, ok := dist[id]; !ok && len(r.nbrs) > 0 {
			want = append(want, id)
		}
	}
	prefix := []uuid.UUID{m.self}
	if got := tab.Unreached(prefix); !equalIDs(got[1:], sortedIDs(want...)) || got[0] != m.self {
		t.Fatalf("Unreached = %v; naive %v", got, sortedIDs(want...))
	}
	tp := tab.Topology()
	for _, n := range tp.Nodes {
		if n.Distance != -1 || dist[n.ID] != 0 {
			if wd, ok := dist[n.ID]; (ok && wd != n.Distance) || (!ok && n.Distance != -1) || hops[n.ID] != n.NextHop {
				t.Fatalf("Topology entry %s: %d via %s", n.ID, n.Distance, n.NextHop)
			}
		}
	}
}

// event is one input the property test feeds to the Table.
type event struct {
	state  *message.State
	change *message.EdgeChange
	added  bool
}

// history generates the inputs that describe node i of g: old records, a
// base record, a chain of edge changes leading to g's neighbours and, usually,
// the final full record.
func history(r *rand.Rand, g *graph, i int) []event {
	origin := g.ids[i]
	final := g.nbrs(i)
	epoch := uint64(10 + r.IntN(3))
	randNbrs := func() []uuid.UUID {
		var out []uuid.UUID
		for range r.IntN(6) {
			if j := r.IntN(len(g.ids)); j != i {
				out = append(out, g.ids[j])
			}
		}
		return sortedIDs(out...)
	}
	var evs []event
	st := func(e, s uint64, n []uuid.UUID) {
		evs = append(evs, event{state: &message.State{Origin: origin, Epoch: e, Seq: s, Neighbors: n, FreeSlots: uint16(s)}})
	}
	// A previous incarnation with a larger sequence number.
	if r.IntN(2) == 0 {
		st(epoch-1, uint64(100+r.IntN(100)), randNbrs())
	}
	baseSeq := uint64(2 + r.IntN(5))
	if r.IntN(2) == 0 {
		st(epoch, baseSeq-1, randNbrs())
	}
	// The base: final with some neighbours missing and some extra.
	set := map[uuid.UUID]bool{}
	for _, n := range final {
		if r.IntN(3) != 0 {
			set[n] = true
		}
	}
	for _, n := range randNbrs() {
		set[n] = true
	}
	st(epoch, baseSeq, sortedIDs(slices.Collect(maps.Keys(set))...))
	// Edge changes from base to final.
	var ops []event
	for n := range set {
		if !slices.Contains(final, n) {
			ops = append(ops, event{change: &message.EdgeChange{Origin: origin, Epoch: epoch, Peer: n}})
		}
	}
	for _, n := range final {
		if !set[n] {
			ops = append(ops, event{change: &message.EdgeChange{Origin: origin, Epoch: epoch, Peer: n}, added: true})
		}
	}
	r.Shuffle(len(ops), func(a, b int) { ops[a], ops[b] = ops[b], ops[a] })
	seq := baseSeq
	for _, op := range ops {
		seq++
		op.change.Seq = seq
		op.change.FreeSlots = uint16(seq)
		evs = append(evs, op)
	}
	if r.IntN(4) != 0 {
		st(epoch, seq, final)
	}
	return evs
}

// feed applies evs in order to both the Table and the model, comparing verdicts.
func feed(t *testing.T, tab *Table, m *model, now time.Time, evs []event) map[Verdict]int {
	t.Helper()
	count := map[Verdict]int{}
	for _, ev := range evs {
		var got, want Verdict
		var err error
		if ev.state != nil {
			got, err = tab.ApplyState(now, *ev.state)
			want = m.applyState(*ev.state)
		} else {
			got, err = tab.ApplyEdgeChange(now, ev.added, *ev.change)
			want = m.applyChange(ev.added, *ev.change)
		}
		if got != want || err != nil {
			t.Fatalf("verdict %v, %v; naive %v (state %+v change %+v)", got, err, want, ev.state, ev.change)
		}
		count[got]++
	}
	return count
}

// TestRoutesMatchNaive feeds random graphs' histories in random order, with
// duplicates, and checks every verdict, record and route against the naive
// model; then ages out half the records and restarts some nodes, checking
// again.
func TestRoutesMatchNaive(t *testing.T) {
	base := testutil.Seed(t)
	sizes := []int{1, 2, 5, 30, 200, 1000}
	const seedsPerSize = 4
	for si, n := range sizes {
		for k := range seedsPerSize {
			seed := base + uint64(si*seedsPerSize+k)
			t.Run(fmt.Sprintf("n=%d/seed=%d", n, seed), func(t *testing.T) {
				t.Parallel()
				propertyRun(t, seed, n)
			})
		}
	}
}

func propertyRun(t *testing.T, seed uint64, n int) {
	r := newRand(seed)
	cfg := Config{MaxAge: 90 * time.Second, RefreshInterval: 30 * time.Second}
	g := randomGraph(r, n, 4+r.IntN(6), true)
	// Give the local node up to 8 confirmed neighbours so that most of the
	// graph stays reachable through the phases below.
	for range 8 {
		if j := r.IntN(n); j != 0 {
			g.adj[0][j], g.adj[j][0] = true, true
		}
	}
	for i := 1; i < n; i++ {
		g.miss[i] = r.IntN(25) == 0
	}
	tab := New(g.ids[0], 1, t0, cfg)
	m := newModel(g.ids[0])
	universe := append(slices.Clone(g.ids), randID(r))
	for _, nb := range g.nbrs(0) {
		tab.AddNeighbor(t0, nb, 1)
		m.selfN[nb] = true
	}

	// Phase 1: histories, interleaved at random; half of the nodes keep their
	// own events in order so that edge-change chains apply.
	var evs []event
	var owner []int
	for i := 1; i < n; i++ {
		if g.miss[i] {
			continue
		}
		h := history(r, g, i)
		evs = append(evs, h...)
		for range h {
			owner = append(owner, i)
		}
	}
	for range len(evs) / 5 { // duplicates
		j := r.IntN(len(evs))
		evs = append(evs, evs[j])
		owner = append(owner, owner[j])
	}
	perm := r.Perm(len(evs))
	shuffled := make([]event, len(evs))
	ordered := map[int]bool{}
	for i := 1; i < n; i++ {
		ordered[i] = r.IntN(2) == 0
	}
	// Positions of each ordered node's events, filled in original order.
	slots := map[int][]int{}
	for j, p := range perm {
		if ordered[owner[j]] {
			slots[owner[j]] = append(slots[owner[j]], p)
		} else {
			shuffled[p] = evs[j]
		}
	}
	next := map[int]int{}
	for _, ps := range slots {
		slices.Sort(ps)
	}
	for j := range evs {
		if o := owner[j]; ordered[o] {
			shuffled[slots[o][next[o]]] = evs[j]
			next[o]++
		}
	}
	count := feed(t, tab, m, t0, shuffled)
	check(t, tab, m, universe)
	t.Logf("phase 1: %d events, verdicts %v, %d reachable", len(evs), count, len(tab.Reachable()))
	v1 := tab.Version()

	// Phase 2: refresh half of the records half-way through MaxAge, then age
	// the rest out.
	now := t0.Add(cfg.MaxAge / 2)
	var refreshed, expired []uuid.UUID
	for _, s := range tab.States(nil) {
		if s.Origin == m.self {
			continue
		}
		if r.IntN(4) != 0 {
			s.Seq++
			if v := m.applyState(s); v != Accepted {
				t.Fatalf("model refused a refresh: %v", v)
			}
			mustApply(t, tab, now, s)
			refreshed = append(refreshed, s.Origin)
		} else {
			expired = append(expired, s.Origin)
		}
	}
	now = t0.Add(cfg.MaxAge)
	if got := tab.Expire(now); !equalIDs(got, sortedIDs(expired...)) {
		t.Fatalf("Expire removed %d records; want %d", len(got), len(expired))
	}
	for _, o := range expired {
		delete(m.recs, o)
	}
	check(t, tab, m, universe)
	v2 := tab.Version()
	t.Logf("phase 2: %d expired, %d reachable", len(expired), len(tab.Reachable()))

	// Phase 3: restarts (new epochs, new neighbours, reusing freed slots),
	// and live edge changes on refreshed records.
	var evs3 []event
	for _, o := range expired {
		if r.IntN(2) == 0 {
			nb := g.nbrs(slices.Index(g.ids, o))
			if len(nb) > 0 && r.IntN(2) == 0 {
				nb = slices.Delete(nb, 0, 1)
			}
			evs3 = append(evs3, event{state: &message.State{Origin: o, Epoch: 50, Seq: 1, Neighbors: nb}})
		}
	}
	for _, o := range refreshed {
		if r.IntN(3) != 0 {
			continue
		}
		rec := m.recs[o]
		peer := universe[r.IntN(len(universe))]
		if peer == o {
			continue
		}
		evs3 = append(evs3, event{change: &message.EdgeChange{Origin: o, Epoch: rec.epoch, Seq: rec.seq + 1, Peer: peer}, added: !rec.nbrs[peer]})
	}
	r.Shuffle(len(evs3), func(a, b int) { evs3[a], evs3[b] = evs3[b], evs3[a] })
	feed(t, tab, m, now, evs3)
	// And a local change.
	if nb := g.nbrs(0); len(nb) > 0 {
		tab.RemoveNeighbor(now, nb[0], 1)
		delete(m.selfN, nb[0])
	}
	check(t, tab, m, universe)
	v3 := tab.Version()
	if v1 > v2 || v2 > v3 {
		t.Fatalf("Version went backwards: %d %d %d", v1, v2, v3)
	}
	t.Logf("versions %d %d %d, %d reachable, diameter %d", v1, v2, v3, len(tab.Reachable()), tab.Topology().Diameter())
}
