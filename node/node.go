// Package node wires the mesh together: it owns the connection table (keyed by
// the neighbour's UUID), the handshake, keepalives and failure detection,
// forwarding, the routing table and the reliability streams, and offers the
// public API: Connect, Send, Multicast, Broadcast, Receive and Events.
//
// A Node runs one event loop goroutine that owns all of its state, plus a
// reader and a writer goroutine per edge and an accept goroutine per transport.
// The loop keeps a single timer set to the earliest deadline of its parts
// (retransmissions, keepalives, link-state refresh and ageing). Close stops
// every goroutine the node started.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/node/internal/core"
	"github.com/distrirender/distrirender/queue"
	"github.com/distrirender/distrirender/reliability"
	"github.com/distrirender/distrirender/routing"
	"github.com/distrirender/distrirender/transport"
)

// Errors returned by Node methods, wrapped with %w where more context helps.
var (
	ErrClosed        = core.ErrClosed
	ErrInvalidOption = errors.New("node: invalid option")
	ErrSelf          = errors.New("node: destination is this node")
	ErrNilTarget     = errors.New("node: nil destination")
	ErrTooLarge      = errors.New("node: body too large")
	ErrRejected      = errors.New("node: connection rejected")
	ErrHandshake     = core.ErrHandshake
	ErrDuplicateEdge = core.ErrDuplicateEdge
	ErrFull          = core.ErrFull
	// ErrNoEntryPoint is returned by Connect when the contacted node is full
	// and no node in the mesh offered to accept instead.
	ErrNoEntryPoint = errors.New("node: no node in the mesh can accept a connection")
	// ErrTooManyRedirects is returned by Connect after maxRedirects redirects.
	ErrTooManyRedirects = errors.New("node: too many redirects")
	// ErrPeerRestarted is the cause reported for messages in flight to a node
	// that restarted (a new epoch): they may have reached its previous life.
	ErrPeerRestarted = core.ErrPeerRestarted
	// ErrUnreached is the cause reported for a broadcast to a node this node
	// knew (held its link-state record) but could not reach while the
	// broadcast was in flight.
	ErrUnreached = core.ErrUnreached
)

// Reasons a neighbour goes down, reported in NeighborDown events.
var (
	ErrPeerSilent   = core.ErrPeerSilent
	ErrPeerLeft     = core.ErrPeerLeft
	ErrPeerReplaced = core.ErrPeerReplaced
)

// RejectedError is returned by Connect when the contacted node refused the
// edge. It wraps ErrRejected; EntryPoints are addresses it suggested instead.
type RejectedError struct {
	Peer        uuid.UUID
	Reason      message.RejectReason
	EntryPoints []string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("node: connection rejected by %s (reason %d, %d entry points)", e.Peer, e.Reason, len(e.EntryPoints))
}

// Unwrap makes errors.Is(err, ErrRejected) true.
func (e *RejectedError) Unwrap() error { return ErrRejected }

// Delivery is one message delivered to this node's application.
type Delivery struct {
	// From is the node that sent it.
	From uuid.UUID
	// Body is the application's bytes; it belongs to the receiver, until
	// Release.
	Body []byte
	// Broadcast is true for a message sent with Broadcast.
	Broadcast bool
	// Index is the message's index in its sender's stream (modulo the
	// reliability modulus).
	Index uint32

	bufs *buffers // the pool Release gives Body back to
}

// Release gives the body's memory back to the node, which reads a later
// message into it: neither Body nor any slice of it may be used afterwards,
// and Release is called at most once per Delivery. It is optional (a body
// never released is garbage-collected) and worth it for large messages: a
// node reads messages of 16 KiB and more into buffers it reuses, which
// saves an allocation per message (at 64 KiB, about a quarter of the rate).
func (d Delivery) Release() {
	if d.bufs != nil {
		d.bufs.put(d.Body)
	}
}

// EventKind says what an Event reports.
type EventKind uint8

// Event kinds.
const (
	// NeighborUp: an edge to Peer completed its handshake.
	NeighborUp EventKind = iota + 1
	// NeighborDown: the edge to Peer is gone (closed, failed, or silent too long).
	NeighborDown
	// TopologyChanged: the set of reachable nodes or their routes changed.
	TopologyChanged
	// DeliveryFailed: a message accepted by Send, Multicast or Broadcast could
	// not be confirmed delivered to Peer; Body is the message and Err why.
	DeliveryFailed
	// Connected: the node got its first neighbour.
	Connected
	// Disconnected: the node lost its last neighbour.
	Disconnected
	// Redirected: Connect was sent on by a full node (Peer) to Addr.
	Redirected
)

