package memory

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/internal/edgeset"
)

// ErrAddrInUse is returned by Listen for an address that already has a
// listener on the network.
var ErrAddrInUse = errors.New("memory: address in use")

// DefaultQueueLen is the number of frames each edge direction buffers when
// Config.QueueLen is zero. 1024 frames let a node burst an initial reliability
// window (10 messages) to a hundred destinations, or four full windows (256),
// through one neighbour without blocking, while a stalled receiver still
// pushes back on its sender.
const DefaultQueueLen = 1024

// reorderHold is how long a frame held back by Faults.Reorder waits, after it
// was due, for the next frame to overtake it. If none comes it is delivered
// anyway, so that the last frame of a burst is late rather than lost.
const reorderHold = 10 * time.Millisecond

// Faults describes how a link misbehaves. The zero value is a perfect link:
// FIFO, lossless, no delay.
//
// Probabilities are clamped to [0, 1] and negative durations count as zero.
// Decisions are independent per frame and per direction.
type Faults struct {
	// Loss is the probability that a frame is dropped.
	Loss float64
	// Duplicate is the probability that a frame is delivered twice. The copy
	// gets its own jitter, so it may arrive before the original.
	Duplicate float64
	// Reorder is the probability that a frame is held back and delivered after
	// the next frame on the same edge direction. A held frame that no frame
	// follows is delivered 10 ms after it was due.
	Reorder float64
	// Delay is the base one-way delay of every frame.
	Delay time.Duration
	// Jitter adds a uniform random delay in [0, Jitter) to each frame, which
	// reorders frames sent closer together than the jitter.
	Jitter time.Duration
}

func (f Faults) clean() Faults {
	p := func(x float64) float64 {
		if math.IsNaN(x) || x < 0 {
			return 0
		}
		return min(x, 1)
	}
	f.Loss, f.Duplicate, f.Reorder = p(f.Loss), p(f.Duplicate), p(f.Reorder)
	f.Delay, f.Jitter = max(f.Delay, 0), max(f.Jitter, 0)
	return f
}

// timed reports whether frames need the delivery goroutine.
func (f *Faults) timed() bool { return f.Delay > 0 || f.Jitter > 0 || f.Reorder > 0 }

// Config configures a Network. The zero value is a usable configuration with a
// random seed and perfect links.
type Config struct {
	// Seed seeds every fault decision on the network. Zero picks a random
	// seed; Network.Seed reports the seed in use either way.
	Seed int64
	// Faults is the default for every link; Network.SetFaults overrides it
	// per link.
	Faults Faults
	// MaxFrame is the largest frame Send accepts; zero means
	// transport.DefaultMaxFrame.
	MaxFrame int
	// QueueLen is the number of frames buffered per edge direction; zero
	// means DefaultQueueLen.
	QueueLen int
}

// Stats counts frames on a Network since it was created. Once the network is
// idle (nothing in flight in a delivery goroutine),
// Sent + Duplicated == Delivered + Dropped().
type Stats struct {
	// Sent counts frames accepted by Send (Send returned nil).
	Sent uint64
	// Delivered counts frames placed in a receiving edge's queue, duplicates
	// included. A delivered frame may still go unread if its receiver closes.
	Delivered uint64
	// Lost counts frames dropped by Faults.Loss.
	Lost uint64
	// Blocked counts frames dropped because their link was cut or
	// partitioned, at Send or when they fell due.
	Blocked uint64
	// Discarded counts frames sent to a killed peer, and frames still delayed
	// in flight when their edge closed.
	Discarded uint64
	// Duplicated counts the extra copies made by Faults.Duplicate.
	Duplicated uint64
	// Reordered counts frames held back by Faults.Reorder.
	Reordered uint64
}

// Dropped returns the number of frames that were not delivered, for any
// reason.
func (s Stats) Dropped() uint64 { return s.Lost + s.Blocked + s.Discarded }

type counters struct {
	sent, delivered, lost, blocked, discarded, duplicated, reordered atomic.Uint64
}

// pair is a link: an unordered pair of addresses, a <= b.
type pair struct{ a, b string }

