package render

import (
	"slices"
	"time"

	"github.com/google/uuid"
)

// The scheduler is the coordinator's bookkeeping of tiles, workers and
// slots, pure in the way the routing and reliability packages are: it does
// no I/O, starts no goroutine and reads no clock. The coordinator's run loop
// (coordinator.go) feeds it what happens, with the time it happened, and
// does what it returns:
//
//   - request, result and decline report the workers' messages; lose and
//     forget report workers that became unreachable or were gone silent;
//   - dispatch returns the assignments to send (never blocking: sending is
//     the loop's business, one worker's slowness is not the scheduler's);
//   - expire marks the assignments past their deadline at now, and
//     nextWake says when the loop must call expire and dispatch again if
//     nothing else happens first. Nothing needs polling.

// slotState is what the coordinator knows about one slot of a worker.
type slotState uint8

const (
	slotUnknown  slotState = iota // never asked, or forgotten when the worker was lost
	slotWaiting                   // asked for a tile and has none
	slotAssigned                  // was handed tile
)

type cslot struct {
	state slotState
	tile  int
}

type cworker struct {
	id       uuid.UUID
	local    bool
	slots    [MaxSlots]cslot
	tiles    int
	render   time.Duration
	wasted   int
	lost     bool
	declined string
	heard    time.Time // last request or result
}

// active reports whether the worker has a slot waiting or rendering.
func (w *cworker) active() bool {
	if w.lost || w.declined != "" {
		return false
	}
	for _, s := range w.slots {
		if s.state != slotUnknown {
			return true
		}
	}
	return false
}

// assignee is one handing out of a tile.
type assignee struct {
	w        uuid.UUID
	slot     int
	at       time.Time
	deadline time.Time
	expired  bool
}

type ctile struct {
	done      bool
	queued    bool // in the retry queue
	assignees []assignee
}

// live returns the number of assignees that have not missed their deadline.
func (t *ctile) live() int {
	n := 0
	for _, a := range t.assignees {
		if !a.expired {
			n++
		}
	}
	return n
}

type slotKey struct {
	w    uuid.UUID
	slot int
}

// assignment is a tile handed to a slot, for the loop to send.
type assignment struct {
	w     uuid.UUID
	slot  int
	tile  int
	local bool // a slot of the coordinator's own node
}

// missed is an assignment that passed its deadline.
type missed struct {
	w    uuid.UUID
	tile int
}

// scheduler hands out the tiles of one job. See the comment at the top of
// this file for the caller's duties.
type scheduler struct {
	tileTimeout time.Duration // CoordinatorConfig.TileTimeout; 0: adaptive

	tiles   []ctile
	fresh   []int // tiles never handed out, in order
	retry   []int // tiles to hand out again, first in first out
	done    int
	waiting []slotKey // slots that asked for a tile, oldest first
	workers map[uuid.UUID]*cworker

	slowest    time.Duration // slowest tile so far, from assignment to result
	latencySum time.Duration
	latencyN   int

	reassigned, speculative, duplicates int
}

// newScheduler returns a scheduler for a job of n tiles.
func newScheduler(n int, tileTimeout time.Duration) *scheduler {
	s := &scheduler{tileTimeout: tileTimeout, tiles: make([]ctile, n), fresh: make([]int, n), workers: map[uuid.UUID]*cworker{}}
	for i := range s.fresh {
		s.fresh[i] = i
	}
	return s
}

// complete reports whether every tile is in.
func (s *scheduler) complete() bool { return s.done == len(s.tiles) }

// worker returns the state of worker id, made on first sight; nil when
// maxWorkers are known already.
func (s *scheduler) worker(id uuid.UUID) *cworker {
	w := s.workers[id]
	if w == nil {
		if len(s.workers) >= maxWorkers {
			return nil
		}
		w = &cworker{id: id}
		s.workers[id] = w
	}
	return w
}

// addLocal registers slots slots of the coordinator's own node id, all
// waiting for a tile.
func (s *scheduler) addLocal(id uuid.UUID, slots int) {
	w := s.worker(id)
	w.local = true
	for k := range slots {
		w.slots[k].state = slotWaiting
		s.waiting = append(s.waiting, slotKey{id, k})
	}
}

// request records that slot of worker from asked for a tile at now. It
// returns false if the request is to be ignored (a declined or excess
// worker).
func (s *scheduler) request(from uuid.UUID, slot int, now time.Time) bool {
	w := s.worker(from)
	if w == nil || w.declined != "" {
		return false
	}
	w.lost = false
	w.heard = now
	sl := &w.slots[slot]
	switch {
	case sl.state == slotUnknown:
	case sl.state == slotAssigned && s.stale(w.id, slot, sl.tile):
		// The slot is idle although it was handed a tile long ago, or one
		// that is done: the worker dropped the job and took it up again. It
		// may still get that tile; its queue absorbs it.
		t := &s.tiles[sl.tile]
		t.assignees = slices.DeleteFunc(t.assignees, func(a assignee) bool { return a.w == w.id && a.slot == slot })
		s.requeue(sl.tile)
	default:
		// Waiting already, or the assignment is on its way: delivery is
		// reliable, and its failure makes the worker lost.
		return true
	}
	sl.state = slotWaiting
	s.waiting = append(s.waiting, slotKey{w.id, slot})
	return true
}

