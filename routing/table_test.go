package routing

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
)

func TestConfigDefaults(t *testing.T) {
	got := Config{}.WithDefaults()
	want := Config{MaxAge: 90 * time.Second, RefreshInterval: 30 * time.Second, MaxSeqJump: 1 << 20, MaxEpochSkew: time.Hour, MaxRecords: 1 << 14, MaxNeighborEntries: 1 << 20}
	if got != want {
		t.Fatalf("defaults %+v; want %+v", got, want)
	}
	custom := Config{MaxAge: time.Second, RefreshInterval: 2 * time.Second, MaxSeqJump: 3, MaxEpochSkew: 4, MaxRecords: 5, MaxNeighborEntries: 6}
	if got := custom.WithDefaults(); got != custom {
		t.Fatalf("WithDefaults changed set fields: %+v", got)
	}
}

func TestLocalRecord(t *testing.T) {
	tab := New(self, selfEpoch, t0, Config{})
	if tab.Self() != self {
		t.Fatalf("Self = %s", tab.Self())
	}
	l := tab.Local()
	if l.Origin != self || l.Epoch != selfEpoch || l.Seq != 1 || l.Neighbors != nil || l.Addrs != nil {
		t.Fatalf("initial local record %+v", l)
	}

	e := tab.AddNeighbor(t0, b, 9)
	want := message.EdgeChange{Origin: self, Epoch: selfEpoch, Seq: 2, Peer: b, FreeSlots: 9}
	if e != want {
		t.Fatalf("AddNeighbor = %+v; want %+v", e, want)
	}
	tab.AddNeighbor(t0, a, 8)
	tab.AddNeighbor(t0, c, 7)
	if e := tab.AddNeighbor(t0, a, 6); e.Seq != 5 || e.FreeSlots != 6 {
		t.Fatalf("re-adding a neighbour: %+v; want seq 5, free 6", e)
	}
	if l := tab.Local(); !equalIDs(l.Neighbors, sortedIDs(a, b, c)) || l.Seq != 5 || l.FreeSlots != 6 {
		t.Fatalf("local record %+v", l)
	}

	if _, ok := tab.RemoveNeighbor(t0, id(0x77), 1); ok {
		t.Fatal("RemoveNeighbor of a stranger reported a change")
	}
	e, ok := tab.RemoveNeighbor(t0, b, 7)
	if !ok || e != (message.EdgeChange{Origin: self, Epoch: selfEpoch, Seq: 6, Peer: b, FreeSlots: 7}) {
		t.Fatalf("RemoveNeighbor = %+v, %v", e, ok)
	}

	addrs := []string{"quic://10.0.0.1:4000", "webrtc:peer-1"}
	s, ok := tab.SetLocal(t0, addrs, 7)
	if !ok || s.Seq != 7 || !slices.Equal(s.Addrs, addrs) || !equalIDs(s.Neighbors, sortedIDs(a, c)) {
		t.Fatalf("SetLocal = %+v, %v", s, ok)
	}
	addrs[0] = "mutated"
	if _, ok := tab.SetLocal(t0, []string{"quic://10.0.0.1:4000", "webrtc:peer-1"}, 7); ok {
		t.Fatal("SetLocal without a change reported one (or kept the caller's slice)")
	}
	if _, ok := tab.SetLocal(t0, []string{"quic://10.0.0.1:4000", "webrtc:peer-1"}, 6); !ok {
		t.Fatal("SetLocal with new free slots reported no change")
	}

	// Local returns copies.
	l = tab.Local()
	l.Neighbors[0] = uuid.Nil
	l.Addrs[0] = "x"
	if l2 := tab.Local(); l2.Neighbors[0] == uuid.Nil || l2.Addrs[0] == "x" {
		t.Fatal("Local shares memory with the table")
	}
}

func TestAddNeighborPanics(t *testing.T) {
	for _, peer := range []uuid.UUID{uuid.Nil, self} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("AddNeighbor(%s) did not panic", peer)
				}
			}()
			New(self, 1, t0, Config{}).AddNeighbor(t0, peer, 0)
		}()
	}
}

