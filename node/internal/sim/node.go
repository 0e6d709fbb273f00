package sim

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/node/internal/core"
)

// Errors of the simulated network, as a transport would report them.
var (
	ErrUnreachable = errors.New("sim: address unreachable")
	ErrNoEntry     = errors.New("sim: no entry point")
)

// maxRedirects bounds how many entry points a dial follows, as node.Connect.
const maxRedirects = 8

// Node is one simulated node: a core, its edges, and a recording
// application.
type Node struct {
	sim   *Sim
	idx   int
	ID    uuid.UUID
	Addr  string
	Life  int                // 0 for the first life, +1 at every restart
	key   ed25519.PrivateKey // with Sim.Secret: the identity key
	core  *core.Core
	alive bool
	ends  map[core.LinkID]*end
	waits map[core.LinkID]func([]string)

	timerAt  time.Time // when the armed timer fires
	timerSet bool
	timerGen uint64
	ticksNow int // ticks at the current instant: a deadline that never moves is a bug

	reqSeq uint64
	reqs   map[uint64]*plan
	plans  map[streamKey]*plan
	Events map[core.EventKind]int
	// Downs are the causes of this node's NeighborDown events.
	Downs   []error
	OnEvent func(core.Event)

	rec *Recorder
}

// streamKey names a planned stream of sends: to a node, or the broadcast.
type streamKey struct {
	dst   uuid.UUID
	bcast bool
}

// plan is the messages a test asked a node to send on one stream: sent one
// after another as the core accepts them.
type plan struct {
	key  streamKey
	next uint64 // the next sequence number to offer
	end  uint64
	size int
	busy bool // a request is with the core
}

// AddNode adds a node listening at "n<i>" and starts it.
func (s *Sim) AddNode() *Node {
	i := len(s.nodes)
	n := &Node{sim: s, idx: i, Addr: fmt.Sprintf("n%d", i), rec: s.rec}
	if s.Secret != nil {
		seed := make([]byte, ed25519.SeedSize)
		for j := range seed {
			seed[j] = byte(s.rng.UintN(256))
		}
		n.key = ed25519.NewKeyFromSeed(seed)
		n.ID = core.IDFromKey(n.key.Public().(ed25519.PublicKey))
	} else {
		n.ID = s.newID()
	}
	s.nodes = append(s.nodes, n)
	s.byAddr[n.Addr] = n
	n.start()
	return n
}

// Index returns the node's position in Sim.Nodes.
func (n *Node) Index() int { return n.idx }

// Alive reports whether the node runs.
func (n *Node) Alive() bool { return n.alive }

// Core returns the node's core, to inspect it.
func (n *Node) Core() *core.Core { return n.core }

func (n *Node) short() string { return fmt.Sprintf("n%d", n.idx) }

func (n *Node) start() {
	s := n.sim
	cfg := core.Defaults()
	cfg.ID = n.ID
	cfg.Epoch = uint64(n.Life+1) << 32
	cfg.Addrs = []string{n.Addr}
	cfg.Rand = rand.New(rand.NewPCG(s.rng.Uint64(), s.rng.Uint64()))
	// Every unicast frame is handed back, and poisoned in flush: a frame
	// handed back while anything still refers to it would go out garbled.
	cfg.ReuseFrom = 1
	if s.Secret != nil {
		cfg.Auth = core.Credentials{Secrets: [][]byte{s.Secret}, Key: n.key}
	}
	if s.Configure != nil {
		s.Configure(n.idx, &cfg)
	}
	n.core = core.New(cfg, s.now)
	n.core.SetRoom(s.now, 1<<30)
	n.alive = true
	n.ends = make(map[core.LinkID]*end)
	n.waits = make(map[core.LinkID]func([]string))
	n.reqs = make(map[uint64]*plan)
	n.plans = make(map[streamKey]*plan)
	if n.Events == nil {
		n.Events = make(map[core.EventKind]int)
	}
	n.timerSet = false
	n.timerGen++
	s.tracef("%s start life %d id %s", n.short(), n.Life, n.ID.String()[:8])
	n.flush()
}

// Crash stops the node at once: its edges go silent (neighbours notice by
// their keepalives), what it had not sent is lost.
func (n *Node) Crash() {
	if !n.alive {
		return
	}
	n.sim.tracef("%s crash", n.short())
	n.alive = false
	n.timerGen++
	for _, e := range n.ends {
		e.open = false
	}
	n.rec.lifeEnded(n, true)
}

// Restart starts a crashed (or left) node again with the same ID and a new
// epoch.
func (n *Node) Restart() {
	if n.alive {
		n.Crash()
	}
	n.Life++
	n.start()
}