func pairOf(a, b string) pair {
	if b < a {
		a, b = b, a
	}
	return pair{a, b}
}

// Network is a simulated network of memory transports. It is safe for
// concurrent use. Close it to release every transport, edge and goroutine.
type Network struct {
	seed     int64
	defaults Faults
	maxFrame int
	queueLen int
	stats    counters

	mu        sync.Mutex
	closed    bool
	listeners map[string]*Transport
	faults    map[pair]Faults
	cuts      map[pair]struct{}
	groups    map[string]int // nil when there is no partition
	conns     map[*conn]struct{}
	dials     map[[2]string]uint64 // edges dialled per (from, to), for seeding
}

// NewNetwork returns an empty network configured by cfg.
func NewNetwork(cfg Config) *Network {
	n := &Network{
		seed:      cfg.Seed,
		defaults:  cfg.Faults.clean(),
		maxFrame:  cfg.MaxFrame,
		queueLen:  cfg.QueueLen,
		listeners: make(map[string]*Transport),
		faults:    make(map[pair]Faults),
		cuts:      make(map[pair]struct{}),
		conns:     make(map[*conn]struct{}),
		dials:     make(map[[2]string]uint64),
	}
	for n.seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		n.seed = int64(binary.LittleEndian.Uint64(b[:]) >> 1)
	}
	if n.maxFrame <= 0 {
		n.maxFrame = transport.DefaultMaxFrame
	}
	if n.queueLen <= 0 {
		n.queueLen = DefaultQueueLen
	}
	return n
}

// Seed returns the seed of the network's fault decisions: Config.Seed, or the
// random seed chosen when that was zero.
func (n *Network) Seed() int64 { return n.seed }

// MaxFrame returns the largest frame Send accepts on this network.
func (n *Network) MaxFrame() int { return n.maxFrame }

// Listen returns a transport listening at addr, any non-empty name. It fails
// with ErrAddrInUse if addr already has a listener, and with an error wrapping
// transport.ErrClosed if the network is closed. An address freed by Close or
// Kill can be listened on again.
func (n *Network) Listen(addr string) (*Transport, error) {
	if addr == "" {
		return nil, errors.New("memory: Listen: empty address")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, fmt.Errorf("memory: Listen %q: network %w", addr, transport.ErrClosed)
	}
	if _, ok := n.listeners[addr]; ok {
		return nil, fmt.Errorf("%w: %q", ErrAddrInUse, addr)
	}
	t := &Transport{net: n, addr: addr, edges: edgeset.New[*Edge](acceptBacklog)}
	n.listeners[addr] = t
	return t, nil
}

// SetFaults sets the faults of the link between addresses a and b, in both
// directions, for the edges between them now and those dialled later. It
// replaces Config.Faults for that link; SetFaults(a, b, Faults{}) makes the
// link perfect.
func (n *Network) SetFaults(a, b string, f Faults) {
	f = f.clean()
	k := pairOf(a, b)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.faults[k] = f
	for c := range n.conns {
		if c.key == k {
			c.setFaults(f)
		}
	}
}

// Cut silences the link between a and b: frames on existing edges between them
// are dropped in both directions, and neither side sees a close. New Dials
// between them fail with transport.ErrUnreachable. Heal undoes it.
func (n *Network) Cut(a, b string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cuts[pairOf(a, b)] = struct{}{}
	n.refreshLocked()
}

// Partition splits the network into groups of addresses: frames between
// addresses in different groups are dropped and Dials across groups fail with
// transport.ErrUnreachable. Every address named in no group belongs to one
// further group of its own. A Partition replaces the previous one; Cuts stay.
// Partition() with no groups removes the partition.
func (n *Network) Partition(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.groups = nil
	if len(groups) > 0 {
		n.groups = make(map[string]int)
		for i, g := range groups {
			for _, a := range g {
				n.groups[a] = i
			}
		}
	}
	n.refreshLocked()
}

// Heal undoes every Cut and the Partition: existing edges resume carrying
// frames, and Dials succeed again. Frames dropped meanwhile stay lost.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cuts)
	n.groups = nil
	n.refreshLocked()
}

