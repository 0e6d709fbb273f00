package routing

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
)

const (
	selfEpoch = 500
	aEpoch    = 100
	aSeq      = 10
)

var (
	self = id(0x01)
	a    = id(0xa0)
	b    = id(0xb0)
	c    = id(0xc0)
)

// verdictTable returns a Table for self (epoch 500, seq 3 after two local
// changes, neighbours [a]) holding a's record (epoch 100, seq 10, neighbours
// [self b]).
func verdictTable(tb testing.TB) *Table {
	tb.Helper()
	tab := New(self, selfEpoch, t0, Config{})
	tab.AddNeighbor(t0, a, 7)
	tab.SetLocal(t0, []string{"quic://10.0.0.1:4000"}, 7)
	mustApply(tb, tab, t0, state(a, aEpoch, aSeq, self, b))
	return tab
}

func manyNeighbors(n int) []uuid.UUID {
	out := make([]uuid.UUID, n)
	for i := range out {
		out[i] = id(0x40)
		out[i][1], out[i][2] = byte(i>>8), byte(i)
	}
	return out
}

func TestApplyStateVerdicts(t *testing.T) {
	skew := DefaultMaxEpochSkew
	maxEpoch := uint64(t0.Add(skew).UnixNano())
	cases := []struct {
		name      string
		in        message.State
		want      Verdict
		err       error
		wantEpoch uint64 // a's stored record afterwards (for origin a)
		wantSeq   uint64
	}{
		{"unknown origin", state(c, 1, 1, b), Accepted, nil, 0, 0},
		{"newer seq", state(a, aEpoch, aSeq+1, self), Accepted, nil, aEpoch, aSeq + 1},
		{"duplicate", state(a, aEpoch, aSeq, self), Duplicate, nil, aEpoch, aSeq},
		{"older seq", state(a, aEpoch, aSeq-1, self), Stale, nil, aEpoch, aSeq},
		{"older epoch, larger seq", state(a, aEpoch-1, 1000, self), Stale, nil, aEpoch, aSeq},
		{"restart: newer epoch, seq 1", state(a, aEpoch+1, 1), Accepted, nil, aEpoch + 1, 1},
		{"newer epoch, any seq", state(a, aEpoch+1, 1<<60), Accepted, nil, aEpoch + 1, 1 << 60},
		{"largest seq jump", state(a, aEpoch, aSeq+DefaultMaxSeqJump), Accepted, nil, aEpoch, aSeq + DefaultMaxSeqJump},
		{"absurd seq jump", state(a, aEpoch, aSeq+DefaultMaxSeqJump+1), Rejected, ErrAbsurdSeq, aEpoch, aSeq},
		{"epoch at skew limit", state(a, maxEpoch, 1), Accepted, nil, maxEpoch, 1},
		{"absurd epoch", state(a, maxEpoch+1, 1), Rejected, ErrAbsurdEpoch, aEpoch, aSeq},
		{"absurd epoch, unknown origin", state(c, ^uint64(0), 1), Rejected, ErrAbsurdEpoch, aEpoch, aSeq},
		{"nil origin", state(uuid.Nil, 1, 1), Rejected, ErrInvalidState, aEpoch, aSeq},
		{"own neighbour", state(a, aEpoch, aSeq+1, a, b), Rejected, ErrInvalidState, aEpoch, aSeq},
		{"nil neighbour", state(a, aEpoch, aSeq+1, uuid.Nil, b), Rejected, ErrInvalidState, aEpoch, aSeq},
		{"unsorted", message.State{Origin: a, Epoch: aEpoch, Seq: aSeq + 1, Neighbors: []uuid.UUID{c, b}}, Rejected, ErrInvalidState, aEpoch, aSeq},
		{"duplicate neighbour", message.State{Origin: a, Epoch: aEpoch, Seq: aSeq + 1, Neighbors: []uuid.UUID{b, b}}, Rejected, ErrInvalidState, aEpoch, aSeq},
		{"1024 neighbours", message.State{Origin: a, Epoch: aEpoch, Seq: aSeq + 1, Neighbors: manyNeighbors(1024)}, Accepted, nil, aEpoch, aSeq + 1},
		{"1025 neighbours", message.State{Origin: a, Epoch: aEpoch, Seq: aSeq + 1, Neighbors: manyNeighbors(1025)}, Rejected, ErrInvalidState, aEpoch, aSeq},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tab := verdictTable(t)
			v, err := tab.ApplyState(t0, tc.in)
			if v != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("ApplyState = %v, %v; want %v, %v", v, err, tc.want, tc.err)
			}
			if tc.in.Origin == a {
				got := tab.States([]uuid.UUID{a})[0]
				if got.Epoch != tc.wantEpoch || got.Seq != tc.wantSeq {
					t.Fatalf("stored a = (%d, %d); want (%d, %d)", got.Epoch, got.Seq, tc.wantEpoch, tc.wantSeq)
				}
			}
			if tc.in.Origin != uuid.Nil && tc.in.Origin != a {
				if tab.Known(tc.in.Origin) != (v == Accepted) {
					t.Fatalf("Known(%s) = %v after %v", tc.in.Origin, tab.Known(tc.in.Origin), v)
				}
			}
		})
	}
}