// stale reports whether slot of worker w, assigned tile, can be given
// another: the tile is done, or the assignment missed its deadline.
func (s *scheduler) stale(w uuid.UUID, slot, tile int) bool {
	t := &s.tiles[tile]
	if t.done {
		return true
	}
	for _, a := range t.assignees {
		if a.w == w && a.slot == slot {
			return a.expired
		}
	}
	return true
}

// result records tile's result from slot of worker from, which took
// elapsed to render, arriving at now. fresh says whether it is the tile's
// first result (the caller takes its pixels); ok is false for an excess
// worker, whose result is ignored.
func (s *scheduler) result(from uuid.UUID, slot, tile int, elapsed time.Duration, now time.Time) (fresh, ok bool) {
	w := s.worker(from)
	if w == nil {
		return false, false
	}
	w.lost = false
	w.heard = now
	t := &s.tiles[tile]
	for i, a := range t.assignees {
		if a.w == from && a.slot == slot {
			lat := now.Sub(a.at)
			s.slowest = max(s.slowest, lat)
			s.latencySum += lat
			s.latencyN++
			t.assignees = slices.Delete(t.assignees, i, i+1)
			break
		}
	}
	if t.done {
		s.duplicates++
		w.wasted++
	} else {
		t.done = true
		s.done++
		w.tiles++
		w.render += elapsed
		fresh = true
	}
	// The result asks for the slot's next tile, unless the slot has been
	// handed another tile meanwhile.
	if w.declined == "" {
		if sl := &w.slots[slot]; sl.state != slotAssigned || sl.tile == tile {
			if sl.state != slotWaiting {
				s.waiting = append(s.waiting, slotKey{from, slot})
			}
			sl.state = slotWaiting
		}
	}
	return fresh, true
}

// decline records that worker from refused the job, for reason. It returns
// false for an excess worker.
func (s *scheduler) decline(from uuid.UUID, reason string) bool {
	w := s.worker(from)
	if w == nil {
		return false
	}
	w.declined = reason
	s.forget(w)
	return true
}

// lose records that worker id became unreachable, or that a message to it
// failed: its tiles are handed out again. It reports whether id was a
// remote worker that was taking part.
func (s *scheduler) lose(id uuid.UUID) bool {
	w := s.workers[id]
	if w == nil || w.local {
		return false
	}
	w.lost = true
	s.forget(w)
	return true
}

