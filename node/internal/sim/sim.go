// Package sim runs many node cores (node/internal/core) on a simulated
// network in virtual time, on one goroutine, fully determined by a seed.
//
// The network has latency, jitter, loss, duplication and reordering per
// link, partitions, crashes and restarts with a new epoch. The simulator
// plays the node driver's part for each core: it carries out every Ready
// (writes become frames in flight, dials become handshakes), keeps one timer
// per core at its Deadline, and runs the handshake as the driver does (hello,
// then welcome or reject, following redirects). Time only moves when nothing
// is left to do at the current instant, so an hour of protocol time costs
// what its events cost, not an hour.
//
// A run is replayed from its seed: the same seed and the same calls give the
// same trace. Trace, when set, receives one line per event; a test keeps the
// last lines and prints them when it fails.
package sim

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/node/internal/core"
)

// Profile is how a link treats the frames that cross it.
type Profile struct {
	// Latency is the one-way delay; Jitter adds up to that much more, drawn
	// per frame (frames may then overtake each other only if Reorder allows).
	Latency, Jitter time.Duration
	// Loss, Dup and Reorder are per-frame probabilities: the frame is lost,
	// delivered twice, or delayed by up to 4×Latency+1ms past the frames
	// behind it.
	Loss, Dup, Reorder float64
	// Bandwidth, when positive, is the link's rate in bytes per second each
	// way: a frame is serialized after the frames sent before it, and a
	// node's write of a batch completes (WriteDone) when its last frame is
	// on the wire, as a reliable transport's blocking write does.
	Bandwidth float64
}

// Epoch0 is the virtual time every simulation starts at.
var epoch0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// Sim is one simulated network.
type Sim struct {
	rng    *rand.Rand
	now    time.Time
	seq    uint64
	events eventHeap
	nodes  []*Node
	byAddr map[string]*Node
	link   core.LinkID
	// Default is the profile of links without one of their own.
	Default Profile
	// Configure, when set, adjusts each core's configuration before it
	// starts (and restarts).
	Configure func(i int, c *core.Config)
	// Secret, when set before the nodes are added, makes a closed cluster:
	// each node gets an identity key drawn from the seed (its UUID is the
	// key's, kept across restarts) and the secret, so that link state is
	// signed and data sealed end to end (docs/SECURITY.md). The handshake's
	// challenge-response is the driver's and is not simulated.
	Secret []byte
	// Trace, when set, receives a line per event.
	Trace func(string)
	cut   map[[2]int]bool // partitioned pairs, smaller index first
	prof  map[[2]int]Profile
	steps uint64
	rec   *Recorder
}

// New makes an empty network whose randomness is drawn from seed.
func New(seed uint64) *Sim {
	return &Sim{
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		now:    epoch0,
		byAddr: make(map[string]*Node),
		cut:    make(map[[2]int]bool),
		prof:   make(map[[2]int]Profile),
	}
}

// Now returns the virtual time.
func (s *Sim) Now() time.Time { return s.now }

// Elapsed returns the virtual time since the start.
func (s *Sim) Elapsed() time.Duration { return s.now.Sub(epoch0) }

// Steps returns how many events ran.
func (s *Sim) Steps() uint64 { return s.steps }

// Rand is the simulation's randomness, for tests that draw scenarios.
func (s *Sim) Rand() *rand.Rand { return s.rng }

// Nodes returns every node ever added, in order.
func (s *Sim) Nodes() []*Node { return s.nodes }

func (s *Sim) tracef(format string, args ...any) {
	if s.Trace != nil {
		s.Trace(fmt.Sprintf("%10.6f ", s.Elapsed().Seconds()) + fmt.Sprintf(format, args...))
	}
}

// ---- events ----

type event struct {
	at  time.Time
	seq uint64
	fn  func()
}

type eventHeap []*event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(*event)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

// at schedules fn at t (never before now).
func (s *Sim) at(t time.Time, fn func()) {
	if t.Before(s.now) {
		t = s.now
	}
	s.seq++
	heap.Push(&s.events, &event{at: t, seq: s.seq, fn: fn})
}

// After schedules fn after d of virtual time: a test's own actions (send,
// kill, partition) at chosen moments.
func (s *Sim) After(d time.Duration, fn func()) { s.at(s.now.Add(d), fn) }

// step runs the next event; false when there is none.
func (s *Sim) step() bool {
	if len(s.events) == 0 {
		return false
	}
	e := heap.Pop(&s.events).(*event)
	s.now = e.at
	s.steps++
	e.fn()
	return true
}

// Run runs events for d of virtual time.
func (s *Sim) Run(d time.Duration) {
	end := s.now.Add(d)
	for len(s.events) > 0 && !s.events[0].at.After(end) {
		s.step()
	}
	s.now = end
}

// RunUntil runs events until cond holds (checked after every event at a new
// instant) or limit of virtual time has passed, and reports whether cond held.
func (s *Sim) RunUntil(limit time.Duration, cond func() bool) bool {
	end := s.now.Add(limit)
	for {
		if cond() {
			return true
		}
		if len(s.events) == 0 || s.events[0].at.After(end) {
			s.now = end
			return cond()
		}
		t := s.events[0].at
		for len(s.events) > 0 && s.events[0].at.Equal(t) {
			s.step()
		}
	}
}

