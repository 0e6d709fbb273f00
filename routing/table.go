package routing

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
)

// record is one origin's stored link-state record.
type record struct {
	// st is an owned deep copy; its slices are never handed out.
	st message.State
	// expires is when Expire removes the record; zero for the local record.
	expires time.Time
	// heapIdx is the record's index in Table.heap; -1 for the local record.
	heapIdx int
	// slot indexes Table.slots and the route arrays; the local record is 0.
	slot int32
}

// route is the computed route to the record in one slot.
type route struct {
	origin uuid.UUID // the slot's origin when the route was computed
	hop    uuid.UUID // the next hop; uuid.Nil for self and unreachable nodes
	dist   int32     // hops; -1 when unreachable
}

var unreachable = route{dist: -1}

// Table is one node's link-state database and the routes computed from it.
//
// A Table is not safe for concurrent use. Its methods never retain or modify
// the slices they are given, and every slice they return is the caller's.
type Table struct {
	cfg     Config
	self    uuid.UUID
	local   *record
	records map[uuid.UUID]*record // every record, the local one included
	slots   []*record             // by slot; nil marks a free slot
	free    []int32               // free slots, reused last-in first-out
	heap    expiryHeap            // remote records by expiry
	entries int                   // neighbour entries of all remote records

	lastOrig time.Time // when the local record was last (re-)originated
	forced   bool      // a ghost of ourselves was seen: Refresh is due at forcedAt
	forcedAt time.Time

	dirty   bool      // some neighbour list changed since the last recompute
	version uint64    // see Version
	routes  []route   // by slot, valid when !dirty
	spare   []route   // the previous routes, reused as the next buffer
	adj     [][]int32 // by slot: the slots of the record's neighbours that have records
	adjGen  []uint64  // by slot: slotGen when adj was resolved; 0 when stale
	slotGen uint64    // increases whenever a record is added or removed
	dist    []int32   // BFS scratch: hops by slot, -1 unreached
	rank    []int32   // BFS scratch: first hop as an index into the local neighbours
	queue   []int32   // BFS scratch
	reach   []uuid.UUID
	reachOK bool        // reach is the sorted reachable set of the current version
	gained  []uuid.UUID // became reachable since the last TakeGained
}

// New returns a Table for the node self in its incarnation epoch (by
// convention the UnixNano time at which the node started; it must grow across
// restarts). The local record starts with sequence number 1, no neighbours, no
// addresses and no free slots, originated at now. New panics if self is
// uuid.Nil.
func New(self uuid.UUID, epoch uint64, now time.Time, cfg Config) *Table {
	if self == uuid.Nil {
		panic("routing: New with a nil UUID")
	}
	local := &record{
		st:      message.State{Origin: self, Epoch: epoch, Seq: 1},
		heapIdx: -1,
	}
	t := &Table{
		cfg:      cfg.WithDefaults(),
		self:     self,
		local:    local,
		records:  map[uuid.UUID]*record{self: local},
		slots:    []*record{local},
		lastOrig: now,
		routes:   []route{{origin: self, dist: 0}},
		slotGen:  1,
	}
	t.sign()
	return t
}

// sign signs the local record after a change, with a Signer.
func (t *Table) sign() {
	if t.cfg.Signer != nil {
		t.cfg.Signer.Sign(&t.local.st)
	}
}

// verify checks a remote record with the Signer, if any.
func (t *Table) verify(s *message.State) error {
	if t.cfg.Signer == nil {
		return nil
	}
	if err := t.cfg.Signer.Verify(s); err != nil {
		return fmt.Errorf("%w: %s seq %d: %w", ErrForged, s.Origin, s.Seq, err)
	}
	return nil
}

// Self returns the local node's UUID.
func (t *Table) Self() uuid.UUID { return t.self }

// Local returns a deep copy of the local record.
func (t *Table) Local() message.State { return copyState(&t.local.st) }