// Leave closes the node as node.Close does: goodbyes, then the edges close.
func (n *Node) Leave() {
	if !n.alive {
		return
	}
	s := n.sim
	s.tracef("%s leave", n.short())
	n.core.Shutdown(s.now)
	n.flush()
	n.alive = false
	n.timerGen++
	for _, e := range n.ends {
		s.closeEnd(e)
	}
	n.rec.lifeEnded(n, false)
}

// Connect dials addr as node.Connect does; done (if not nil) gets the result.
func (n *Node) Connect(addr string, done func(error)) {
	n.dial(addr, func(err error) {
		if done != nil {
			done(err)
		}
	})
}

// Link connects n to m (a test's hand-made topology).
func (n *Node) Link(m *Node) { n.Connect(m.Addr, nil) }

// Send plans count messages of size bytes (at least 24) to dst, each offered
// once the previous one was accepted. Bodies name their origin, its life and
// their sequence number, for the Recorder.
func (n *Node) Send(dst uuid.UUID, count, size int) { n.plan(streamKey{dst: dst}, count, size) }

// Broadcast plans count broadcasts, as Send.
func (n *Node) Broadcast(count, size int) { n.plan(streamKey{bcast: true}, count, size) }

func (n *Node) plan(k streamKey, count, size int) {
	if !n.alive {
		return
	}
	p := n.plans[k]
	if p == nil {
		p = &plan{key: k}
		n.plans[k] = p
	}
	p.end += uint64(count)
	p.size = max(size, bodyHeader)
	n.offer(p)
	n.flush()
}

// Pending reports whether planned messages wait to be offered or accepted.
func (n *Node) Pending() bool {
	for _, p := range n.plans {
		if p.busy || p.next < p.end {
			return true
		}
	}
	return false
}

func (n *Node) offer(p *plan) {
	if p.busy || p.next >= p.end {
		return
	}
	body := encodeBody(n.idx, n.Life, p.next, p.size)
	f := make([]byte, message.HeaderSize+len(body))
	copy(f[message.HeaderSize:], body)
	n.reqSeq++
	r := &core.SendRequest{ID: n.reqSeq, Bcast: p.key.bcast, Frames: [][]byte{f}}
	if !p.key.bcast {
		r.Dsts = []uuid.UUID{p.key.dst}
	}
	p.busy = true
	n.reqs[r.ID] = p
	n.core.Send(n.sim.now, r)
}

// ---- the driver's part ----

// frame hands a frame that arrived on e to the core.
func (n *Node) frame(e *end, frame []byte) {
	m, err := message.Decode(frame, 0)
	if err != nil {
		// The simulated network does not corrupt frames: this one was
		// garbled at its sender (poisoned by flush after Ready.Free).
		n.rec.bug(fmt.Sprintf("n%d got an undecodable frame: %v", n.idx, err))
		return
	}
	n.core.Frame(n.sim.now, e.id, m, frame)
	n.flush()
}

// flush carries out the core's Ready and re-arms its timer.
func (n *Node) flush() {
	if !n.alive {
		return
	}
	s, c := n.sim, n.core
	rd := c.Ready()
	for _, w := range rd.Writes {
		e := n.ends[w.Link]
		for _, f := range w.Frames {
			if e != nil {
				s.transmit(e, f)
			}
		}
		link, life := w.Link, n.Life
		// The frames are lent until WriteDone, as to a driver's writer:
		// none may change meanwhile (a frame handed back and reused too
		// early would).
		frames := slices.Clone(w.Frames)
		sums := make([]uint32, len(frames))
		for i, f := range frames {
			sums[i] = crc32.ChecksumIEEE(f)
		}
		s.at(s.doneAt(e), func() {
			for i, f := range frames {
				if poisoned(f) || crc32.ChecksumIEEE(f) != sums[i] {
					n.rec.bug(fmt.Sprintf("n%d: a frame changed while its Write was under way (handed back or reused too early)", n.idx))
				}
			}
			if n.alive && n.Life == life {
				n.core.WriteDone(s.now, link)
				n.flush()
			}
		})
	}
	for _, f := range rd.Free {
		for i := range f {
			f[i] = poison
		}
	}
	for _, id := range rd.Close {
		if e := n.ends[id]; e != nil {
			delete(n.ends, id)
			s.closeEnd(e)
		}
	}
	for _, d := range rd.Deliveries {
		n.rec.onDelivered(n, d)
	}
	var offers []*plan
	for _, a := range rd.Answers {
		p := n.reqs[a.ID]
		delete(n.reqs, a.ID)
		if p == nil {
			continue
		}
		p.busy = false
		if a.Err == nil {
			n.rec.onAccepted(n, p.key, p.next)
			p.next++
		} else {
			p.end = p.next // refused: the plan ends
		}
		offers = append(offers, p)
	}
	for _, e := range rd.Events {
		n.Events[e.Kind]++
		if e.Kind == core.NeighborDown {
			n.Downs = append(n.Downs, e.Err)
		}
		if e.Kind == core.DeliveryFailed {
			n.rec.onFailed(n, e)
		}
		if n.OnEvent != nil {
			n.OnEvent(e)
		}
	}
	for _, a := range rd.EntryAnswers {
		s.tracef("%s entry answer for link %d: %v", n.short(), a.Link, a.Addrs)
		if w := n.waits[a.Link]; w != nil {
			delete(n.waits, a.Link)
			w(a.Addrs)
		}
	}
	dials := slices.Clone(rd.Dials)
	c.Advance()
	for _, d := range dials {
		n.dial(d.Addr, func(err error) {
			if n.alive {
				n.core.DialDone(s.now, d.Token, d.Addr, err)
				n.flush()
			}
		})
	}
	for _, p := range offers {
		n.offer(p)
	}
	if len(offers) > 0 {
		n.flush()
		return
	}
	n.arm()
}

