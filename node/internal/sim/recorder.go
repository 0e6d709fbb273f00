package sim

import (
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/node/internal/core"
)

// Recorder checks the mesh's promise: every message accepted by a send is
// delivered exactly once, in order per sender, or its sender is told it
// failed. It records what the cores accepted, delivered and reported.
type Recorder struct {
	sim       *Sim
	accepted  map[origin]uint64              // messages accepted per stream
	delivered map[flow][]delivery            // per stream and receiver, in order
	failedSet map[flow]map[uint64]bool       // reported failures per stream and target
	broken    map[int]bool                   // nodes that crashed, left or restarted
	bad       []string                       // deliveries that make no sense at all
	unsafe    []string                       // duplicates and reorderings, as they happen
	seen      map[flow]map[uint64]int        // deliveries per message
	lives     map[flow]map[uint64][]int      // receiver lives per message
	byID      func(uuid.UUID) (int, bool)    // node index by ID
	crashed   map[[2]int]bool                // (node, life) that crashed: its sends are nobody's to report
	known     map[origin]map[uint64][]uint64 // broadcasts: the nodes the sender knew when each was accepted (bit sets)
}

// origin is one sender's stream in one of its lives: to dst, or broadcast.
type origin struct {
	src, life int
	dst       int // -1 for the broadcast stream
}

// flow is an origin's messages at one receiver.
type flow struct {
	origin
	rcv int
}

type delivery struct {
	seq  uint64
	life int // the receiver's life
}

// Record starts checking every node of s, those added later included.
func (s *Sim) Record() *Recorder {
	r := &Recorder{
		sim:       s,
		accepted:  make(map[origin]uint64),
		delivered: make(map[flow][]delivery),
		failedSet: make(map[flow]map[uint64]bool),
		broken:    make(map[int]bool),
		seen:      make(map[flow]map[uint64]int),
		lives:     make(map[flow]map[uint64][]int),
		crashed:   make(map[[2]int]bool),
		known:     make(map[origin]map[uint64][]uint64),
	}
	r.byID = func(id uuid.UUID) (int, bool) {
		for _, n := range s.nodes {
			if n.ID == id {
				return n.idx, true
			}
		}
		return 0, false
	}
	s.rec = r
	for _, n := range s.nodes {
		n.rec = r
	}
	return r
}

func (r *Recorder) originOf(n *Node, k streamKey) origin {
	o := origin{src: n.idx, life: n.Life, dst: -1}
	if !k.bcast {
		o.dst, _ = r.byID(k.dst)
	}
	return o
}

func (r *Recorder) onAccepted(n *Node, k streamKey, seq uint64) {
	if r == nil {
		return
	}
	o := r.originOf(n, k)
	if seq+1 > r.accepted[o] {
		r.accepted[o] = seq + 1
	}
	if k.bcast {
		set := make([]uint64, (len(r.sim.nodes)+63)/64)
		for _, m := range r.sim.nodes {
			if m != n && n.core.Routes().Known(m.ID) {
				set[m.idx/64] |= 1 << (m.idx % 64)
			}
		}
		if r.known[o] == nil {
			r.known[o] = make(map[uint64][]uint64)
		}
		r.known[o][seq] = set
	}
}

// bug records a fault the simulator saw outside the streams' guarantees.
func (r *Recorder) bug(what string) {
	if r != nil {
		r.bad = append(r.bad, what)
	}
}

func (r *Recorder) onDelivered(n *Node, d core.Delivery) {
	if r == nil {
		return
	}
	src, life, seq, ok := decodeBody(d.Body)
	if !ok || src >= len(r.sim.nodes) || r.sim.nodes[src].ID != d.From {
		r.bad = append(r.bad, fmt.Sprintf("n%d got a body it cannot place from %s", n.idx, d.From))
		return
	}
	o := origin{src: src, life: life, dst: -1}
	if !d.Broadcast {
		o.dst = n.idx
	}
	f := flow{origin: o, rcv: n.idx}
	r.delivered[f] = append(r.delivered[f], delivery{seq: seq, life: n.Life})
	if r.seen[f] == nil {
		r.seen[f] = make(map[uint64]int)
		r.lives[f] = make(map[uint64][]int)
	}
	if slices.Contains(r.lives[f][seq], n.Life) {
		r.unsafe = append(r.unsafe, fmt.Sprintf("n%d life %d -> n%d life %d (bcast %v): message %d delivered twice",
			src, life, n.idx, n.Life, d.Broadcast, seq))
	}
	ds := r.delivered[f]
	for i := len(ds) - 2; i >= 0; i-- {
		if ds[i].life == n.Life {
			if ds[i].seq >= seq {
				r.unsafe = append(r.unsafe, fmt.Sprintf("n%d life %d -> n%d life %d (bcast %v): message %d delivered after %d",
					src, life, n.idx, n.Life, d.Broadcast, seq, ds[i].seq))
			}
			break
		}
	}
	r.seen[f][seq]++
	r.lives[f][seq] = append(r.lives[f][seq], n.Life)
}

// Unsafe returns the deliveries so far that break safety: a message
// delivered twice to one life of a node, or out of order. Unlike Check it
// needs no quiet network, so a test may call it after every step.
func (r *Recorder) Unsafe() []string { return r.unsafe }

func (r *Recorder) onFailed(n *Node, e core.Event) {
	if r == nil {
		return
	}
	src, life, seq, ok := decodeBody(e.Body)
	if !ok || src != n.idx {
		return
	}
	rcv, ok := r.byID(e.Peer)
	if !ok {
		return
	}
	o := origin{src: src, life: life, dst: -1}
	if !e.Broadcast {
		o.dst = rcv
	}
	f := flow{origin: o, rcv: rcv}
	if r.failedSet[f] == nil {
		r.failedSet[f] = make(map[uint64]bool)
	}
	r.failedSet[f][seq] = true
}