func (k EventKind) String() string {
	switch k {
	case NeighborUp:
		return "neighbor-up"
	case NeighborDown:
		return "neighbor-down"
	case TopologyChanged:
		return "topology-changed"
	case DeliveryFailed:
		return "delivery-failed"
	case Connected:
		return "connected"
	case Disconnected:
		return "disconnected"
	case Redirected:
		return "redirected"
	}
	return "unknown"
}

// Event is something the application may want to know.
type Event struct {
	Kind EventKind
	// Peer is the neighbour (NeighborUp/Down) or the destination (DeliveryFailed).
	Peer uuid.UUID
	// Broadcast marks a failed broadcast delivery.
	Broadcast bool
	// Index is the failed message's index in this node's stream.
	Index uint32
	// Body is the failed message's body. It may be shared with the other
	// events of the same message and with frames still on their way: read
	// it, do not modify it.
	Body []byte
	// Err is why the delivery failed, or why a neighbour went down.
	Err error
	// Addr is the address Connect was redirected to.
	Addr string
}

// Stats are counters a Node keeps; read them with Node.Stats.
type Stats struct {
	FramesIn, FramesOut        uint64 // frames received from / queued to neighbours
	Forwarded                  uint64 // frames relayed for other nodes
	DroppedForward             uint64 // frames dropped because a neighbour's buffer was full
	DroppedNoRoute             uint64 // frames dropped for want of a route (retransmitted end to end)
	DroppedHopLimit            uint64 // frames dropped at hop limit zero
	Hostile                    uint64 // malformed, invalid, forged or oversized frames from neighbours
	Delivered                  uint64 // messages handed to the application
	Duplicates                 uint64 // data frames received again and dropped
	Retransmits                uint64 // end-to-end retransmissions
	CongestionMarks            uint64 // acks that said a node on the way forwarded this node's data through a crowded queue
	Failed                     uint64 // messages reported as DeliveryFailed
	EventsDropped              uint64 // events lost because Events() was not drained
	NeighborsUp, NeighborsDown uint64 // edges established / edges lost
	TopologyFrames             uint64 // link-state frames sent (network_state, its request and digest, new_edge, destroy_edge)
	// AuthFailures counts handshakes refused, on either side, because a
	// node did not prove an accepted cluster secret or its identity, or
	// expected a secret this node does not have (ErrAuth).
	AuthFailures uint64
	// HandshakesRefused counts incoming edges closed at once because too
	// many handshakes were under way, in all or from their source host
	// (WithHandshakeLimits).
	HandshakesRefused uint64
	// RateLimited counts control frames dropped over a neighbour's rate
	// limits: digests and whole-database requests beyond 32 at once or 10
	// a second after that (each makes this node send much of its
	// database), and any control frame beyond 4,096 at once or 5,000 a
	// second (data and acks are bounded by windows instead).
	RateLimited uint64
	// Forged counts the frames among Hostile that were not signed or
	// sealed by the node they claim to come from: link state, data or
	// acks (a cluster with a secret only).
	Forged uint64
}

// Node is one member of the mesh: a driver around the protocol core
// (node/internal/core) that owns every goroutine, the edges and the public
// API. See docs/ARCHITECTURE.md.
type Node struct {
	id     uuid.UUID
	epoch  uint64
	cfg    config
	log    *slog.Logger
	trs    []transport.Transport
	adv    []string // the addresses advertised in hello and link state
	events chan Event
	in     *queue.Queue[Delivery]

	// Inputs of the loop, one typed channel each.
	inbox   chan inFrame     // frames and read errors from readers
	written chan writeResult // writers' batches done
	// ctl carries the rest, unbuffered (a send means the loop took it):
	// *sendReq (Send, Multicast, Broadcast), *cancelReq (a caller gave
	// up), *handshake (admissions and registrations), dialResult
	// (balancing and redial dials done), *query (reads of the core's
	// state), Event (from outside the loop: Redirected). See onCtl.
	ctl chan any

	quit      chan struct{} // closed when the node shuts down: everyone stops posting
	closing   chan struct{} // closed by Close to ask the loop to shut down
	loopDone  chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
	ctx       context.Context // cancelled at shutdown; bounds every transport call
	cancel    context.CancelFunc

	nextLink     atomic.Uint64
	undecodable  atomic.Uint64 // frames the readers could not decode
	authFailures atomic.Uint64 // handshakes refused for want of a proved secret or identity
	refused      atomic.Uint64 // incoming edges closed over the handshake limits
	gate         *gate         // incoming handshakes under way
	dropped      atomic.Uint64 // events dropped because Events() was not drained

	// Owned by the loop goroutine.
	core  *core.Core
	links map[core.LinkID]*link
	waits map[core.LinkID]chan []string // handshakes waiting for an entry point
	reqs  map[uint64]*sendReq           // send requests the core has not answered
	reqID uint64
	final core.Stats // the core's counters once the loop has stopped

	fast    fastSends // Send's fast path: see fastsend.go
	bufs    buffers   // large frames' buffers (buffers.go)
	reqPool sync.Pool // send requests for reuse (getReq)
}