// arm keeps one timer at the core's deadline.
func (n *Node) arm() {
	s := n.sim
	d := n.core.Deadline()
	if !d.After(s.now) {
		n.ticksNow++
		if n.ticksNow > 10_000 {
			panic(fmt.Sprintf("sim: %s: deadline stuck at %v: %s", n.short(), d, n.core.DeadlineParts()))
		}
	} else {
		n.ticksNow = 0
	}
	if n.timerSet && d.Equal(n.timerAt) {
		return
	}
	n.timerAt, n.timerSet = d, true
	n.timerGen++
	gen := n.timerGen
	s.at(d, func() {
		if n.alive && n.timerGen == gen {
			n.timerSet = false
			n.core.Tick(s.now)
			n.flush()
		}
	})
}

// dial runs the dialling side of a handshake as node.Connect does: hello,
// said again on a backed-off timer until an answer comes; frames of the
// other side that overtake its welcome are kept for the core; redirects
// are followed; a handshake that fails (no answer in time, the edge closed,
// a garbled answer) is tried again, up to core.HandshakeTries times. done
// gets the result.
func (n *Node) dial(addr string, done func(error)) {
	s := n.sim
	life := n.Life
	tried := map[string]bool{}
	var try func(addr string, redirects, tries int)
	finish := func(err error) {
		if n.alive && n.Life == life {
			done(err)
		}
	}
	retry := func(addr string, redirects, tries int, err error) {
		if tries+1 >= core.HandshakeTries {
			finish(err)
			return
		}
		s.After(core.RetryAfter(tries), func() {
			if n.alive && n.Life == life {
				try(addr, redirects, tries+1)
			}
		})
	}
	try = func(addr string, redirects, tries int) {
		tried[addr] = true
		b := s.byAddr[addr]
		if b == nil || !b.alive || b == n {
			s.After(s.Default.Latency, func() { finish(fmt.Errorf("%w: %s", ErrUnreachable, addr)) })
			return
		}
		ea, eb := s.newEdge(n, b)
		n.ends[ea.id] = ea
		b.ends[eb.id] = eb
		over := false
		fail := func(err error) {
			over = true
			delete(n.ends, ea.id)
			s.closeEnd(ea)
			retry(addr, redirects, tries, err)
		}
		timeout := core.TryTimeout(n.core.Config().Handshake)
		s.After(timeout, func() {
			if !over {
				fail(fmt.Errorf("%w: no answer within %v", core.ErrHandshake, timeout))
			}
		})
		for k := range 8 {
			s.After(core.HelloAgainAfter(k), func() {
				if !over && n.alive && n.Life == life {
					s.transmit(ea, n.core.HelloFrame())
				}
			})
		}
		ea.onClose = func() {
			if !over {
				fail(fmt.Errorf("%w: edge closed", core.ErrHandshake))
			}
		}
		var early [][]byte
		ea.hs = func(frame []byte) {
			if over || !n.alive || n.Life != life {
				return
			}
			typ := message.PeekType(frame)
			if typ != message.TypeWelcome && typ != message.TypeReject {
				if len(early) < core.MaxEarlyFrames {
					early = append(early, frame)
				}
				return
			}
			ea.hs = nil
			over = true
			m, h, err := core.ParseHandshake(frame, message.TypeWelcome, 0)
			s.tracef("%s handshake with %s: %v", n.short(), addr, err)
			var rej *core.RejectError
			if errors.As(err, &rej) && rej.Reason == message.RejectFull {
				delete(n.ends, ea.id)
				s.closeEnd(ea)
				next := ""
				for _, ep := range rej.EntryPoints {
					if !tried[ep] && ep != n.Addr {
						next = ep
						break
					}
				}
				switch {
				case next == "":
					finish(fmt.Errorf("%w: %s is full", ErrNoEntry, addr))
				case redirects == 0:
					finish(fmt.Errorf("sim: too many redirects at %s", addr))
				default:
					n.Events[core.Redirected]++
					try(next, redirects-1, 0)
				}
				return
			}
			if err == nil {
				err = n.core.Register(s.now, ea.id, m.UID.Node, m.Header.Epoch, h, addr)
			}
			switch {
			case err == nil:
				ea.up = true
				for _, f := range early {
					if em, derr := message.Decode(f, 0); derr == nil {
						n.core.Frame(s.now, ea.id, em, f)
					}
				}
			case errors.Is(err, core.ErrDuplicateEdge):
				// The core closes it after the handshake timeout.
			case errors.Is(err, core.ErrFull):
				s.transmit(ea, core.HandshakeFrame(n.ID, n.core.Epoch(), n.core.Config().HopLimit, message.TypeGoodbye, nil))
				fallthrough
			default:
				delete(n.ends, ea.id)
				s.closeEnd(ea)
			}
			n.flush()
			if errors.Is(err, core.ErrHandshake) {
				retry(addr, redirects, tries, err)
				return
			}
			finish(err)
		}
		eb.hs = func(frame []byte) { b.accept(eb, frame) }
		s.tracef("%s dials %s", n.short(), addr)
		s.transmit(ea, n.core.HelloFrame())
	}
	try(addr, maxRedirects, 0)
}