// AddNeighbor records that peer is now a neighbour of the local node and that
// the node has free connection slots left. It increments the local sequence
// number and returns the new_edge change to flood to every neighbour (peer
// included). Adding a peer that is already a neighbour still originates a
// change (it carries the new free count).
//
// The edge is used for routing only once peer's record lists the local node
// too. AddNeighbor panics if peer is uuid.Nil or the local node, or if the
// local record already holds 1024 neighbours (message.MaxNeighbors): the
// caller's handshake must refuse such peers.
func (t *Table) AddNeighbor(now time.Time, peer uuid.UUID, free uint16) message.EdgeChange {
	if peer == uuid.Nil || peer == t.self {
		panic("routing: AddNeighbor with a nil UUID or the local node")
	}
	l := &t.local.st
	i, found := slices.BinarySearchFunc(l.Neighbors, peer, compareID)
	if !found {
		if len(l.Neighbors) >= message.MaxNeighbors {
			panic("routing: AddNeighbor beyond message.MaxNeighbors neighbours")
		}
		l.Neighbors = slices.Insert(l.Neighbors, i, peer)
		t.neighborsChanged(t.local)
	}
	return t.originateChange(now, peer, free)
}

// RemoveNeighbor records that peer is no longer a neighbour of the local node
// and that the node has free connection slots left. It increments the local
// sequence number and returns the destroy_edge change to flood to every
// remaining neighbour. If peer is not a neighbour nothing changes and it
// returns false.
func (t *Table) RemoveNeighbor(now time.Time, peer uuid.UUID, free uint16) (message.EdgeChange, bool) {
	l := &t.local.st
	i, found := slices.BinarySearchFunc(l.Neighbors, peer, compareID)
	if !found {
		return message.EdgeChange{}, false
	}
	l.Neighbors = slices.Delete(l.Neighbors, i, i+1)
	t.neighborsChanged(t.local)
	return t.originateChange(now, peer, free), true
}

func (t *Table) originateChange(now time.Time, peer uuid.UUID, free uint16) message.EdgeChange {
	l := &t.local.st
	l.Seq++
	l.FreeSlots = free
	t.lastOrig = now
	t.sign()
	c := message.EdgeChange{Origin: t.self, Epoch: l.Epoch, Seq: l.Seq, Peer: peer, FreeSlots: free}
	copy(c.Sig[:], l.Sig)
	return c
}

// SetName sets the local node's human name (message.ValidateName must
// accept it) and re-originates the local record if it changed, as SetLocal.
func (t *Table) SetName(now time.Time, name string) (message.State, bool) {
	l := &t.local.st
	if name == l.Name {
		return message.State{}, false
	}
	l.Name = name
	l.Seq++
	t.lastOrig = now
	t.sign()
	return t.Local(), true
}

// SetLocal sets the local node's dialable addresses (kept in the given order)
// and its free connection slots. If either differs from the local record, it
// increments the sequence number and returns the full record to flood and
// true; otherwise it returns the zero State and false. The addresses must
// respect the message package's limits (message.MaxAddrs addresses of 1 to
// message.MaxAddrLen bytes of UTF-8), or other nodes reject the record.
func (t *Table) SetLocal(now time.Time, addrs []string, free uint16) (message.State, bool) {
	l := &t.local.st
	if free == l.FreeSlots && slices.Equal(addrs, l.Addrs) {
		return message.State{}, false
	}
	l.Addrs = cloneSlice(addrs)
	l.FreeSlots = free
	l.Seq++
	t.lastOrig = now
	t.sign()
	return t.Local(), true
}

// Refresh re-originates the local record if RefreshInterval has passed since
// it was last originated (by New, AddNeighbor, RemoveNeighbor, SetLocal or
// Refresh), or if a ghost of the local node was seen (see ApplyState). It then
// increments the sequence number and returns the full record to flood to
// every neighbour and true; otherwise the zero State and false.
func (t *Table) Refresh(now time.Time) (message.State, bool) {
	if !t.forced && now.Before(t.lastOrig.Add(t.cfg.RefreshInterval)) {
		return message.State{}, false
	}
	t.forced = false
	t.local.st.Seq++
	t.lastOrig = now
	t.sign()
	return t.Local(), true
}

