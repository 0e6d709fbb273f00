package core

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/reliability"
	"github.com/distrirender/distrirender/routing"
)

// Errors the Core reports, re-exported by package node under the same names.
var (
	ErrClosed        = errors.New("node: closed")
	ErrHandshake     = errors.New("node: handshake failed")
	ErrDuplicateEdge = errors.New("node: already connected to that node")
	ErrFull          = errors.New("node: every connection slot is taken")
	// ErrPeerSilent: a neighbour was silent past its limit.
	ErrPeerSilent = errors.New("node: neighbour silent past the keepalive limit")
	// ErrPeerLeft: a neighbour said goodbye.
	ErrPeerLeft = errors.New("node: neighbour said goodbye")
	// ErrPeerReplaced: a neighbour's edge was replaced by one from its next life.
	ErrPeerReplaced = errors.New("node: neighbour restarted")
	// ErrPeerRestarted is the cause reported for messages in flight to a node
	// that restarted (a new epoch): they may have reached its previous life.
	ErrPeerRestarted = errors.New("node: destination restarted")
	// ErrUnreached is the cause reported for a broadcast to a node the
	// sender knew but could not reach while the broadcast was in flight.
	ErrUnreached = errors.New("node: destination unreachable while the broadcast was in flight")
	// ErrCancelled answers a send request that its caller gave up on.
	ErrCancelled = errors.New("node: send cancelled")
)

// LinkID names one edge for the lifetime of a Core. The caller picks it (each
// edge a new one, never 0) when it hands the edge to Admit or Register.
type LinkID uint64

// Config is what a Core needs; New fills nothing in: start from Defaults.
type Config struct {
	ID    uuid.UUID
	Epoch uint64
	// Addrs are the addresses advertised in hello and link state.
	Addrs []string
	// Name is the node's human name, advertised in link state (may be empty).
	Name string
	// MaxConns and MinConns bound the number of neighbours; MinConns 0 turns
	// balancing off.
	MaxConns, MinConns int
	// Keepalive is the keepalive interval; a neighbour silent for
	// Keepalive×DeadAfter is dropped.
	Keepalive time.Duration
	DeadAfter int
	// Handshake bounds a handshake; a retired edge is closed after it.
	Handshake time.Duration
	// HopLimit is the hop limit of frames this node originates.
	HopLimit uint8
	// MaxBody is the largest body accepted.
	MaxBody int
	// Backlog is the outbound backlog per stream, in messages.
	Backlog int
	// ForwardBuf and ControlBuf bound each neighbour's data and control
	// queues, in frames.
	ForwardBuf, ControlBuf int
	// ForwardBytes bounds the data frames queued for a neighbour, the write
	// in progress included: a forwarded frame beyond it is dropped (a loss
	// the sender's congestion control answers), and this node's own
	// streams stop filling the queue at a quarter of it (push-back: Send
	// blocks rather than frames being dropped).
	ForwardBytes int
	// EntryPointLimit is how many entry points a rejection carries.
	EntryPointLimit int
	// RedialFor is how long a failed dialled edge is redialled (0: never).
	RedialFor time.Duration
	// BalanceEvery is the balancing round.
	BalanceEvery time.Duration
	// Rel and Routing configure the streams and the link state; both must
	// already have their defaults applied.
	Rel     reliability.Config
	Routing routing.Config
	// Auth, when it holds secrets, signs this node's link state with
	// Auth.Key and makes every remote record and change checked against
	// its origin's key before it touches routing (docs/SECURITY.md). The
	// handshake itself is the driver's (Credentials' methods).
	Auth Credentials
	// ReuseFrom, when above 0, makes the Core hand back in Ready.Free the
	// unicast frames of at least ReuseFrom bytes that SendRequests and
	// Frame (a relayed frame) gave it, once nothing refers to them any
	// more: every copy acknowledged (for its own), and out of every queue
	// and Write. 0 hands back nothing.
	ReuseFrom int
	// Rand draws jitter and random choices. The simulator seeds it.
	Rand *rand.Rand
	// Logger receives the Core's log lines.
	Logger *slog.Logger
}