// ---- topology of the network ----

func pair(i, j int) [2]int {
	if i > j {
		i, j = j, i
	}
	return [2]int{i, j}
}

// SetProfile sets the profile of the link between nodes i and j (both ways).
func (s *Sim) SetProfile(i, j int, p Profile) { s.prof[pair(i, j)] = p }

func (s *Sim) profile(i, j int) Profile {
	if p, ok := s.prof[pair(i, j)]; ok {
		return p
	}
	return s.Default
}

// Cut makes the network drop everything between nodes i and j, and refuse
// their dials, until HealAll.
func (s *Sim) Cut(i, j int) { s.cut[pair(i, j)] = true }

// Partition cuts every pair across the two groups.
func (s *Sim) Partition(a, b []int) {
	for _, i := range a {
		for _, j := range b {
			s.Cut(i, j)
		}
	}
}

// HealAll removes every cut.
func (s *Sim) HealAll() { clear(s.cut) }

func (s *Sim) isCut(i, j int) bool { return s.cut[pair(i, j)] }

// ---- frames in flight ----

// end is one side of a simulated edge.
type end struct {
	id     core.LinkID
	node   *Node
	other  *end
	open   bool
	lastAt time.Time // when the last frame sent from here arrives: FIFO order
	busy   time.Time // with a bandwidth: when the last frame sent from here is on the wire
	// Before the handshake completes, the first frame to arrive is the
	// handshake's answer and goes to hs instead of the core.
	hs func(frame []byte)
	// onClose, during a handshake, hears that the other side closed.
	onClose func()
	up      bool // the core knows this end
}

func (s *Sim) newEdge(a, b *Node) (*end, *end) {
	s.link++
	x := &end{id: s.link, node: a, open: true}
	s.link++
	y := &end{id: s.link, node: b, open: true}
	x.other, y.other = y, x
	return x, y
}

// transmit sends a frame from e to the other side, through the link's
// faults. The bytes are copied: a receiver edits relayed frames in place.
func (s *Sim) transmit(e *end, frame []byte) {
	from, to := e.node, e.other.node
	if !e.open || !from.alive {
		return
	}
	p := s.profile(from.idx, to.idx)
	sent := s.now
	if p.Bandwidth > 0 {
		sent = later(s.now, e.busy).Add(time.Duration(float64(len(frame)) / p.Bandwidth * float64(time.Second)))
		e.busy = sent
	}
	if p.Loss > 0 && s.rng.Float64() < p.Loss {
		return
	}
	copies := 1
	if p.Dup > 0 && s.rng.Float64() < p.Dup {
		copies = 2
	}
	for range copies {
		delay := p.Latency
		if p.Jitter > 0 {
			delay += time.Duration(s.rng.Int64N(int64(p.Jitter)))
		}
		at := sent.Add(delay)
		if p.Reorder > 0 && s.rng.Float64() < p.Reorder {
			at = at.Add(time.Duration(s.rng.Int64N(int64(4*p.Latency + time.Millisecond))))
		} else if at.Before(e.lastAt) {
			at = e.lastAt // FIFO: not before the frame in front
		} else {
			e.lastAt = at
		}
		f := append([]byte(nil), frame...)
		dst := e.other
		s.at(at, func() { s.arrive(dst, f) })
	}
}

// doneAt is when a write of frames already transmitted from e completes:
// now, or when its last frame is on the wire.
func (s *Sim) doneAt(e *end) time.Time {
	if e == nil {
		return s.now
	}
	return later(s.now, e.busy)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// arrive hands a frame to the node at the receiving end.
func (s *Sim) arrive(e *end, frame []byte) {
	n := e.node
	if !e.open || !n.alive || s.isCut(n.idx, e.other.node.idx) {
		return
	}
	if e.hs != nil {
		e.hs(frame)
		return
	}
	if !e.up {
		return
	}
	n.frame(e, frame)
}

// closeEnd closes e; the other side notices after the link's latency, as a
// transport reporting a closed connection.
func (s *Sim) closeEnd(e *end) {
	if !e.open {
		return
	}
	e.open = false
	o := e.other
	// The close travels behind the frames already in flight, as a
	// connection's FIN does.
	at := s.now.Add(s.profile(e.node.idx, o.node.idx).Latency)
	if at.Before(e.lastAt) {
		at = e.lastAt
	}
	s.at(at, func() {
		if o.open {
			o.open = false
			if o.onClose != nil && !o.up {
				o.onClose()
			}
			if o.up && o.node.alive {
				o.node.core.EdgeFailed(s.now, o.id, fmt.Errorf("sim: edge closed by %s", e.node.short()))
				o.node.flush()
			}
		}
	})
}

// ID of a fresh node, drawn from the simulation's randomness.
func (s *Sim) newID() uuid.UUID {
	var id uuid.UUID
	for i := range id {
		id[i] = byte(s.rng.UintN(256))
	}
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return id
}

// RunUntilEvery runs events until cond holds, checking it every period of
// virtual time (for conditions too costly to check after every event), or
// until limit has passed; it reports whether cond held.
func (s *Sim) RunUntilEvery(limit, period time.Duration, cond func() bool) bool {
	end := s.now.Add(limit)
	for !s.now.After(end) {
		if cond() {
			return true
		}
		s.Run(period)
	}
	return cond()
}
