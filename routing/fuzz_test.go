package routing

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
)

// FuzzTable drives a Table over eight nodes with operations decoded from the
// fuzzer's bytes, and after every operation compares verdicts, records and
// routes with the naive model of property_test.go. Run with
// go test -fuzz=FuzzTable ./routing/.
func FuzzTable(f *testing.F) {
	f.Add([]byte{0x00, 0x12, 0x34, 0x56, 0x10, 0x12, 0x35, 0x57, 0x20, 0x03})
	f.Add([]byte{0x20, 0x01, 0x00, 0x11, 0x11, 0x03, 0x01, 0x12, 0x21, 0x03, 0x30, 0xff, 0x40, 0x11, 0x22})
	f.Add([]byte{0x00, 0x21, 0x11, 0xfe, 0x01, 0x21, 0x12, 0x7e, 0x13, 0x21, 0x13, 0x02, 0x30, 0x40})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const maxAge = 10 * time.Second
		ids := make([]uuid.UUID, 8)
		for i := range ids {
			ids[i] = id(byte(i + 1))
		}
		self := ids[0]
		tab := New(self, 2, t0, Config{MaxAge: maxAge, RefreshInterval: 4 * time.Second, MaxSeqJump: 8})
		m := newModel(self)
		now := t0
		next := func() byte {
			if len(ops) == 0 {
				return 0
			}
			b := ops[0]
			ops = ops[1:]
			return b
		}
		nbrsOf := func(origin uuid.UUID, mask byte) []uuid.UUID {
			var out []uuid.UUID
			for i, n := range ids {
				if mask&(1<<i) != 0 && n != origin {
					out = append(out, n)
				}
			}
			return out
		}
		for len(ops) > 0 {
			op := next()
			origin := ids[1+int(op&0x0f)%7]
			arg := next()
			epoch, seq := uint64(1+arg>>6), uint64(arg&0x3f)
			switch (op >> 4) % 5 {
			case 0: // a full record
				s := message.State{Origin: origin, Epoch: epoch, Seq: seq, Neighbors: nbrsOf(origin, next())}
				if r := m.recs[origin]; r != nil && r.epoch == epoch && seq > r.seq+8 {
					if v, _ := tab.ApplyState(now, s); v != Rejected {
						t.Fatalf("absurd jump %v", v)
					}
					continue
				}
				want := m.applyState(s)
				got, err := tab.ApplyState(now, s)
				if got != want || err != nil {
					t.Fatalf("ApplyState(%+v) = %v, %v; model %v", s, got, err, want)
				}
				if got == Accepted {
					m.recs[origin].expires = now.Add(maxAge)
				}
			case 1: // an edge change
				c := message.EdgeChange{Origin: origin, Epoch: epoch, Seq: seq, Peer: ids[int(next())%8]}
				if c.Peer == origin {
					continue
				}
				added := arg&0x80 != 0
				r := m.recs[origin]
				if r != nil && r.epoch == epoch && seq > r.seq+8 {
					if v, _ := tab.ApplyEdgeChange(now, added, c); v != Rejected {
						t.Fatalf("absurd jump %v", v)
					}
					continue
				}
				want := m.applyChange(added, c)
				got, err := tab.ApplyEdgeChange(now, added, c)
				if got != want || err != nil {
					t.Fatalf("ApplyEdgeChange(%v, %+v) = %v, %v; model %v", added, c, got, err, want)
				}
				if got == Accepted {
					m.recs[origin].expires = now.Add(maxAge)
				}
			case 2: // a local edge
				if arg&1 == 0 {
					tab.AddNeighbor(now, origin, 1)
					m.selfN[origin] = true
				} else {
					_, ok := tab.RemoveNeighbor(now, origin, 1)
					if ok != m.selfN[origin] {
						t.Fatalf("RemoveNeighbor = %v", ok)
					}
					delete(m.selfN, origin)
				}
			case 3: // time passes
				now = now.Add(time.Duration(arg) * 100 * time.Millisecond)
				if d := tab.NextDeadline(); d.After(now) {
					if _, ok := tab.Refresh(now); ok {
						t.Fatal("Refresh before NextDeadline")
					}
				}
				tab.Refresh(now)
				var want []uuid.UUID
				for o, r := range m.recs {
					if !now.Before(r.expires) {
						want = append(want, o)
						delete(m.recs, o)
					}
				}
				if got := tab.Expire(now); !equalIDs(got, sortedIDs(want...)) {
					t.Fatalf("Expire = %v; model %v", got, want)
				}
			case 4: // a claim to be the local node
				l := tab.Local()
				s := message.State{Origin: self, Epoch: epoch, Seq: seq, Neighbors: nbrsOf(self, next())}
				if v, _ := tab.ApplyState(now, s); v != Stale && v != Rejected {
					t.Fatalf("self claim: %v", v)
				}
				if l2 := tab.Local(); !equalIDs(l.Neighbors, l2.Neighbors) || l2.Seq < l.Seq {
					t.Fatalf("self claim changed the local record: %+v -> %+v", l, l2)
				}
			}
			check(t, tab, m, ids)
		}
	})
}
