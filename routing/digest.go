package routing

import (
	"slices"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
)

// Digests returns the versions of every record, the local one included, as
// digests of at most per entries each (message.MaxStates at most) whose
// ranges adjoin and together cover every UUID. A new neighbour is sent
// these instead of the whole database; it answers with Newer.
func (t *Table) Digests(per int) []message.Digest {
	per = max(1, min(per, message.MaxStates))
	all := make([]message.DigestEntry, 0, len(t.records))
	for _, r := range t.slots {
		if r != nil {
			all = append(all, message.DigestEntry{Origin: r.st.Origin, Epoch: r.st.Epoch, Seq: r.st.Seq})
		}
	}
	slices.SortFunc(all, func(a, b message.DigestEntry) int { return compareID(a.Origin, b.Origin) })
	var out []message.Digest
	first := uuid.Nil
	for {
		k := min(per, len(all))
		d := message.Digest{First: first, Last: uuid.Max, Entries: all[:k:k]}
		all = all[k:]
		if len(all) > 0 {
			d.Last = d.Entries[k-1].Origin
		}
		out = append(out, d)
		if len(all) == 0 {
			return out
		}
		first = successor(d.Last)
	}
}

// successor returns the UUID after id in byte order; id is not uuid.Max.
func successor(id uuid.UUID) uuid.UUID {
	for i := len(id) - 1; i >= 0; i-- {
		id[i]++
		if id[i] != 0 {
			break
		}
	}
	return id
}

// Newer returns the records whose origins lie in d's range that d does not
// list, or lists with an older version: what the node that sent d lacks.
// They are sorted by origin.
func (t *Table) Newer(d message.Digest) []message.State {
	var out []message.State
	for _, r := range t.slots {
		if r == nil || compareID(r.st.Origin, d.First) < 0 || compareID(r.st.Origin, d.Last) > 0 {
			continue
		}
		i, found := slices.BinarySearchFunc(d.Entries, r.st.Origin, func(e message.DigestEntry, id uuid.UUID) int {
			return compareID(e.Origin, id)
		})
		if found {
			e := d.Entries[i]
			if e.Epoch > r.st.Epoch || e.Epoch == r.st.Epoch && e.Seq >= r.st.Seq {
				continue
			}
		}
		out = append(out, copyState(&r.st))
	}
	slices.SortFunc(out, func(a, b message.State) int { return compareID(a.Origin, b.Origin) })
	return out
}