// accept runs the accepting side of a handshake on the first frame of e.
func (n *Node) accept(e *end, frame []byte) {
	s := n.sim
	e.hs = nil
	m, h, err := core.ParseHandshake(frame, message.TypeHello, 0)
	if err != nil {
		delete(n.ends, e.id)
		s.closeEnd(e)
		return
	}
	adm := n.core.Admit(s.now, e.id, m.UID.Node, m.Header.Epoch, h)
	s.tracef("%s admits %s on link %d: accepted %v wait %v reject %+v", n.short(), m.UID.Node.String()[:8], e.id, adm.Accepted, adm.Wait, adm.Reject)
	reject := func(r *message.Reject) {
		s.transmit(e, core.HandshakeFrame(n.ID, n.core.Epoch(), n.core.Config().HopLimit, message.TypeReject, r.Append(nil)))
		delete(n.ends, e.id)
		s.closeEnd(e)
	}
	switch {
	case adm.Accepted:
		e.up = true
	case adm.Wait:
		n.waits[e.id] = func(addrs []string) {
			adm.Reject.EntryPoints = addrs
			reject(adm.Reject)
		}
	default:
		reject(adm.Reject)
	}
	n.flush()
}

// ---- bodies ----

// bodyHeader is the size of what encodeBody puts in front of the padding.
const bodyHeader = 16

// poison fills the frames a core hands back (Ready.Free): any later use of
// one shows as an undecodable frame or a body that cannot be placed.
const poison = 0xEE

// poisoned reports whether f was poisoned: no frame begins with 8 bytes of
// poison (its first byte is the protocol version).
func poisoned(f []byte) bool {
	if len(f) < 8 {
		return false
	}
	for _, b := range f[:8] {
		if b != poison {
			return false
		}
	}
	return true
}

func encodeBody(idx, life int, seq uint64, size int) []byte {
	b := make([]byte, max(size, bodyHeader))
	binary.BigEndian.PutUint32(b[0:], uint32(idx))
	binary.BigEndian.PutUint32(b[4:], uint32(life))
	binary.BigEndian.PutUint64(b[8:], seq)
	return b
}

func decodeBody(b []byte) (idx, life int, seq uint64, ok bool) {
	if len(b) < bodyHeader {
		return 0, 0, 0, false
	}
	return int(binary.BigEndian.Uint32(b[0:])), int(binary.BigEndian.Uint32(b[4:])), binary.BigEndian.Uint64(b[8:]), true
}

// ConnectWait connects as Connect does and runs the simulation until the
// handshake ends (or limit passes), returning its result.
func (n *Node) ConnectWait(addr string, limit time.Duration) error {
	done, result := false, error(nil)
	n.Connect(addr, func(err error) { done, result = true, err })
	if !n.sim.RunUntil(limit, func() bool { return done }) {
		return fmt.Errorf("sim: connect %s: no result within %v", addr, limit)
	}
	return result
}
