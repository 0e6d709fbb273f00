package routing

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
)

func TestDigestsCoverEverything(t *testing.T) {
	r := newRand(7)
	now := time.Unix(0, 0)
	for _, n := range []int{0, 1, 5, 33} {
		self := randID(r)
		tab := New(self, 1, now, Config{}.WithDefaults())
		for range n {
			mustApply(t, tab, now, state(randID(r), 1, 1))
		}
		for _, per := range []int{1, 4, 1000} {
			ds := tab.Digests(per)
			if ds[0].First != uuid.Nil || ds[len(ds)-1].Last != uuid.Max {
				t.Fatalf("n=%d per=%d: digests cover [%v, %v]", n, per, ds[0].First, ds[len(ds)-1].Last)
			}
			total := 0
			for i, d := range ds {
				if err := d.Validate(); err != nil {
					t.Fatalf("n=%d per=%d: digest %d: %v", n, per, i, err)
				}
				if i > 0 && successor(ds[i-1].Last) != d.First {
					t.Fatalf("n=%d per=%d: digest %d does not adjoin the one before", n, per, i)
				}
				total += len(d.Entries)
			}
			if total != tab.Len() {
				t.Fatalf("n=%d per=%d: %d entries for %d records", n, per, total, tab.Len())
			}
		}
	}
}

func TestNewer(t *testing.T) {
	now := time.Unix(0, 0)
	self, a, b, c := id(1), id(2), id(3), id(4)
	cfg := Config{}.WithDefaults()
	mine := New(self, 5, now, cfg)
	mustApply(t, mine, now, state(a, 1, 3))
	mustApply(t, mine, now, state(b, 2, 1))
	mustApply(t, mine, now, state(c, 1, 1))
	cases := []struct {
		name    string
		entries []message.DigestEntry
		want    []uuid.UUID
	}{
		{"knows nothing", nil, []uuid.UUID{self, a, b, c}},
		{"knows all, same versions", []message.DigestEntry{de(self, 5, 1), de(a, 1, 3), de(b, 2, 1), de(c, 1, 1)}, nil},
		{"knows newer", []message.DigestEntry{de(self, 5, 1), de(a, 1, 9), de(b, 3, 0), de(c, 1, 1)}, nil},
		{"older seq, older epoch, missing", []message.DigestEntry{de(self, 5, 1), de(a, 1, 2), de(b, 1, 7)}, []uuid.UUID{a, b, c}},
	}
	for _, tc := range cases {
		d := message.Digest{Last: uuid.Max, Entries: tc.entries}
		var got []uuid.UUID
		for _, s := range mine.Newer(d) {
			got = append(got, s.Origin)
		}
		if !equalIDs(got, tc.want) {
			t.Errorf("%s: Newer = %v, want %v", tc.name, got, tc.want)
		}
	}
	// A range that leaves a record out does not offer it.
	d := message.Digest{First: a, Last: b}
	for _, s := range mine.Newer(d) {
		if s.Origin != a && s.Origin != b {
			t.Errorf("range [a, b] offered %v", s.Origin)
		}
	}
}

func de(origin uuid.UUID, epoch, seq uint64) message.DigestEntry {
	return message.DigestEntry{Origin: origin, Epoch: epoch, Seq: seq}
}