func TestRefresh(t *testing.T) {
	cfg := Config{RefreshInterval: 30 * time.Second, MaxAge: 90 * time.Second}
	tab := New(self, selfEpoch, t0, cfg)
	if d := tab.NextDeadline(); !d.Equal(t0.Add(30 * time.Second)) {
		t.Fatalf("NextDeadline = %v", d)
	}
	if _, ok := tab.Refresh(t0.Add(30*time.Second - 1)); ok {
		t.Fatal("Refresh before the interval")
	}
	s, ok := tab.Refresh(t0.Add(30 * time.Second))
	if !ok || s.Seq != 2 {
		t.Fatalf("Refresh = %+v, %v; want seq 2", s, ok)
	}
	// Any origination restarts the interval.
	tab.AddNeighbor(t0.Add(40*time.Second), a, 1)
	if d := tab.NextDeadline(); !d.Equal(t0.Add(70 * time.Second)) {
		t.Fatalf("NextDeadline after AddNeighbor = %v", d)
	}
	if _, ok := tab.Refresh(t0.Add(69 * time.Second)); ok {
		t.Fatal("Refresh before the interval")
	}
	if s, ok := tab.Refresh(t0.Add(75 * time.Second)); !ok || s.Seq != 4 || !equalIDs(s.Neighbors, []uuid.UUID{a}) {
		t.Fatalf("Refresh = %+v, %v", s, ok)
	}
}

func TestExpiry(t *testing.T) {
	cfg := Config{RefreshInterval: 30 * time.Second, MaxAge: 90 * time.Second}
	tab := New(self, selfEpoch, t0, cfg)
	tab.AddNeighbor(t0, a, 1)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

	mustApply(t, tab, at(0), state(a, 1, 1, self, b))
	mustApply(t, tab, at(10), state(b, 1, 1, a, c))
	mustApply(t, tab, at(20), state(c, 1, 1, b))
	if d := tab.NextDeadline(); !d.Equal(at(30)) {
		t.Fatalf("NextDeadline = %v; want the local refresh at 30s", d)
	}
	tab.Refresh(at(30))
	if d := tab.NextDeadline(); !d.Equal(at(60)) {
		t.Fatalf("NextDeadline = %v; want the local refresh at 60s", d)
	}
	tab.Refresh(at(60))
	// a's record would expire at 90s: refresh it at 80s with an edge change.
	if v, err := tab.ApplyEdgeChange(at(80), true, message.EdgeChange{Origin: a, Epoch: 1, Seq: 2, Peer: b}); v != Accepted {
		t.Fatalf("edge change: %v, %v", v, err)
	}
	// A duplicate does not refresh c's record.
	if v, _ := tab.ApplyState(at(85), state(c, 1, 1, b)); v != Duplicate {
		t.Fatalf("duplicate: %v", v)
	}
	if got := tab.Reachable(); !equalIDs(got, sortedIDs(a, b, c)) {
		t.Fatalf("Reachable = %v", got)
	}
	v0 := tab.Version()
	if d := tab.NextDeadline(); !d.Equal(at(90)) {
		t.Fatalf("NextDeadline = %v; want the local refresh at 90s", d)
	}
	tab.Refresh(at(90))
	if d := tab.NextDeadline(); !d.Equal(at(100)) {
		t.Fatalf("NextDeadline = %v; want b's expiry at 100s", d)
	}
	if got := tab.Expire(at(100).Add(-1)); len(got) != 0 {
		t.Fatalf("Expire just before 100s removed %v", got)
	}
	if got := tab.Expire(at(100)); !equalIDs(got, []uuid.UUID{b}) {
		t.Fatalf("Expire(100s) = %v; want [b]", got)
	}
	if tab.Known(b) {
		t.Fatal("b still known")
	}
	if got := tab.Reachable(); !equalIDs(got, []uuid.UUID{a}) {
		t.Fatalf("Reachable after expiry = %v; want [a]", got)
	}
	if tab.Version() == v0 {
		t.Fatal("Version unchanged after routes changed")
	}
	if d := tab.NextDeadline(); !d.Equal(at(110)) {
		t.Fatalf("NextDeadline = %v; want c's expiry at 110s", d)
	}
	if got := tab.Expire(at(1000)); !equalIDs(got, sortedIDs(a, c)) {
		t.Fatalf("Expire(1000s) = %v", got)
	}
	if !tab.Known(self) || len(tab.States(nil)) != 1 {
		t.Fatal("the local record expired")
	}
	if d := tab.NextDeadline(); !d.Equal(at(120)) {
		t.Fatalf("NextDeadline = %v; want the local refresh at 120s", d)
	}
}

func TestStates(t *testing.T) {
	tab := verdictTable(t)
	mustApply(t, tab, t0, state(c, 1, 1, b))
	all := tab.States(nil)
	if len(all) != 3 || all[0].Origin != self || all[1].Origin != a || all[2].Origin != c {
		t.Fatalf("States(nil) = %+v", all)
	}
	got := tab.States([]uuid.UUID{c, b, c, self, c})
	if len(got) != 2 || got[0].Origin != c || got[1].Origin != self {
		t.Fatalf("States(c b c self c) = %+v", got)
	}
	got[0].Neighbors[0] = uuid.Nil
	if tab.States([]uuid.UUID{c})[0].Neighbors[0] != b {
		t.Fatal("States shares memory with the table")
	}
}