// ApplyState applies a remote link-state record (one entry of a network_state
// message). The Table keeps its own copy; s is not retained.
//
// The verdict is Accepted if the record is newer than the stored one (a
// larger epoch, or the same epoch and a larger sequence number) or the origin
// was unknown; Duplicate for the same (epoch, seq); Stale for an older one.
// Malformed or hostile records are Rejected with an error wrapping
// ErrInvalidState, ErrAbsurdEpoch, ErrAbsurdSeq or ErrTableFull.
//
// A record claiming to come from the local node is never stored and its
// verdict is Stale. If it claims the local epoch and is newer than the local
// record, or has the same sequence number but different contents, it is a
// ghost: a record of an earlier process that ran with the same UUID and
// epoch, or a forgery. The local sequence number then jumps past it and a
// refresh becomes due at once (NextDeadline returns now), so that the next
// Refresh floods a record that beats the ghost everywhere. An identical copy
// (our own flood echoed back) changes nothing.
func (t *Table) ApplyState(now time.Time, s message.State) (Verdict, error) {
	if err := validateState(&s); err != nil {
		return Rejected, err
	}
	if err := t.checkEpoch(now, s.Epoch); err != nil {
		return Rejected, err
	}
	if s.Origin == t.self {
		l := &t.local.st
		if s.Epoch == l.Epoch && s.Seq == l.Seq && s.FreeSlots == l.FreeSlots &&
			slices.Equal(s.Neighbors, l.Neighbors) && slices.Equal(s.Addrs, l.Addrs) {
			return Stale, nil // our own flood, echoed back
		}
		if err := t.verify(&s); err != nil {
			return Rejected, err
		}
		return t.ghost(now, s.Epoch, s.Seq)
	}
	r := t.records[s.Origin]
	if r == nil {
		if len(t.records) >= t.cfg.MaxRecords {
			return Rejected, fmt.Errorf("%w: %d records, origin %s", ErrTableFull, len(t.records), s.Origin)
		}
		if err := t.verify(&s); err != nil {
			return Rejected, err
		}
		if err := t.reserve(s.Origin, len(s.Neighbors)); err != nil {
			return Rejected, err
		}
		t.insert(now, &s)
		return Accepted, nil
	}
	if v, err := t.order(&r.st, s.Epoch, s.Seq); v != Accepted {
		return v, err
	}
	// Only a record that would be stored is checked: copies of known
	// records, which floods bring many of, cost nothing.
	if err := t.verify(&s); err != nil {
		return Rejected, err
	}
	if err := t.reserve(s.Origin, len(s.Neighbors)-len(r.st.Neighbors)); err != nil {
		return Rejected, err
	}
	if !slices.Equal(r.st.Neighbors, s.Neighbors) {
		r.st.Neighbors = shrink(append(r.st.Neighbors[:0], s.Neighbors...))
		t.neighborsChanged(r)
	}
	r.st.Epoch, r.st.Seq, r.st.FreeSlots = s.Epoch, s.Seq, s.FreeSlots
	r.st.Addrs = append(r.st.Addrs[:0], s.Addrs...)
	// The stored record must be exactly what its origin signed, since it
	// is flooded on as it is: the name and the signature too.
	r.st.Name, r.st.Key, r.st.Sig = s.Name, s.Key, cloneSlice(s.Sig)
	t.touch(now, r)
	return Accepted, nil
}

// ApplyEdgeChange applies a remote new_edge (added) or destroy_edge (!added)
// change. It applies only on top of the stored record of the same epoch and
// sequence number c.Seq-1: then the peer is added or removed, the free slots
// are set, the record takes sequence number c.Seq and the verdict is Accepted.
//
// The verdict is Duplicate if the stored record already has (c.Epoch, c.Seq)
// and Stale if it is newer. It is Gap if the origin is unknown, the stored
// record has an older epoch or sequence numbers are missing: the caller then
// requests the origin's full record from the neighbour the change came from.
// A nil origin or peer, a peer equal to the origin, an addition beyond 1024
// neighbours, an absurd epoch or sequence jump are Rejected.
//
// Changes claiming to come from the local node are handled as in ApplyState:
// never applied, Stale, and a ghost (same epoch, a newer sequence number, or
// the current one with contents that do not match) bumps the local sequence
// number.
func (t *Table) ApplyEdgeChange(now time.Time, added bool, c message.EdgeChange) (Verdict, error) {
	switch {
	case c.Origin == uuid.Nil:
		return Rejected, fmt.Errorf("%w: nil origin", ErrInvalidState)
	case c.Peer == uuid.Nil:
		return Rejected, fmt.Errorf("%w: nil peer in change from %s", ErrInvalidState, c.Origin)
	case c.Peer == c.Origin:
		return Rejected, fmt.Errorf("%w: %s lists itself as a neighbour", ErrInvalidState, c.Origin)
	}
	if err := t.checkEpoch(now, c.Epoch); err != nil {
		return Rejected, err
	}
	if c.Origin == t.self {
		l := &t.local.st
		_, listed := slices.BinarySearchFunc(l.Neighbors, c.Peer, compareID)
		same := c.Epoch == l.Epoch && c.Seq == l.Seq
		if same && listed == added && c.FreeSlots == l.FreeSlots {
			return Stale, nil // our own flood, echoed back
		}
		if t.cfg.Signer != nil {
			// A change alone cannot be checked against our own record:
			// a real ghost also floods full records, which ApplyState
			// checks.
			return Stale, nil
		}
		return t.ghost(now, c.Epoch, c.Seq)
	}
	r := t.records[c.Origin]
	if r == nil || c.Epoch > r.st.Epoch {
		return Gap, nil
	}
	if v, err := t.order(&r.st, c.Epoch, c.Seq); v != Accepted {
		return v, err
	}
	if c.Seq-r.st.Seq > 1 {
		return Gap, nil
	}
	if err := t.verifyChange(r, added, c); err != nil {
		return Rejected, err
	}
	i, found := slices.BinarySearchFunc(r.st.Neighbors, c.Peer, compareID)
	switch {
	case added && !found:
		if len(r.st.Neighbors) >= message.MaxNeighbors {
			return Rejected, fmt.Errorf("%w: %s would exceed %d neighbours", ErrInvalidState, c.Origin, message.MaxNeighbors)
		}
		if err := t.reserve(c.Origin, 1); err != nil {
			return Rejected, err
		}
		r.st.Neighbors = slices.Insert(r.st.Neighbors, i, c.Peer)
		t.neighborsChanged(r)
	case !added && found:
		r.st.Neighbors = shrink(slices.Delete(r.st.Neighbors, i, i+1))
		t.entries--
		t.neighborsChanged(r)
	}
	r.st.Seq, r.st.FreeSlots = c.Seq, c.FreeSlots
	r.st.Sig = nil
	if c.Signed() {
		r.st.Sig = slices.Clone(c.Sig[:])
	}
	t.touch(now, r)
	return Accepted, nil
}