// Defaults returns the protocol's default parameters; ID, Epoch, Addrs,
// Rand and Logger are left for the caller.
func Defaults() Config {
	return Config{
		MaxConns:  10,
		MinConns:  5,
		Keepalive: time.Second,
		DeadAfter: 3,
		Handshake: 5 * time.Second,
		HopLimit:  64,
		MaxBody:   message.DefaultMaxBody,
		// The backlog per destination sits in front of the reliability window:
		// Send blocks once window+backlog messages to one destination are pending.
		Backlog: 64,
		// 1,024 frames per neighbour absorb four full windows crossing one
		// link before forwarded frames are dropped (and retransmitted end to
		// end); 4 MiB bounds the queueing delay that large frames add.
		ForwardBuf:      1024,
		ForwardBytes:    4 << 20,
		ControlBuf:      256,
		EntryPointLimit: 4,
		RedialFor:       time.Minute,
		BalanceEvery:    time.Second,
		Rel:             reliability.Config{}.WithDefaults(),
		Routing:         routing.Config{}.WithDefaults(),
	}
}

// Stats are the counters a Core keeps (node.Stats documents each).
type Stats struct {
	FramesIn, FramesOut        uint64
	Forwarded                  uint64
	DroppedForward             uint64
	DroppedNoRoute             uint64
	DroppedHopLimit            uint64
	Hostile                    uint64
	Delivered                  uint64
	Duplicates                 uint64
	Retransmits                uint64
	CongestionMarks            uint64
	Failed                     uint64
	NeighborsUp, NeighborsDown uint64
	TopologyFrames             uint64
	RateLimited                uint64
	Forged                     uint64
}

// EventKind says what an Event reports; node.EventKind has the same values.
type EventKind uint8

// Event kinds (node documents them).
const (
	NeighborUp EventKind = iota + 1
	NeighborDown
	TopologyChanged
	DeliveryFailed
	Connected
	Disconnected
	Redirected
)

// Event is something the application may want to know (node.Event).
type Event struct {
	Kind      EventKind
	Peer      uuid.UUID
	Broadcast bool
	Index     uint32
	Body      []byte
	Err       error
	Addr      string
}

// Delivery is a message for the application's inbound queue.
type Delivery struct {
	From      uuid.UUID
	Body      []byte
	Broadcast bool
	Index     uint32
}

// Write is a batch of frames for one edge, to be written in order. Frames
// is the Core's, lent until the WriteDone (or EdgeFailed) for that edge: it
// is reused for the edge's next Write.
type Write struct {
	Link   LinkID
	Frames [][]byte
}

// SendRequest is one Send, Multicast or Broadcast. Frames holds one frame
// buffer per stream, in the order of Dsts, or the broadcast stream's: each
// has message.HeaderSize free bytes in front of the body, which the first
// transmission fills in place (so a message is copied once between the
// application and the transport).
type SendRequest struct {
	ID     uint64
	Dsts   []uuid.UUID
	Bcast  bool
	Frames [][]byte
}

// Answer finishes a send request: Err is nil when it was accepted.
type Answer struct {
	ID  uint64
	Err error
}

// Dial asks the caller to connect (with redirects) to Addr and to report the
// result with DialDone(Token, err).
type Dial struct {
	Token uint64
	Addr  string
}

// EntryAnswer answers a handshake that Admit told to wait: the entry points
// for its rejection (nil when the mesh offered none in time).
type EntryAnswer struct {
	Link  LinkID
	Addrs []string
}

// Ready is everything a Core wants done; see the package documentation for
// the order.
type Ready struct {
	Writes       []Write
	Close        []LinkID
	Deliveries   []Delivery
	Answers      []Answer
	Events       []Event
	EntryAnswers []EntryAnswer
	Dials        []Dial
	// Free are frames of SendRequests and relayed frames given to Frame
	// that the Core refers to no more, and that nothing it handed out
	// refers to (Config.ReuseFrom): the driver may reuse their memory.
	Free [][]byte
}