func TestNextHopTieBreakAndOneSided(t *testing.T) {
	d, e := id(0xd0), id(0xe0)
	tab := New(self, 1, t0, Config{})
	tab.AddNeighbor(t0, a, 0)
	tab.AddNeighbor(t0, b, 0)
	tab.AddNeighbor(t0, c, 0)
	// self - a, self - b, self -/- c (c does not list self).
	// a - d, b - d, d - e; c lists d but d does not list c.
	mustApply(t, tab, t0, state(b, 1, 1, self, d))
	mustApply(t, tab, t0, state(c, 1, 1, d))
	mustApply(t, tab, t0, state(d, 1, 1, a, b, e))
	mustApply(t, tab, t0, state(e, 1, 1, d))
	if h, ok := tab.NextHop(d); !ok || h != b {
		t.Fatalf("NextHop(d) = %s, %v; want b", h, ok)
	}
	mustApply(t, tab, t0, state(a, 1, 1, self, d))
	want := map[uuid.UUID]struct {
		hop  uuid.UUID
		dist int
	}{a: {a, 1}, b: {b, 1}, d: {a, 2}, e: {a, 3}}
	for dst, w := range want {
		h, ok := tab.NextHop(dst)
		n, ok2 := tab.Distance(dst)
		if !ok || !ok2 || h != w.hop || n != w.dist {
			t.Errorf("route to %s = %s/%d (%v %v); want %s/%d", dst, h, n, ok, ok2, w.hop, w.dist)
		}
	}
	for _, dst := range []uuid.UUID{c, id(0x99), self} {
		if h, ok := tab.NextHop(dst); ok {
			t.Errorf("NextHop(%s) = %s; want none", dst, h)
		}
	}
	if _, ok := tab.Distance(c); ok {
		t.Error("c reachable over a one-sided edge")
	}
	if n, ok := tab.Distance(self); !ok || n != 0 {
		t.Errorf("Distance(self) = %d, %v", n, ok)
	}
	if got := tab.Reachable(); !equalIDs(got, sortedIDs(a, b, d, e)) {
		t.Errorf("Reachable = %v", got)
	}
	// c confirms the edge to self: now reachable directly.
	mustApply(t, tab, t0, state(c, 1, 2, self, d))
	if n, ok := tab.Distance(c); !ok || n != 1 {
		t.Errorf("Distance(c) = %d, %v; want 1", n, ok)
	}
	// Still a: c-d is one-sided.
	if h, _ := tab.NextHop(d); h != a {
		t.Errorf("NextHop(d) = %s; want a", h)
	}
}

func TestVersion(t *testing.T) {
	tab := New(self, 1, t0, Config{})
	if v := tab.Version(); v != 0 {
		t.Fatalf("initial Version = %d", v)
	}
	steps := []struct {
		name   string
		do     func()
		bumped bool
	}{
		{"one-sided local edge", func() { tab.AddNeighbor(t0, a, 0) }, false},
		{"record without the edge", func() { mustApply(t, tab, t0, state(a, 1, 1, b)) }, false},
		{"edge confirmed", func() { mustApply(t, tab, t0, state(a, 1, 2, self, b)) }, true},
		{"refresh, same contents", func() { mustApply(t, tab, t0, state(a, 1, 3, self, b)) }, false},
		{"addresses change", func() {
			s := state(a, 1, 4, self, b)
			s.Addrs = []string{"x"}
			s.FreeSlots = 3
			mustApply(t, tab, t0, s)
		}, false},
		{"b appears one-sided", func() { mustApply(t, tab, t0, state(b, 1, 1, c)) }, false},
		{"b confirms a", func() { mustApply(t, tab, t0, state(b, 1, 2, a, c)) }, true},
		{"local SetLocal", func() { tab.SetLocal(t0, []string{"y"}, 4) }, false},
		{"local refresh", func() { tab.Refresh(t0.Add(time.Hour)) }, false},
		{"c appears, one-sided back", func() { mustApply(t, tab, t0, state(c, 1, 1)) }, false},
		{"c confirms b", func() { mustApply(t, tab, t0, state(c, 1, 2, b)) }, true},
		{"b drops a", func() { tab.ApplyEdgeChange(t0, false, message.EdgeChange{Origin: b, Epoch: 1, Seq: 3, Peer: a}) }, true},
		{"b restarts with a", func() { mustApply(t, tab, t0, state(b, 2, 1, a, c)) }, true},
		{"local edge removed", func() { tab.RemoveNeighbor(t0, a, 0) }, true},
		{"nothing reachable, more records", func() { mustApply(t, tab, t0, state(id(0x55), 1, 1, a)) }, false},
	}
	last := tab.Version()
	for _, st := range steps {
		st.do()
		v := tab.Version()
		if (v != last) != st.bumped {
			t.Fatalf("%s: Version %d -> %d; want bumped=%v", st.name, last, v, st.bumped)
		}
		if v != tab.Version() || v != tab.Topology().Version {
			t.Fatalf("%s: Version not stable across queries", st.name)
		}
		last = v
	}
}