func TestApplyEdgeChangeVerdicts(t *testing.T) {
	maxEpoch := uint64(t0.Add(DefaultMaxEpochSkew).UnixNano())
	ch := func(origin uuid.UUID, epoch, seq uint64, peer uuid.UUID) message.EdgeChange {
		return message.EdgeChange{Origin: origin, Epoch: epoch, Seq: seq, Peer: peer, FreeSlots: 4}
	}
	cases := []struct {
		name    string
		added   bool
		in      message.EdgeChange
		want    Verdict
		err     error
		wantSeq uint64
		wantN   []uuid.UUID // a's neighbours afterwards
	}{
		{"add next", true, ch(a, aEpoch, aSeq+1, c), Accepted, nil, aSeq + 1, sortedIDs(self, b, c)},
		{"add present", true, ch(a, aEpoch, aSeq+1, b), Accepted, nil, aSeq + 1, sortedIDs(self, b)},
		{"remove next", false, ch(a, aEpoch, aSeq+1, b), Accepted, nil, aSeq + 1, sortedIDs(self)},
		{"remove absent", false, ch(a, aEpoch, aSeq+1, c), Accepted, nil, aSeq + 1, sortedIDs(self, b)},
		{"duplicate", true, ch(a, aEpoch, aSeq, c), Duplicate, nil, aSeq, sortedIDs(self, b)},
		{"older seq", true, ch(a, aEpoch, aSeq-1, c), Stale, nil, aSeq, sortedIDs(self, b)},
		{"older epoch", true, ch(a, aEpoch-1, aSeq+1, c), Stale, nil, aSeq, sortedIDs(self, b)},
		{"gap", true, ch(a, aEpoch, aSeq+2, c), Gap, nil, aSeq, sortedIDs(self, b)},
		{"newer epoch", true, ch(a, aEpoch+1, 1, c), Gap, nil, aSeq, sortedIDs(self, b)},
		{"unknown origin", true, ch(c, 1, 2, b), Gap, nil, aSeq, sortedIDs(self, b)},
		{"largest gap", true, ch(a, aEpoch, aSeq+DefaultMaxSeqJump, c), Gap, nil, aSeq, sortedIDs(self, b)},
		{"absurd seq jump", true, ch(a, aEpoch, aSeq+DefaultMaxSeqJump+1, c), Rejected, ErrAbsurdSeq, aSeq, sortedIDs(self, b)},
		{"absurd epoch", true, ch(a, maxEpoch+1, 1, c), Rejected, ErrAbsurdEpoch, aSeq, sortedIDs(self, b)},
		{"nil origin", true, ch(uuid.Nil, 1, 1, c), Rejected, ErrInvalidState, aSeq, sortedIDs(self, b)},
		{"nil peer", true, ch(a, aEpoch, aSeq+1, uuid.Nil), Rejected, ErrInvalidState, aSeq, sortedIDs(self, b)},
		{"peer is origin", true, ch(a, aEpoch, aSeq+1, a), Rejected, ErrInvalidState, aSeq, sortedIDs(self, b)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tab := verdictTable(t)
			v, err := tab.ApplyEdgeChange(t0, tc.added, tc.in)
			if v != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("ApplyEdgeChange = %v, %v; want %v, %v", v, err, tc.want, tc.err)
			}
			got := tab.States([]uuid.UUID{a})[0]
			if got.Seq != tc.wantSeq || !equalIDs(got.Neighbors, tc.wantN) {
				t.Fatalf("stored a = seq %d %v; want seq %d %v", got.Seq, got.Neighbors, tc.wantSeq, tc.wantN)
			}
			if v == Accepted && got.FreeSlots != 4 {
				t.Fatalf("FreeSlots = %d; want 4", got.FreeSlots)
			}
			if tab.Known(c) {
				t.Fatal("an edge change created a record")
			}
		})
	}
}