// verifyChange checks, with a Signer, that c's signature is the origin's
// signature of the record that applying c to r produces.
func (t *Table) verifyChange(r *record, added bool, c message.EdgeChange) error {
	if t.cfg.Signer == nil {
		return nil
	}
	next := copyState(&r.st)
	i, found := slices.BinarySearchFunc(next.Neighbors, c.Peer, compareID)
	switch {
	case added && !found:
		next.Neighbors = slices.Insert(next.Neighbors, i, c.Peer)
	case !added && found:
		next.Neighbors = slices.Delete(next.Neighbors, i, i+1)
	}
	next.Seq, next.FreeSlots, next.Sig = c.Seq, c.FreeSlots, nil
	if c.Signed() {
		next.Sig = c.Sig[:]
	}
	return t.verify(&next)
}

// reserve accounts for delta more neighbour entries of origin's record, or
// fails with ErrTableFull if they would exceed MaxNeighborEntries.
func (t *Table) reserve(origin uuid.UUID, delta int) error {
	if delta > 0 && t.entries+delta > t.cfg.MaxNeighborEntries {
		return fmt.Errorf("%w: %d neighbour entries, %s adds %d", ErrTableFull, t.entries, origin, delta)
	}
	t.entries += delta
	return nil
}

// order compares (epoch, seq) with the stored record st. It returns Accepted
// if the input is newer and acceptable, else the verdict to report.
func (t *Table) order(st *message.State, epoch, seq uint64) (Verdict, error) {
	switch {
	case epoch < st.Epoch:
		return Stale, nil
	case epoch > st.Epoch:
		return Accepted, nil
	case seq == st.Seq:
		return Duplicate, nil
	case seq < st.Seq:
		return Stale, nil
	case seq-st.Seq > t.cfg.MaxSeqJump:
		return Rejected, fmt.Errorf("%w: %s jumps from %d to %d", ErrAbsurdSeq, st.Origin, st.Seq, seq)
	}
	return Accepted, nil
}

// ghost handles remote input that claims to come from the local node and is
// not an exact echo of the local record: with the local epoch and a sequence
// number at least the local one, it is a ghost.
func (t *Table) ghost(now time.Time, epoch, seq uint64) (Verdict, error) {
	l := &t.local.st
	if epoch != l.Epoch || seq < l.Seq {
		// An older incarnation or an old sequence number of ours: harmless.
		// (A newer epoch of our UUID means another live process claims it;
		// its records win everywhere and nothing here can change that.)
		return Stale, nil
	}
	if seq-l.Seq > t.cfg.MaxSeqJump {
		return Rejected, fmt.Errorf("%w: local node %s jumps from %d to %d", ErrAbsurdSeq, t.self, l.Seq, seq)
	}
	// Skip past the ghost: even a new_edge originated before the next Refresh
	// is then a Gap (and not applied on top of the ghost) everywhere.
	l.Seq = seq + 1
	t.sign() // the record may be sent (digest answers) before the refresh
	if !t.forced {
		t.forced, t.forcedAt = true, now
	}
	return Stale, nil
}