// New makes a node on transport tr (and any added WithTransport), starts
// accepting edges and returns. The node owns its transports: Close closes them.
func New(tr transport.Transport, opts ...Option) (*Node, error) {
	if tr == nil {
		return nil, fmt.Errorf("%w: nil transport", ErrInvalidOption)
	}
	cfg := defaults()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if err := cfg.identity(); err != nil {
		return nil, err
	}
	if cfg.core.ID == uuid.Nil {
		id, err := uuid.NewRandom()
		if err != nil {
			return nil, fmt.Errorf("node: making an ID: %w", err)
		}
		cfg.core.ID = id
	}
	if cfg.core.Epoch == 0 {
		cfg.core.Epoch = uint64(time.Now().UnixNano())
	}
	cfg.core.MinConns = min(cfg.core.MinConns, cfg.core.MaxConns) // a minimum above the maximum means the maximum
	cfg.core.Rel = cfg.core.Rel.WithDefaults()
	if err := cfg.core.Rel.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	cfg.core.Routing = cfg.core.Routing.WithDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		id:       cfg.core.ID,
		epoch:    cfg.core.Epoch,
		cfg:      cfg,
		log:      cfg.logger.With("node", cfg.core.ID.String()[:8]),
		trs:      append([]transport.Transport{tr}, cfg.extra...),
		events:   make(chan Event, cfg.eventBuf),
		in:       queue.New[Delivery](cfg.inbound),
		inbox:    make(chan inFrame, 256),
		written:  make(chan writeResult, 64),
		ctl:      make(chan any),
		quit:     make(chan struct{}),
		closing:  make(chan struct{}),
		loopDone: make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
		links:    make(map[core.LinkID]*link),
		waits:    make(map[core.LinkID]chan []string),
		reqs:     make(map[uint64]*sendReq),
		gate:     newGate(cfg.maxHandshakes, cfg.maxPerSource),
	}
	n.fast.init()
	n.adv = advertisable(n.Addrs())
	now := time.Now()
	cc := cfg.core
	cc.Addrs = n.adv
	cc.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	cc.Logger = n.log
	cc.ReuseFrom = 1 << minPooledShift // Send's large frames come back in Ready.Free
	if cfg.creds.On() {
		cc.Auth = cfg.creds
	}
	n.core = core.New(cc, now)
	n.core.SetRoom(now, cfg.inbound)
	n.wg.Add(1)
	go n.loop()
	for _, t := range n.trs {
		n.wg.Add(1)
		go n.acceptLoop(t)
	}
	return n, nil
}

// ID returns the node's UUID, its address in the mesh.
func (n *Node) ID() uuid.UUID { return n.id }

// Name returns the node's human name (WithName), or "".
func (n *Node) Name() string { return n.cfg.core.Name }

// Epoch returns the node's incarnation number.
func (n *Node) Epoch() uint64 { return n.epoch }

// Addrs returns the addresses of all the node's transports.
func (n *Node) Addrs() []string {
	var out []string
	for _, t := range n.trs {
		out = append(out, t.Addrs()...)
	}
	return out
}

// advertisable keeps the addresses that fit the wire format's limits.
func advertisable(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		if len(out) < message.MaxAddrs && a != "" && len(a) <= message.MaxAddrLen && utf8.ValidString(a) {
			out = append(out, a)
		}
	}
	return out
}

// Events returns the channel on which the node reports events. It is closed
// by Close. An event that finds the channel full is dropped and counted
// (Stats.EventsDropped), so an application that wants every DeliveryFailed
// must keep draining it.
func (n *Node) Events() <-chan Event { return n.events }

// Stats returns a snapshot of the node's counters.
func (n *Node) Stats() Stats {
	c := n.final // once the loop has stopped: its last counters
	if q := n.ask(queryStats); q != nil {
		c = q.stats
	}
	bad := n.undecodable.Load()
	return Stats{
		FramesIn: c.FramesIn + bad, FramesOut: c.FramesOut,
		Forwarded: c.Forwarded, DroppedForward: c.DroppedForward,
		DroppedNoRoute: c.DroppedNoRoute, DroppedHopLimit: c.DroppedHopLimit,
		Hostile: c.Hostile + bad, Delivered: c.Delivered, Duplicates: c.Duplicates,
		Retransmits: c.Retransmits, CongestionMarks: c.CongestionMarks, Failed: c.Failed, EventsDropped: n.dropped.Load(),
		NeighborsUp: c.NeighborsUp, NeighborsDown: c.NeighborsDown, TopologyFrames: c.TopologyFrames,
		AuthFailures: n.authFailures.Load(), HandshakesRefused: n.refused.Load(),
		RateLimited: c.RateLimited, Forged: c.Forged,
	}
}