func equalIDs(x, y []uuid.UUID) bool {
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

func TestEdgeChangeNeighborCap(t *testing.T) {
	tab := New(self, selfEpoch, t0, Config{})
	mustApply(t, tab, t0, message.State{Origin: a, Epoch: 1, Seq: 1, Neighbors: manyNeighbors(1024)})
	v, err := tab.ApplyEdgeChange(t0, true, message.EdgeChange{Origin: a, Epoch: 1, Seq: 2, Peer: id(0xff)})
	if v != Rejected || !errors.Is(err, ErrInvalidState) {
		t.Fatalf("1025th neighbour: %v, %v; want rejected, ErrInvalidState", v, err)
	}
	// Removing one and re-adding stays within the cap.
	first := tab.States([]uuid.UUID{a})[0].Neighbors[0]
	if v, err := tab.ApplyEdgeChange(t0, false, message.EdgeChange{Origin: a, Epoch: 1, Seq: 2, Peer: first}); v != Accepted {
		t.Fatalf("remove: %v, %v", v, err)
	}
	if v, err := tab.ApplyEdgeChange(t0, true, message.EdgeChange{Origin: a, Epoch: 1, Seq: 3, Peer: id(0xff)}); v != Accepted {
		t.Fatalf("re-add: %v, %v", v, err)
	}
}

func TestNeighborEntriesBudget(t *testing.T) {
	tab := New(self, selfEpoch, t0, Config{MaxNeighborEntries: 3})
	mustApply(t, tab, t0, state(a, 1, 1, b, c))
	if v, err := tab.ApplyState(t0, state(b, 1, 1, a, c)); v != Rejected || !errors.Is(err, ErrTableFull) {
		t.Fatalf("over budget: %v, %v; want rejected, ErrTableFull", v, err)
	}
	mustApply(t, tab, t0, state(b, 1, 1, a))
	if v, err := tab.ApplyEdgeChange(t0, true, message.EdgeChange{Origin: b, Epoch: 1, Seq: 2, Peer: c}); v != Rejected || !errors.Is(err, ErrTableFull) {
		t.Fatalf("edge over budget: %v, %v; want rejected, ErrTableFull", v, err)
	}
	// Shrinking a record frees budget for another.
	mustApply(t, tab, t0, state(a, 1, 2, b))
	mustApply(t, tab, t0, state(b, 1, 2, a, c))
	if v, err := tab.ApplyEdgeChange(t0, false, message.EdgeChange{Origin: a, Epoch: 1, Seq: 3, Peer: b}); v != Accepted {
		t.Fatalf("remove: %v, %v", v, err)
	}
	if v, err := tab.ApplyEdgeChange(t0, true, message.EdgeChange{Origin: b, Epoch: 1, Seq: 3, Peer: self}); v != Accepted {
		t.Fatalf("add within budget: %v, %v", v, err)
	}
	if tab.entries != 3 {
		t.Fatalf("entries = %d; want 3", tab.entries)
	}
	tab.Expire(t0.Add(DefaultMaxAge))
	if tab.entries != 0 {
		t.Fatalf("entries after expiry = %d; want 0", tab.entries)
	}
}

func TestAddressLimits(t *testing.T) {
	long := string(make([]byte, message.MaxAddrLen+1))
	for name, addrs := range map[string][]string{
		"too many":  make([]string, message.MaxAddrs+1),
		"empty":     {""},
		"too long":  {long},
		"not UTF-8": {"\xff"},
	} {
		if name == "too many" {
			for i := range addrs {
				addrs[i] = "x"
			}
		}
		s := state(a, 1, 1)
		s.Addrs = addrs
		if v, err := New(self, 1, t0, Config{}).ApplyState(t0, s); v != Rejected || !errors.Is(err, ErrInvalidState) {
			t.Errorf("%s: %v, %v; want rejected, ErrInvalidState", name, v, err)
		}
	}
	s := state(a, 1, 1)
	s.Addrs = make([]string, message.MaxAddrs)
	for i := range s.Addrs {
		s.Addrs[i] = string(make([]byte, message.MaxAddrLen))
	}
	mustApply(t, New(self, 1, t0, Config{}), t0, s)
}

func TestTableFull(t *testing.T) {
	tab := New(self, selfEpoch, t0, Config{MaxRecords: 2})
	mustApply(t, tab, t0, state(a, 1, 1))
	v, err := tab.ApplyState(t0, state(b, 1, 1))
	if v != Rejected || !errors.Is(err, ErrTableFull) {
		t.Fatalf("third record: %v, %v; want rejected, ErrTableFull", v, err)
	}
	mustApply(t, tab, t0, state(a, 1, 2)) // updates still pass
	tab.Expire(t0.Add(DefaultMaxAge))
	mustApply(t, tab, t0.Add(DefaultMaxAge), state(b, 1, 1)) // room again
}

// TestSelfRecords covers remote input that claims to come from the local node.
func TestSelfRecords(t *testing.T) {
	now := t0.Add(time.Second)
	cases := []struct {
		name    string
		apply   func(tab *Table, l message.State) (Verdict, error)
		want    Verdict
		err     error
		ghost   bool // the local seq must jump past the input
		ghostSq uint64
	}{
		{"echo", func(tab *Table, l message.State) (Verdict, error) { return tab.ApplyState(now, l) }, Stale, nil, false, 0},
		{"older seq", func(tab *Table, l message.State) (Verdict, error) {
			l.Seq--
			l.Neighbors = nil
			return tab.ApplyState(now, l)
		}, Stale, nil, false, 0},
		{"older epoch", func(tab *Table, l message.State) (Verdict, error) {
			l.Epoch--
			l.Seq += 100
			return tab.ApplyState(now, l)
		}, Stale, nil, false, 0},
		{"newer epoch", func(tab *Table, l message.State) (Verdict, error) {
			l.Epoch++
			return tab.ApplyState(now, l)
		}, Stale, nil, false, 0},
		{"ghost: newer seq", func(tab *Table, l message.State) (Verdict, error) {
			l.Seq += 5
			return tab.ApplyState(now, l)
		}, Stale, nil, true, 3 + 5},
		{"ghost: same seq, other contents", func(tab *Table, l message.State) (Verdict, error) {
			l.FreeSlots++
			return tab.ApplyState(now, l)
		}, Stale, nil, true, 3},
		{"ghost: absurd seq", func(tab *Table, l message.State) (Verdict, error) {
			l.Seq += DefaultMaxSeqJump + 1
			return tab.ApplyState(now, l)
		}, Rejected, ErrAbsurdSeq, false, 0},
		{"change echo", func(tab *Table, l message.State) (Verdict, error) {
			return tab.ApplyEdgeChange(now, true, message.EdgeChange{Origin: self, Epoch: l.Epoch, Seq: l.Seq, Peer: a, FreeSlots: l.FreeSlots})
		}, Stale, nil, false, 0},
		{"change older", func(tab *Table, l message.State) (Verdict, error) {
			return tab.ApplyEdgeChange(now, false, message.EdgeChange{Origin: self, Epoch: l.Epoch, Seq: l.Seq - 1, Peer: a})
		}, Stale, nil, false, 0},
		{"change ghost: same seq, contradicts", func(tab *Table, l message.State) (Verdict, error) {
			return tab.ApplyEdgeChange(now, false, message.EdgeChange{Origin: self, Epoch: l.Epoch, Seq: l.Seq, Peer: a, FreeSlots: l.FreeSlots})
		}, Stale, nil, true, 3},
		{"change ghost: newer seq", func(tab *Table, l message.State) (Verdict, error) {
			return tab.ApplyEdgeChange(now, true, message.EdgeChange{Origin: self, Epoch: l.Epoch, Seq: l.Seq + 1, Peer: b})
		}, Stale, nil, true, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tab := verdictTable(t)
			before := tab.Local()
			if before.Seq != 3 {
				t.Fatalf("local seq %d; want 3", before.Seq)
			}
			v, err := tc.apply(tab, tab.Local())
			if v != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("got %v, %v; want %v, %v", v, err, tc.want, tc.err)
			}
			after := tab.Local()
			after.Seq = before.Seq
			if !equalIDs(after.Neighbors, before.Neighbors) || after.FreeSlots != before.FreeSlots {
				t.Fatalf("local record changed: %+v -> %+v", before, after)
			}
			if !tc.ghost {
				if s := tab.Local().Seq; s != before.Seq {
					t.Fatalf("local seq %d; want %d unchanged", s, before.Seq)
				}
				if _, ok := tab.Refresh(now); ok {
					t.Fatal("refresh due without a ghost")
				}
				return
			}
			if d := tab.NextDeadline(); !d.Equal(now) {
				t.Fatalf("NextDeadline = %v; want the ghost's arrival %v", d, now)
			}
			s, ok := tab.Refresh(now)
			if !ok || s.Seq <= tc.ghostSq {
				t.Fatalf("Refresh = seq %d, %v; want a seq past the ghost's %d", s.Seq, ok, tc.ghostSq)
			}
			if _, ok := tab.Refresh(now); ok {
				t.Fatal("second Refresh re-originated again")
			}
		})
	}
}

func TestVerdictString(t *testing.T) {
	for v, want := range map[Verdict]string{Accepted: "accepted", Duplicate: "duplicate", Stale: "stale", Gap: "gap", Rejected: "rejected", 9: "verdict(9)"} {
		if got := v.String(); got != want {
			t.Errorf("%d.String() = %q; want %q", uint8(v), got, want)
		}
	}
}
