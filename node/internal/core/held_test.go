package core

import "testing"

// A source holds its data frames for a destination it cannot reach yet:
// they go out as soon as the destination is a neighbour, and are dropped
// (and counted) once they have waited maxHold.
func TestHeldUntilRouteOrExpiry(t *testing.T) {
	cases := []struct {
		name      string
		neighbour bool // the destination connects before maxHold
	}{
		{"released when the destination connects", true},
		{"dropped after maxHold", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := testCore(1, nil), testCore(2, nil)
			for i := range 3 {
				a.Send(t0, sendReq(uint64(i+1), b.ID(), "early"))
			}
			if rd := a.Ready(); len(rd.Writes) != 0 || len(rd.Answers) != 3 {
				t.Fatalf("%d writes, %d answers; want 0 and 3", len(rd.Writes), len(rd.Answers))
			}
			a.Advance()
			if a.held.n != 3 || a.Stats().DroppedNoRoute != 0 {
				t.Fatalf("held %d, dropped %d; want 3 held", a.held.n, a.Stats().DroppedNoRoute)
			}
			if tc.neighbour {
				pair(t, a, b)
				if d := b.Stats().Delivered; d != 3 || a.Stats().Retransmits != 0 {
					t.Fatalf("%d delivered, %d retransmitted; want 3 and 0", d, a.Stats().Retransmits)
				}
				return
			}
			a.Cancel(t0.Add(maxHold), 0) // only moves the clock
			a.Ready()
			a.Advance()
			if a.held.n != 0 || a.Stats().DroppedNoRoute != 3 {
				t.Fatalf("after maxHold: held %d, dropped %d; want 0 and 3", a.held.n, a.Stats().DroppedNoRoute)
			}
		})
	}
}