// Neighbors returns the UUIDs of the current neighbours, sorted.
func (n *Node) Neighbors() []uuid.UUID {
	if q := n.ask(queryNeighbors); q != nil {
		return q.neighbors
	}
	return nil
}

// Topology returns a copy of the node's view of the mesh.
func (n *Node) Topology() routing.Topology {
	if q := n.ask(queryTopology); q != nil {
		return q.topology
	}
	return routing.Topology{}
}

// Send sends body to node to, reliably and in order with this node's other
// messages to the same destination. It returns once the message is accepted
// (queued for transmission); if it then cannot be delivered, a DeliveryFailed
// event says so. A destination that is not routed yet is fine: the message
// waits for its route (within the retry budget). Send blocks while the
// destination's window and backlog are full, until ctx ends. The body is
// copied.
func (n *Node) Send(ctx context.Context, to uuid.UUID, body []byte) error {
	return n.Multicast(ctx, []uuid.UUID{to}, body)
}

// Multicast sends body to each node in tos, as Send does to each. The message
// is accepted for all destinations at once or for none.
func (n *Node) Multicast(ctx context.Context, tos []uuid.UUID, body []byte) error {
	if len(body) > n.cfg.core.MaxBody {
		return fmt.Errorf("%w: %d > %d bytes", ErrTooLarge, len(body), n.cfg.core.MaxBody)
	}
	r := n.getReq()
	dsts := r.one[:0]
	for _, to := range tos {
		var err error
		switch to {
		case uuid.Nil:
			err = ErrNilTarget
		case n.id:
			err = ErrSelf
		}
		if err != nil {
			n.putReq(r)
			return err
		}
		if !slices.Contains(dsts, to) {
			dsts = append(dsts, to)
		}
	}
	if len(dsts) == 0 {
		n.putReq(r)
		return nil
	}
	r.Dsts = dsts
	if len(dsts) == 1 {
		r.Frames = r.frame1[:]
	} else {
		r.Frames = make([][]byte, len(dsts))
	}
	for i := range r.Frames {
		r.Frames[i] = n.outFrame(body)
	}
	if len(dsts) == 1 {
		if err := ctx.Err(); err != nil {
			n.putReq(r)
			return err
		}
		r.fast = true
		if n.fast.tryQueue(r) {
			return nil
		}
		r.fast = false
	}
	return n.submit(ctx, r)
}

// Broadcast sends body to every node in the mesh. It is flooded once through
// every node and delivered to each exactly once; nodes that miss the flood get
// a repair copy. Failures are reported per destination as DeliveryFailed.
func (n *Node) Broadcast(ctx context.Context, body []byte) error {
	if len(body) > n.cfg.core.MaxBody {
		return fmt.Errorf("%w: %d > %d bytes", ErrTooLarge, len(body), n.cfg.core.MaxBody)
	}
	r := n.getReq()
	r.Bcast = true
	r.frame1[0] = outFrame(body)
	r.Frames = r.frame1[:]
	return n.submit(ctx, r)
}

// Receive returns the next delivered message, waiting until one arrives, ctx
// ends, or the node is closed and every delivered message has been received.
func (n *Node) Receive(ctx context.Context) (Delivery, error) {
	d, err := n.in.Pop(ctx)
	if errors.Is(err, queue.ErrClosed) {
		return d, ErrClosed
	}
	return d, err
}

// Close leaves the mesh: it tells the neighbours goodbye, reports every
// unconfirmed message as failed, closes the transports and stops every
// goroutine the node started. Messages already delivered stay receivable.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { close(n.closing) })
	<-n.loopDone
	n.wg.Wait()
	return nil
}

// emit reports an event without ever blocking the loop.
func (n *Node) emit(e Event) {
	select {
	case n.events <- e:
	default:
		n.dropped.Add(1)
		n.log.Warn("event dropped: Events() is not drained", "kind", e.Kind.String(), "peer", e.Peer)
	}
}

// reliabilityConfig exposes the effective reliability parameters to tests.
func (n *Node) reliabilityConfig() reliability.Config { return n.cfg.core.Rel }