// checkEpoch rejects epochs more than MaxEpochSkew ahead of now.
func (t *Table) checkEpoch(now time.Time, epoch uint64) error {
	limit := now.Add(t.cfg.MaxEpochSkew).UnixNano()
	if limit < 0 || epoch > uint64(limit) {
		return fmt.Errorf("%w: %d is more than %v ahead of %d", ErrAbsurdEpoch, epoch, t.cfg.MaxEpochSkew, now.UnixNano())
	}
	return nil
}

// validateState checks the structure of a remote record.
func validateState(s *message.State) error {
	if s.Origin == uuid.Nil {
		return fmt.Errorf("%w: nil origin", ErrInvalidState)
	}
	if len(s.Neighbors) > message.MaxNeighbors {
		return fmt.Errorf("%w: %s lists %d neighbours, more than %d", ErrInvalidState, s.Origin, len(s.Neighbors), message.MaxNeighbors)
	}
	if len(s.Addrs) > message.MaxAddrs {
		return fmt.Errorf("%w: %s has %d addresses, more than %d", ErrInvalidState, s.Origin, len(s.Addrs), message.MaxAddrs)
	}
	for _, a := range s.Addrs {
		if a == "" || len(a) > message.MaxAddrLen || !utf8.ValidString(a) {
			return fmt.Errorf("%w: %s has an empty, overlong or non-UTF-8 address", ErrInvalidState, s.Origin)
		}
	}
	if err := message.ValidateName(s.Name); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidState, s.Origin, err)
	}
	for i, n := range s.Neighbors {
		switch {
		case n == uuid.Nil:
			return fmt.Errorf("%w: %s lists a nil neighbour", ErrInvalidState, s.Origin)
		case n == s.Origin:
			return fmt.Errorf("%w: %s lists itself as a neighbour", ErrInvalidState, s.Origin)
		case i > 0 && compareID(s.Neighbors[i-1], n) >= 0:
			return fmt.Errorf("%w: %s lists neighbours unsorted or duplicated", ErrInvalidState, s.Origin)
		}
	}
	return nil
}

// insert stores a record for a new origin.
func (t *Table) insert(now time.Time, s *message.State) {
	r := &record{st: copyState(s), heapIdx: -1}
	if n := len(t.free); n > 0 {
		r.slot = t.free[n-1]
		t.free = t.free[:n-1]
		t.slots[r.slot] = r
	} else {
		r.slot = int32(len(t.slots))
		t.slots = append(t.slots, r)
	}
	t.records[s.Origin] = r
	t.touch(now, r)
	t.slotGen++
	t.dirty = true
}

// touch restarts a remote record's ageing after an accepted update.
func (t *Table) touch(now time.Time, r *record) {
	r.expires = now.Add(t.cfg.MaxAge)
	if r.heapIdx < 0 {
		t.heap.push(r)
	} else {
		t.heap.fix(r.heapIdx)
	}
}

// remove deletes a remote record.
func (t *Table) remove(r *record) {
	if r.heapIdx >= 0 {
		t.heap.remove(r.heapIdx)
	}
	delete(t.records, r.st.Origin)
	t.entries -= len(r.st.Neighbors)
	t.slots[r.slot] = nil
	t.free = append(t.free, r.slot)
	t.slotGen++
	t.dirty = true
}

// States returns deep copies of the records of the given origins, in request
// order, skipping unknown and repeated origins; for an empty request it
// returns the whole database, the local record included, sorted by origin.
// This is the answer to network_state_request.
func (t *Table) States(origins []uuid.UUID) []message.State {
	if len(origins) == 0 {
		out := make([]message.State, 0, len(t.records))
		for _, r := range t.slots {
			if r != nil {
				out = append(out, copyState(&r.st))
			}
		}
		slices.SortFunc(out, func(a, b message.State) int { return compareID(a.Origin, b.Origin) })
		return out
	}
	var out []message.State
	seen := make(map[uuid.UUID]struct{}, min(len(origins), len(t.records)))
	for _, o := range origins {
		r := t.records[o]
		if r == nil {
			continue
		}
		if _, dup := seen[o]; dup {
			continue
		}
		seen[o] = struct{}{}
		out = append(out, copyState(&r.st))
	}
	return out
}