func (r *Recorder) lifeEnded(n *Node, crashed bool) {
	if r != nil {
		r.broken[n.idx] = true
		if crashed {
			r.crashed[[2]int{n.idx, n.Life}] = true
		}
	}
}

// Settled reports whether every accepted message was delivered or reported
// failed to every receiver it must reach (see Check).
func (r *Recorder) Settled() bool { return len(r.problems(true)) == 0 }

// Check returns what breaks the promise, one line each (at most 20), or nil.
// A unicast message must be delivered to its destination exactly once, or
// reported failed (then it may also have been delivered, once per life of
// the destination). Deliveries of a stream to one life of a receiver come in
// order. A broadcast is held to the same for every node its sender knew (held
// a link-state record of) when it accepted the broadcast and that stayed up
// the whole run (never crashed, left or restarted), partitions or not; the
// others must only never get one twice or out of order.
func (r *Recorder) Check() []string { return r.problems(false) }

func (r *Recorder) problems(quick bool) []string {
	var out []string
	add := func(format string, args ...any) bool {
		out = append(out, fmt.Sprintf(format, args...))
		return quick || len(out) >= 20
	}
	if len(r.bad) > 0 && !quick {
		out = append(out, r.bad...)
	}
	origins := make([]origin, 0, len(r.accepted))
	for o := range r.accepted {
		origins = append(origins, o)
	}
	slices.SortFunc(origins, func(a, b origin) int {
		return cmpInts(a.src, b.src, a.life, b.life, a.dst, b.dst)
	})
	for _, o := range origins {
		var rcvs []int
		if o.dst >= 0 {
			rcvs = []int{o.dst}
		} else {
			for _, n := range r.sim.nodes {
				if n.idx != o.src && !r.broken[n.idx] {
					rcvs = append(rcvs, n.idx)
				}
			}
		}
		// A crashed sender's application is gone: nobody is left to tell.
		lost := r.crashed[[2]int{o.src, o.life}]
		for _, rcv := range rcvs {
			f := flow{origin: o, rcv: rcv}
			for seq := range r.accepted[o] {
				got, failed := r.seen[f][seq], r.failedSet[f][seq]
				strict := o.dst >= 0 || r.knew(o, seq, rcv)
				switch {
				case got == 0 && !failed && !lost && strict:
					if add("n%d life %d -> n%d (bcast %v): message %d neither delivered nor reported failed", o.src, o.life, rcv, o.dst < 0, seq) {
						return out
					}
				case got > 1 && (!failed || hasRepeat(r.lives[f][seq])):
					if add("n%d life %d -> n%d (bcast %v): message %d delivered %d times (lives %v, failure reported %v)", o.src, o.life, rcv, o.dst < 0, seq, got, r.lives[f][seq], failed) {
						return out
					}
				}
			}
		}
	}
	if quick {
		return out
	}
	flows := make([]flow, 0, len(r.delivered))
	for f := range r.delivered {
		flows = append(flows, f)
	}
	slices.SortFunc(flows, func(a, b flow) int {
		return cmpInts(a.src, b.src, a.life, b.life, a.dst, b.dst, a.rcv, b.rcv)
	})
	for _, f := range flows {
		last := map[int]uint64{}
		for _, d := range r.delivered[f] {
			if prev, ok := last[d.life]; ok && d.seq <= prev {
				if add("n%d life %d -> n%d life %d (bcast %v): %d delivered after %d", f.src, f.life, f.rcv, d.life, f.dst < 0, d.seq, prev) {
					return out
				}
			}
			last[d.life] = d.seq
		}
		if _, ok := r.accepted[f.origin]; !ok {
			if add("n%d life %d -> n%d: delivered messages never accepted", f.src, f.life, f.rcv) {
				return out
			}
		}
	}
	return out
}

// knew reports whether the sender of broadcast stream o knew node rcv when
// it accepted message seq.
func (r *Recorder) knew(o origin, seq uint64, rcv int) bool {
	set := r.known[o][seq]
	return rcv/64 < len(set) && set[rcv/64]&(1<<(rcv%64)) != 0
}

// Summary counts accepted, delivered and failed messages.
func (r *Recorder) Summary() string {
	var acc, del, fail int
	for _, n := range r.accepted {
		acc += int(n)
	}
	for _, ds := range r.delivered {
		del += len(ds)
	}
	for _, fs := range r.failedSet {
		fail += len(fs)
	}
	return fmt.Sprintf("%d accepted, %d delivered, %d reported failed", acc, del, fail)
}

func hasRepeat(lives []int) bool {
	s := slices.Clone(lives)
	slices.Sort(s)
	return len(slices.Compact(s)) < len(lives)
}

func cmpInts(pairs ...int) int {
	for i := 0; i+1 < len(pairs); i += 2 {
		if c := pairs[i] - pairs[i+1]; c != 0 {
			return c
		}
	}
	return 0
}

// Delivered counts the broadcasts of node src (any life) delivered to node
// rcv (any life).
func (r *Recorder) Delivered(src, rcv int) int { return countBroadcasts(r.delivered, src, rcv) }

// Reported counts the broadcasts of node src (any life) reported failed to
// it for node rcv.
func (r *Recorder) Reported(src, rcv int) int { return countBroadcasts(r.failedSet, src, rcv) }

func countBroadcasts[V []delivery | map[uint64]bool](m map[flow]V, src, rcv int) int {
	k := 0
	for f, v := range m {
		if f.src == src && f.dst < 0 && f.rcv == rcv {
			k += len(v)
		}
	}
	return k
}

// String lists the problems, for a test's failure message.
func (r *Recorder) String() string { return strings.Join(r.Check(), "\n") }