// Kill crashes the transport listening at addr, if any. For its owner it is
// closed: its methods and those of its edges return errors wrapping
// transport.ErrClosed. Its peers see nothing: their edges to it stay open but
// silent, frames they send are discarded and they receive nothing more. addr
// can Listen again at once (a restart). Frames in flight to or from it are
// lost.
func (n *Network) Kill(addr string) {
	n.mu.Lock()
	t := n.listeners[addr]
	n.mu.Unlock()
	if t != nil {
		t.shutdown(true)
	}
}

// Stats returns the network's frame counters.
func (n *Network) Stats() Stats {
	c := &n.stats
	return Stats{
		Sent:       c.sent.Load(),
		Delivered:  c.delivered.Load(),
		Lost:       c.lost.Load(),
		Blocked:    c.blocked.Load(),
		Discarded:  c.discarded.Load(),
		Duplicated: c.duplicated.Load(),
		Reordered:  c.reordered.Load(),
	}
}

// Close closes every transport on the network (their peers see the edges
// close) and makes Listen fail. When Close returns, no goroutine of the
// network is left running. Close is idempotent and returns nil.
func (n *Network) Close() error {
	n.mu.Lock()
	n.closed = true
	ts := make([]*Transport, 0, len(n.listeners))
	for _, t := range n.listeners {
		ts = append(ts, t)
	}
	n.mu.Unlock()
	for _, t := range ts {
		t.shutdown(false)
	}
	return nil
}

// blockedLocked reports whether frames between a and b are dropped.
func (n *Network) blockedLocked(a, b string) bool {
	if _, ok := n.cuts[pairOf(a, b)]; ok {
		return true
	}
	if n.groups == nil {
		return false
	}
	ga, ok := n.groups[a]
	if !ok {
		ga = -1
	}
	gb, ok := n.groups[b]
	if !ok {
		gb = -1
	}
	return ga != gb
}

func (n *Network) refreshLocked() {
	for c := range n.conns {
		c.setBlocked(n.blockedLocked(c.key.a, c.key.b))
	}
}

func (n *Network) faultsLocked(k pair) Faults {
	if f, ok := n.faults[k]; ok {
		return f
	}
	return n.defaults
}

// rngFor returns the fault RNG of the edge direction from -> to, the k-th
// edge dialled between them in that order of dialler and acceptor.
func (n *Network) rngFor(from, to string, dialer bool, k uint64) *mrand.Rand {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(n.seed))
	h.Write(b[:])
	h.Write([]byte(from))
	h.Write([]byte{0})
	h.Write([]byte(to))
	h.Write([]byte{0})
	if dialer {
		h.Write([]byte{1})
	} else {
		h.Write([]byte{2})
	}
	binary.LittleEndian.PutUint64(b[:], k)
	h.Write(b[:])
	s := h.Sum64()
	return mrand.New(mrand.NewPCG(s, splitmix64(s)))
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// dial creates an edge from t to the listener at addr and hands its far side
// to that listener's Accept.
func (n *Network) dial(t *Transport, addr string) (*conn, *Transport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, nil, fmt.Errorf("memory: dial %q: network %w", addr, transport.ErrClosed)
	}
	dst := n.listeners[addr]
	if dst == nil {
		return nil, nil, fmt.Errorf("memory: dial %q: no listener: %w", addr, transport.ErrUnreachable)
	}
	if n.blockedLocked(t.addr, addr) {
		return nil, nil, fmt.Errorf("memory: dial %q: link cut or partitioned: %w", addr, transport.ErrUnreachable)
	}
	k := n.dials[[2]string{t.addr, addr}]
	n.dials[[2]string{t.addr, addr}] = k + 1
	c := newConn(n, t, dst, k)
	c.setFaults(n.faultsLocked(c.key))
	n.conns[c] = struct{}{}
	return c, dst, nil
}

func (n *Network) forget(c *conn) {
	n.mu.Lock()
	delete(n.conns, c)
	n.mu.Unlock()
}