// topologyEventGap coalesces TopologyChanged events while routes converge.
const topologyEventGap = 100 * time.Millisecond

// Core is one node's protocol state. Its methods are not safe for concurrent
// use: one goroutine owns it.
type Core struct {
	cfg   Config
	log   *slog.Logger
	now   time.Time
	rt    *routing.Table
	stats Stats
	out   Ready // what Ready returns, built up by the inputs

	peers   peers
	streams streams
	ls      linkState
	members membership
	held    held      // data frames waiting for a route
	reuse   reuse     // frames to hand back in Ready.Free (reuse.go)
	ackHeld time.Time // when the acks due started waiting for a reply (holdAcks)
	sealer  *sealer   // end-to-end sealing of data and acks; nil without a secret (e2e.go)

	closed bool
}

// New makes a Core at time now.
func New(cfg Config, now time.Time) *Core {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Auth.On() {
		cfg.Routing.Signer = newSigner(cfg.Auth.Key)
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(cfg.Epoch, cfg.Epoch^0x9e3779b97f4a7c15))
	}
	c := &Core{
		cfg: cfg,
		log: cfg.Logger,
		now: now,
		rt:  routing.New(cfg.ID, cfg.Epoch, now, cfg.Routing),
	}
	if cfg.Auth.On() {
		c.sealer = newSealer(cfg.ID, cfg.Auth.Key)
	}
	c.peers.init()
	c.streams.init(c)
	c.ls.init(c)
	c.members.init()
	c.rt.SetLocal(now, cfg.Addrs, c.free())
	c.rt.SetName(now, cfg.Name)
	c.ls.version = c.rt.Version()
	return c
}

// ID returns the node's UUID.
func (c *Core) ID() uuid.UUID { return c.cfg.ID }

// Epoch returns the node's epoch.
func (c *Core) Epoch() uint64 { return c.cfg.Epoch }

// Config returns the configuration the Core runs with.
func (c *Core) Config() Config { return c.cfg }

// Stats returns the counters.
func (c *Core) Stats() Stats { return c.stats }

// Topology returns a copy of the node's view of the mesh.
func (c *Core) Topology() routing.Topology { return c.rt.Topology() }

// Routes exposes the routing table to read (the simulator checks routes);
// the caller must not change it.
func (c *Core) Routes() *routing.Table { return c.rt }

// Ready returns what the Core wants done since the last Advance. It first
// sends the acknowledgements due and notes topology changes, so that one
// acknowledgement covers a whole batch of inputs.
func (c *Core) Ready() Ready {
	if !c.holdAcks() {
		c.streams.flushAcks()
	}
	c.ls.checkVersion()
	c.releaseHeld()
	c.peers.collectWrites(c)
	return c.out
}

// Advance tells the Core that everything in the last Ready was done. The
// slices of that Ready are reused: the caller must not keep them.
func (c *Core) Advance() {
	clear(c.out.Writes)
	clear(c.out.Deliveries)
	clear(c.out.Events)
	clear(c.out.EntryAnswers)
	clear(c.out.Free)
	c.out = Ready{
		Writes:       c.out.Writes[:0],
		Close:        c.out.Close[:0],
		Deliveries:   c.out.Deliveries[:0],
		Answers:      c.out.Answers[:0],
		Events:       c.out.Events[:0],
		EntryAnswers: c.out.EntryAnswers[:0],
		Dials:        c.out.Dials[:0],
		Free:         c.out.Free[:0],
	}
}

// Deadline returns when Tick must next be called: the earliest of every
// timer the Core keeps. A time not after the last input's means at once.
func (c *Core) Deadline() time.Time {
	d := c.rt.NextDeadline()
	d = c.ls.deadline(d)
	d = c.members.deadline(c, d)
	d = c.peers.deadline(c, d)
	d = c.streams.deadline(d)
	d = c.ackDeadline(d)
	return d
}