func TestTopology(t *testing.T) {
	// A line self - a - b - c plus an island d (listed by c, not confirmed).
	d := id(0xd0)
	tab := New(self, 7, t0, Config{})
	tab.AddNeighbor(t0, a, 2)
	tab.SetLocal(t0, []string{"quic://self"}, 2)
	mustApply(t, tab, t0, state(a, 1, 1, self, b))
	mustApply(t, tab, t0, state(b, 1, 1, a, c))
	mustApply(t, tab, t0, state(c, 1, 1, b, d))
	mustApply(t, tab, t0, state(d, 1, 1))
	tp := tab.Topology()
	if tp.Self != self || len(tp.Nodes) != 5 {
		t.Fatalf("Topology = %+v", tp)
	}
	for i := 1; i < len(tp.Nodes); i++ {
		if compareID(tp.Nodes[i-1].ID, tp.Nodes[i].ID) >= 0 {
			t.Fatal("Nodes not sorted")
		}
	}
	want := map[uuid.UUID]struct {
		dist int
		hop  uuid.UUID
		nbrs []uuid.UUID
	}{
		self: {0, uuid.Nil, []uuid.UUID{a}},
		a:    {1, a, sortedIDs(self, b)},
		b:    {2, a, sortedIDs(a, c)},
		c:    {3, a, []uuid.UUID{b}},
		d:    {-1, uuid.Nil, nil},
	}
	for _, n := range tp.Nodes {
		w := want[n.ID]
		if n.Distance != w.dist || n.NextHop != w.hop || !equalIDs(n.Neighbors, w.nbrs) {
			t.Errorf("%s: %+v; want %+v", n.ID, n, w)
		}
	}
	if s, _ := tp.Node(self); s.Epoch != 7 || s.Seq != 3 || s.FreeSlots != 2 || !slices.Equal(s.Addrs, []string{"quic://self"}) {
		t.Errorf("self entry %+v", s)
	}
	if _, ok := tp.Node(id(0x99)); ok {
		t.Error("Node found a stranger")
	}
	if got := tp.Diameter(); got != 3 {
		t.Errorf("Diameter = %d; want 3", got)
	}
	// Closing a ring self-a-b-c-self halves it.
	tab.AddNeighbor(t0, c, 1)
	mustApply(t, tab, t0, state(c, 1, 2, b, d, self))
	if got := tab.Topology().Diameter(); got != 2 {
		t.Errorf("ring Diameter = %d; want 2", got)
	}
	if got := New(self, 1, t0, Config{}).Topology().Diameter(); got != 0 {
		t.Errorf("lone node Diameter = %d; want 0", got)
	}
	// The snapshot is a copy.
	tp.Nodes[0].Addrs = append(tp.Nodes[0].Addrs, "x")
	tp.Nodes[1].Neighbors[0] = uuid.Nil
	if tp2 := tab.Topology(); tp2.Nodes[1].Neighbors[0] == uuid.Nil {
		t.Error("Topology shares memory with the table")
	}
}

func TestHoldPostponesExpiry(t *testing.T) {
	now := time.Unix(1000, 0)
	self, other := uuid.New(), uuid.New()
	tb := New(self, 1, now, Config{MaxAge: 10 * time.Second}.WithDefaults())
	if v, err := tb.ApplyState(now, message.State{Origin: other, Epoch: 1, Seq: 1}); v != Accepted {
		t.Fatalf("ApplyState: %v %v", v, err)
	}
	later := now.Add(9 * time.Second)
	tb.Hold(later)
	if got := tb.Expire(now.Add(15 * time.Second)); len(got) != 0 {
		t.Fatalf("expired %v before the held deadline", got)
	}
	if got := tb.Expire(later.Add(10 * time.Second)); len(got) != 1 || got[0] != other {
		t.Fatalf("Expire after the held deadline = %v, want [%v]", got, other)
	}
}