// Known reports whether the Table holds a record for origin (always true for
// the local node).
func (t *Table) Known(origin uuid.UUID) bool {
	_, ok := t.records[origin]
	return ok
}

// Key returns the identity key of origin's record, if the record is signed
// (Config.Signer): the key its signature was checked with.
func (t *Table) Key(origin uuid.UUID) ([message.KeySize]byte, bool) {
	r := t.records[origin]
	if r == nil || len(r.st.Sig) == 0 {
		return [message.KeySize]byte{}, false
	}
	return r.st.Key, true
}

// Hold postpones the expiry of every remote record to now+MaxAge. A node
// with no neighbours receives no refreshes; it calls Hold so that it keeps the
// records through which it can find its way back into the mesh.
func (t *Table) Hold(now time.Time) {
	for _, r := range t.records {
		if r.heapIdx >= 0 {
			t.touch(now, r)
		}
	}
}

// Epoch returns the epoch of origin's record, if the Table holds one. A
// caller that remembers it notices when a node restarts.
func (t *Table) Epoch(origin uuid.UUID) (uint64, bool) {
	r, ok := t.records[origin]
	if !ok {
		return 0, false
	}
	return r.st.Epoch, true
}

// Len returns the number of records, the local one included.
func (t *Table) Len() int { return len(t.records) }

// Expire removes every remote record whose last accepted update is MaxAge or
// more before now, and returns their origins sorted. The local record never
// expires.
func (t *Table) Expire(now time.Time) []uuid.UUID {
	var out []uuid.UUID
	for _, s := range t.ExpireStates(now) {
		out = append(out, s.Origin)
	}
	return out
}

// ExpireStates is Expire returning the removed records themselves, sorted by
// origin (a caller may remember where forgotten nodes were).
func (t *Table) ExpireStates(now time.Time) []message.State {
	var out []message.State
	for len(t.heap) > 0 && !now.Before(t.heap[0].expires) {
		r := t.heap[0]
		out = append(out, r.st)
		t.remove(r)
	}
	slices.SortFunc(out, func(a, b message.State) int { return compareID(a.Origin, b.Origin) })
	return out
}

// NextDeadline returns when the caller must next call Refresh or Expire: the
// earliest of the local refresh (RefreshInterval after the last origination,
// or the moment a ghost was seen) and the next record expiry.
func (t *Table) NextDeadline() time.Time {
	d := t.lastOrig.Add(t.cfg.RefreshInterval)
	if t.forced && t.forcedAt.Before(d) {
		d = t.forcedAt
	}
	if len(t.heap) > 0 && t.heap[0].expires.Before(d) {
		d = t.heap[0].expires
	}
	return d
}

// compareID orders UUIDs by their bytes.
func compareID(a, b uuid.UUID) int {
	a0, b0 := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(b[:8])
	if a0 != b0 {
		if a0 < b0 {
			return -1
		}
		return 1
	}
	a1, b1 := binary.BigEndian.Uint64(a[8:]), binary.BigEndian.Uint64(b[8:])
	switch {
	case a1 < b1:
		return -1
	case a1 > b1:
		return 1
	}
	return 0
}

// lists reports whether the sorted list ns holds id.
func lists(ns []uuid.UUID, id uuid.UUID) bool {
	lo, hi := 0, len(ns)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch c := compareID(ns[m], id); {
		case c == 0:
			return true
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return false
}

func copyState(s *message.State) message.State {
	c := *s
	c.Neighbors = cloneSlice(s.Neighbors)
	c.Addrs = cloneSlice(s.Addrs)
	c.Sig = cloneSlice(s.Sig)
	return c
}

// cloneSlice copies s; an empty slice becomes nil.
func cloneSlice[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

// neighborsChanged marks r's neighbour list as changed: routes must be
// recomputed and r's interned adjacency rebuilt.
func (t *Table) neighborsChanged(r *record) {
	t.dirty = true
	if int(r.slot) < len(t.adjGen) {
		t.adjGen[r.slot] = 0
	}
}

// shrink reallocates s when most of its capacity is unused, so that a record
// that once held many neighbours does not keep their memory: capacity, not
// only length, stays within Config.MaxNeighborEntries.
func shrink[T any](s []T) []T {
	if cap(s) > 2*len(s)+8 {
		return cloneSlice(s)
	}
	return s
}