// Tick runs every timer that is due at now.
func (c *Core) Tick(now time.Time) {
	c.now = now
	c.peers.tick(c)
	c.members.tick(c)
	c.streams.tick()
	c.ls.tick()
	c.sweepReuse()
}

// emit queues an event.
func (c *Core) emit(e Event) { c.out.Events = append(c.out.Events, e) }

// hostile counts and logs bad input from a neighbour. Logging is thinned to
// powers of two so that a flood of garbage cannot flood the log.
func (c *Core) hostile(from uuid.UUID, what string, err error) {
	c.stats.Hostile++
	if errors.Is(err, routing.ErrForged) || errors.Is(err, ErrAuth) {
		c.stats.Forged++
	}
	if n := c.stats.Hostile; n&(n-1) == 0 {
		c.log.Warn("hostile input", "from", from, "what", what, "err", err, "total", n)
	}
}

// free is the number of connection slots left.
func (c *Core) free() uint16 { return uint16(max(0, c.cfg.MaxConns-c.peers.len())) }

// jitter spreads d over [d/2, 3d/2) so that the nodes around a failure do
// not act in lockstep.
func (c *Core) jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(c.cfg.Rand.Int64N(int64(max(d, 1))))
}

// ---- frames ----

// message builds a frame of this node's.
func (c *Core) message(typ message.Type, flags message.Flags, target uuid.UUID, epoch uint64, index int32, ref uint32, body []byte) *message.Message {
	return &message.Message{
		UID:    message.UID{Node: c.cfg.ID, Index: index},
		Header: message.Header{Type: typ, Flags: flags, HopLimit: c.cfg.HopLimit, Target: target, Epoch: epoch, Ref: ref},
		Body:   body,
	}
}

// control encodes a link-local or routed control frame.
func (c *Core) control(typ message.Type, target uuid.UUID, index int32, body []byte) []byte {
	return c.message(typ, 0, target, c.cfg.Epoch, index, 0, body).Encode()
}

// HelloFrame returns the frame that opens a handshake this node dials.
func (c *Core) HelloFrame() []byte {
	return c.control(message.TypeHello, uuid.Nil, 0, c.hello().Append(nil))
}

func (c *Core) hello() message.Hello {
	return message.Hello{Addrs: c.cfg.Addrs, FreeSlots: c.free()}
}

// String describes the Core's state for a test diagnosing a stuck mesh.
func (c *Core) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s: %d peers, %d parked sends\n", c.cfg.ID.String()[:8], c.peers.len(), len(c.streams.parked))
	for _, s := range c.streams.all() {
		if s.snd.InFlight() == 0 && s.backlog.Len() == 0 {
			continue
		}
		blocked, isBlocked := s.snd.Blocked()
		fmt.Fprintf(&b, "  out %s: inflight %d base %d next %d backlog %d blocked %v %s\n",
			short(s.dst), s.snd.InFlight(), s.snd.Base(), s.snd.Next(), s.backlog.Len(), isBlocked, short(blocked))
		b.WriteString(s.snd.String())
	}
	for _, p := range c.peers.list {
		fmt.Fprintf(&b, "  peer %s link %d queued %d+%d\n", short(p.id), p.link, p.ctrl.Len(), p.data.Len())
	}
	for k, rx := range c.streams.rx {
		if rx.Buffered() > 0 {
			fmt.Fprintf(&b, "  in %s bcast=%v: next %d buffered %d\n", short(k.src), k.bcast, rx.Next(), rx.Buffered())
		}
	}
	return b.String()
}

func short(id [16]byte) string { return fmt.Sprintf("%x", id[:4]) }

// DeadlineParts names the parts of Deadline, for a simulator that finds a
// deadline that never moves.
func (c *Core) DeadlineParts() string {
	far := c.now.Add(time.Hour)
	return fmt.Sprintf("routing %v, linkstate %v, members %v, peers %v, streams %v (now %v)",
		c.rt.NextDeadline(), c.ls.deadline(far), c.members.deadline(c, far), c.peers.deadline(c, far), c.streams.deadline(far), c.now)
}