// loseUnreachable loses the active remote workers that reach does not
// hold, and returns them.
func (s *scheduler) loseUnreachable(reach map[uuid.UUID]bool) []uuid.UUID {
	var lost []uuid.UUID
	for _, w := range s.workers {
		if !w.local && !reach[w.id] && w.active() {
			lost = append(lost, w.id)
			s.lose(w.id)
		}
	}
	slices.SortFunc(lost, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	return lost
}

// forget clears a worker's slots and requeues the tiles only it had.
func (s *scheduler) forget(w *cworker) {
	for k := range w.slots {
		sl := &w.slots[k]
		if sl.state == slotAssigned {
			t := &s.tiles[sl.tile]
			t.assignees = slices.DeleteFunc(t.assignees, func(a assignee) bool { return a.w == w.id && a.slot == k })
			s.requeue(sl.tile)
		}
		*sl = cslot{}
	}
}

// requeue puts a tile that nobody is working on back in the queue.
func (s *scheduler) requeue(tile int) {
	t := &s.tiles[tile]
	if t.done || t.queued || t.live() > 0 {
		return
	}
	t.queued = true
	s.retry = append(s.retry, tile)
	s.reassigned++
}

// expire marks the assignments past their deadline at now, requeues their
// tiles, and returns them.
func (s *scheduler) expire(now time.Time) []missed {
	var out []missed
	for i := range s.tiles {
		t := &s.tiles[i]
		if t.done {
			continue
		}
		for j := range t.assignees {
			if a := &t.assignees[j]; !a.expired && now.After(a.deadline) {
				a.expired = true
				out = append(out, missed{w: a.w, tile: i})
				s.requeue(i)
			}
		}
	}
	return out
}

// timeout is the deadline of an assignment made now.
func (s *scheduler) timeout() time.Duration {
	switch {
	case s.tileTimeout > 0:
		return s.tileTimeout
	case s.latencyN == 0:
		return initialTileTimeout
	}
	return max(minTileTimeout, timeoutFactor*s.slowest)
}

// speculateAfter is how long a tile must have been in flight before an idle
// slot gets a second copy of it: twice the mean tile time so far. ok is
// false before any tile has come back.
func (s *scheduler) speculateAfter() (d time.Duration, ok bool) {
	if s.latencyN == 0 {
		return 0, false
	}
	return 2 * s.latencySum / time.Duration(s.latencyN), true
}

// nextTile picks the tile for a slot of worker w at now: a requeued one, a
// fresh one, or, when none is left, a tile in flight elsewhere for longer
// than speculateAfter (a speculative second copy).
func (s *scheduler) nextTile(w uuid.UUID, now time.Time) (int, bool) {
	for len(s.retry) > 0 {
		t := s.retry[0]
		s.retry = s.retry[1:]
		s.tiles[t].queued = false
		if !s.tiles[t].done && s.tiles[t].live() == 0 {
			return t, true
		}
	}
	for len(s.fresh) > 0 {
		t := s.fresh[0]
		s.fresh = s.fresh[1:]
		if !s.tiles[t].done {
			return t, true
		}
	}
	after, ok := s.speculateAfter()
	if !ok {
		return 0, false
	}
	best, bestAt := -1, now
	for i := range s.tiles {
		t := &s.tiles[i]
		if t.done || len(t.assignees) != 1 {
			continue
		}
		if a := t.assignees[0]; a.w != w && !a.expired && now.Sub(a.at) > after && a.at.Before(bestAt) {
			best, bestAt = i, a.at
		}
	}
	if best < 0 {
		return 0, false
	}
	s.speculative++
	return best, true
}

// dispatch hands tiles to waiting slots at now, oldest request first, and
// returns the assignments for the caller to send.
func (s *scheduler) dispatch(now time.Time) []assignment {
	var out []assignment
	for len(s.waiting) > 0 {
		k := s.waiting[0]
		w := s.workers[k.w]
		if w == nil || w.lost || w.declined != "" || w.slots[k.slot].state != slotWaiting {
			s.waiting = s.waiting[1:]
			continue
		}
		tile, ok := s.nextTile(k.w, now)
		if !ok {
			break
		}
		s.waiting = s.waiting[1:]
		w.slots[k.slot] = cslot{state: slotAssigned, tile: tile}
		t := &s.tiles[tile]
		t.assignees = append(t.assignees, assignee{w: k.w, slot: k.slot, at: now, deadline: now.Add(s.timeout())})
		out = append(out, assignment{w: k.w, slot: k.slot, tile: tile, local: w.local})
	}
	return out
}

// nextWake returns when expire and dispatch must run again if nothing else
// happens first: the earliest deadline of an assignment, or, while a slot
// waits with no tile to give it, the earliest moment after now that a tile
// in flight becomes due a speculative copy (one due already went to no
// waiting slot because they are all its own worker's). ok is false when
// there is no such moment.
func (s *scheduler) nextWake(now time.Time) (at time.Time, ok bool) {
	consider := func(t time.Time) {
		if !ok || t.Before(at) {
			at, ok = t, true
		}
	}
	after, speculate := s.speculateAfter()
	speculate = speculate && s.hasWaiting() && len(s.retry) == 0 && len(s.fresh) == 0
	for i := range s.tiles {
		t := &s.tiles[i]
		if t.done {
			continue
		}
		for _, a := range t.assignees {
			if !a.expired {
				// expire acts once now is after the deadline.
				consider(a.deadline.Add(time.Nanosecond))
			}
		}
		if speculate && len(t.assignees) == 1 && !t.assignees[0].expired {
			if due := t.assignees[0].at.Add(after + time.Nanosecond); due.After(now) {
				consider(due)
			}
		}
	}
	return at, ok
}

// hasWaiting reports whether a slot waits for a tile.
func (s *scheduler) hasWaiting() bool {
	for _, k := range s.waiting {
		if w := s.workers[k.w]; w != nil && !w.lost && w.declined == "" && w.slots[k.slot].state == slotWaiting {
			return true
		}
	}
	return false
}

// quiet returns the remote workers that take part (not declined) and have
// not been heard from since before now-d, sorted.
func (s *scheduler) quiet(now time.Time, d time.Duration) []uuid.UUID {
	var out []uuid.UUID
	for _, w := range s.workers {
		if !w.local && w.declined == "" && now.Sub(w.heard) >= d {
			out = append(out, w.id)
		}
	}
	slices.SortFunc(out, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	return out
}

// activeWorkers counts the workers with a slot waiting or rendering.
func (s *scheduler) activeWorkers() int {
	n := 0
	for _, w := range s.workers {
		if w.active() {
			n++
		}
	}
	return n
}

// nodeReports returns one report per worker, the ones that delivered the
// most tiles first.
func (s *scheduler) nodeReports() []NodeReport {
	out := make([]NodeReport, 0, len(s.workers))
	for _, w := range s.workers {
		out = append(out, NodeReport{ID: w.id, Local: w.local, Tiles: w.tiles, Render: w.render, Wasted: w.wasted, Lost: w.lost, Declined: w.declined})
	}
	slices.SortFunc(out, func(a, b NodeReport) int {
		if a.Tiles != b.Tiles {
			return b.Tiles - a.Tiles
		}
		return slices.Compare(a.ID[:], b.ID[:])
	})
	return out
}