func TestNames(t *testing.T) {
	now := time.Unix(0, 0)
	self, a := id(1), id(2)
	tab := New(self, 1, now, Config{}.WithDefaults())
	seq := tab.Local().Seq
	if _, ok := tab.SetName(now, "render-01"); !ok || tab.Local().Seq != seq+1 || tab.Local().Name != "render-01" {
		t.Fatalf("SetName: local %+v", tab.Local())
	}
	if _, ok := tab.SetName(now, "render-01"); ok {
		t.Fatal("the same name again re-originated the record")
	}
	cases := []struct {
		name string
		want Verdict
	}{
		{"worker ünï", Accepted},
		{strings.Repeat("n", message.MaxNameLen+1), Rejected},
		{"\xc3\x28", Rejected},
	}
	for i, c := range cases {
		s := state(a, 1, uint64(i+1))
		s.Name = c.name
		if v, _ := tab.ApplyState(now, s); v != c.want {
			t.Errorf("name %q: %v, want %v", c.name, v, c.want)
		}
	}
	ni, ok := tab.Topology().Node(a)
	if !ok || ni.Name != "worker ünï" {
		t.Fatalf("Topology: %+v", ni)
	}
}

// fakeSigner "signs" a record with a checksum of its signing bytes, so that
// the Table's use of a Signer is tested without real keys.
type fakeSigner struct{}

func (fakeSigner) Sign(s *message.State) {
	sum := uint64(0)
	for _, b := range s.SigningBytes() {
		sum = sum*31 + uint64(b)
	}
	s.Sig = binary.BigEndian.AppendUint64(make([]byte, 0, message.SigSize), sum)[:8:8]
	s.Sig = append(s.Sig, make([]byte, message.SigSize-8)...)
}

func (f fakeSigner) Verify(s *message.State) error {
	c := *s
	f.Sign(&c)
	if !bytes.Equal(c.Sig, s.Sig) {
		return errors.New("bad signature")
	}
	return nil
}

// With a Signer, the local record stays signed through every change,
// ghosts included, and only signed records and changes are applied.
func TestSignedTable(t *testing.T) {
	now := time.Unix(1000, 0)
	cfg := Config{Signer: fakeSigner{}}
	self, other := uuid.UUID{1}, uuid.UUID{2}
	tb := New(self, 5, now, cfg)
	check := func(what string) {
		t.Helper()
		l := tb.Local()
		if err := (fakeSigner{}).Verify(&l); err != nil {
			t.Fatalf("after %s the local record is not signed: %v", what, err)
		}
	}
	check("New")
	tb.AddNeighbor(now, other, 3)
	check("AddNeighbor")
	tb.SetLocal(now, []string{"a"}, 2)
	check("SetLocal")
	tb.SetName(now, "n")
	check("SetName")
	ghost := tb.Local()
	ghost.Seq += 5
	fakeSigner{}.Sign(&ghost)
	if v, err := tb.ApplyState(now, ghost); v != Stale || err != nil {
		t.Fatalf("ghost: %v %v", v, err)
	}
	check("a ghost")

	rec := message.State{Origin: other, Epoch: 7, Seq: 1, Neighbors: []uuid.UUID{self}}
	if v, err := tb.ApplyState(now, rec); v != Rejected || !errors.Is(err, ErrForged) {
		t.Fatalf("unsigned record: %v %v", v, err)
	}
	fakeSigner{}.Sign(&rec)
	if v, err := tb.ApplyState(now, rec); v != Accepted {
		t.Fatalf("signed record: %v %v", v, err)
	}
	next := rec
	next.Seq, next.Neighbors = 2, nil
	fakeSigner{}.Sign(&next)
	ch := message.EdgeChange{Origin: other, Epoch: 7, Seq: 2, Peer: self}
	if v, err := tb.ApplyEdgeChange(now, false, ch); v != Rejected || !errors.Is(err, ErrForged) {
		t.Fatalf("unsigned change: %v %v", v, err)
	}
	copy(ch.Sig[:], next.Sig)
	if v, err := tb.ApplyEdgeChange(now, false, ch); v != Accepted {
		t.Fatalf("signed change: %v %v", v, err)
	}
	if got := tb.States([]uuid.UUID{other})[0]; !bytes.Equal(got.Sig, next.Sig) || len(got.Neighbors) != 0 {
		t.Fatalf("stored %+v, want the record the change signed", got)
	}
}
