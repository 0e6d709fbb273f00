package reliability

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
)

// Packet is one data packet of a stream, as the caller puts it on the wire:
// Seq is the message's UID index, Base the header's Ref. Body is the message
// body as given to Push (not a copy).
type Packet struct {
	Seq  uint32
	Base uint32
	Body []byte
}

// Retransmit asks the caller to send Packet to Target again (or, for a
// target added by AddTarget, for the first time).
type Retransmit struct {
	Target uuid.UUID
	Packet Packet
}

// Failure reports that the sender gave up on delivering message Seq to
// Target: the message may or may not have reached it, but it was never
// acknowledged. Err wraps ErrRetriesExhausted (from Tick), ErrTargetGone
// (from RemoveTarget) or the cause given to FailAll. Body is the message body
// as given to Push.
type Failure struct {
	Seq    uint32
	Target uuid.UUID
	Body   []byte
	Err    error
}

// copyState is the state of one (message, target) pair.
type copyState uint8

const (
	copyPending copyState = iota // not yet known received: retransmitted, counts retries
	copySacked                   // buffered at the receiver: probed, no retry budget
	copyAcked                    // delivered (cumulative ack passed it): done
	copyFailed                   // given up: done
)

// txCopy is one (message, target) pair.
type txCopy struct {
	t        *target
	state    copyState
	sent     bool // transmitted at least once (false after AddTarget until Tick)
	lost     bool // fastRetransmit found it lost: its timer fires now
	retries  int  // retransmissions while pending
	held     int  // timeouts held back without a retransmission (see Tick)
	backoff0 int  // the target's backoff when the copy was first sent
	lastSent time.Time
	deadline time.Time // retransmission timer, while pending
}

func (c *txCopy) live() bool { return c.state <= copySacked }

// entry is one in-flight message.
type entry struct {
	seq    uint32
	body   []byte
	copies []txCopy // sorted by target slot
	live   int      // copies pending or sacked
}

// target is the sender's state for one destination of the stream.
type target struct {
	id   uuid.UUID
	slot uint64 // creation order: sorts copies, keeps output deterministic
	// lo is the receiver's last acknowledged cumulative point (or the base
	// when the target was first addressed): a lower bound on its delivery
	// point. The base never runs more than MaxSkip past it.
	lo     uint32
	live   int // copies of this target pending or sacked
	sacked int // copies of this target sacked
	// heard is when an ack from the target last showed progress (a new
	// cumulative point or SACK): while it keeps coming, copies behind a
	// queue are late, not lost (see Tick).
	heard time.Time

	srtt, rttvar, rto time.Duration
	sampled           bool
	// backedOff counts the timeouts since the last valid RTT sample: the
	// timeout of new transmissions stays backed off (rto × 2^backedOff)
	// until a sample from a message sent once arrives (RFC 6298 §5.5–5.7).
	// Without it, on a path whose round trip exceeds the RTO, every message
	// timed out once and Karn's rule discarded every sample.
	backedOff int

	// The probe timer runs while the target has SACKed copies (a lost
	// window update must not stall the stream) or must be sync-probed (it
	// holds the base back with nothing in flight; see mustSync).
	probing bool
	probeAt time.Time
	probes  int // probes since the timer was (re)started
}

// Sender is the sending end of one stream: a node keeps one per unicast
// destination (every Push names that destination) and one for its broadcast
// stream (every Push names every node it knows).
//
// The window holds at most Window consecutive indexes, from the base (the
// lowest index still in flight) up. A message leaves the window, and the
// base moves past it, as soon as it and every lower message is done for all
// its targets: acknowledged cumulatively or failed. SACKed copies are done
// only when the cumulative ack passes them.
//
// Call order, as in etcd raft's inflights: check Full before Push; transmit
// the returned Packet yourself; feed acks to OnAck; call Tick when Deadline
// passes and send what it returns; report Failures to the application.
//
// A Sender is not safe for concurrent use; it does no I/O, reads no clock and
// starts no goroutine: every method that needs the time takes it.
type Sender struct {
	cfg   Config
	epoch uint64
	w     uint32
	m     uint32
	lead  uint32 // MaxSkip

	ring []entry
	head int    // ring index of the base
	n    int    // messages in the window
	base uint32 // index of ring[head]; equals next when the window is empty

	targets  map[uuid.UUID]*target
	tlist    []*target // in slot order
	nextSlot uint64
	probing  []*target // targets whose probe timer runs, in arming order

	timers int       // pending copies (each has a retransmission timer)
	heap   timerHeap // their deadlines, plus stale items
	ord    uint64    // next timerItem.ord

	// Congestion control (RFC 9002 §7, counted in messages): the window
	// starts at InitialWindow, doubles per round trip in slow start, then
	// grows by one message per window acknowledged; a loss halves it, at
	// most once per round trip. It stays between InitialWindow (the seed's
	// fixed window: lossy links that are not congested keep the throughput
	// they had) and Window.
	cwnd     int
	ssthresh int
	grown    int       // messages acknowledged since cwnd last grew past ssthresh
	cutAt    time.Time // when cwnd was last halved
	cuts     int       // halvings so far
	// Slow start ends early when round trips grow (HyStart++, RFC 9406):
	// the queue at the bottleneck is filling, and doubling again would
	// overrun it and the RTO. A round lasts one smoothed round trip.
	roundStart   time.Time
	roundMin     time.Duration // the lowest RTT sample in this round (0: none)
	lastRoundMin time.Duration // ... in the previous round
	roundSamples int

	// keep makes release remember the bodies that leave the window in
	// released, until TakeReleased (KeepReleased).
	keep     bool
	released []Released

	blockedBy    uuid.UUID // the target Blocked named at the last Tick
	blockedSince time.Time // since when it has, as far as Ticks saw
	lastTick     time.Time
}

// NewSender returns an empty sender for a stream of the given epoch (the
// node's incarnation: larger after every restart, so receivers drop the old
// stream). It panics if cfg.WithDefaults() is invalid.
func NewSender(cfg Config, epoch uint64) *Sender {
	cfg = mustValid(cfg)
	return &Sender{
		cfg:      cfg,
		epoch:    epoch,
		w:        uint32(cfg.Window),
		m:        cfg.Modulo,
		lead:     cfg.MaxSkip(),
		ring:     make([]entry, cfg.InitialWindow),
		targets:  make(map[uuid.UUID]*target),
		cwnd:     cfg.InitialWindow,
		ssthresh: cfg.Window,
	}
}

// at returns the entry j places past the base (j below s.n, or s.n to fill).
func (s *Sender) at(j int) *entry { return &s.ring[(s.head+j)%len(s.ring)] }

// CongestionWindow returns how many messages may be in flight now: from
// InitialWindow to Window.
func (s *Sender) CongestionWindow() int { return s.cwnd }

// Congested tells the sender that target from's acknowledgement carried a
// congestion mark (a queue on the way was crowded): the window shrinks as
// for a loss, at most once per round trip, and nothing is retransmitted.
// An unknown target changes nothing.
func (s *Sender) Congested(now time.Time, from uuid.UUID) {
	if t := s.targets[from]; t != nil {
		s.cut(now, t)
	}
}

// cut halves the congestion window after a loss of a copy for t, at most
// once per round trip of t: the losses of one window are one congestion
// event.
func (s *Sender) cut(now time.Time, t *target) {
	if s.cuts > 0 && now.Sub(s.cutAt) < t.srtt {
		return
	}
	s.cuts++
	s.cutAt = now
	s.ssthresh = max(s.cwnd/2, s.cfg.InitialWindow)
	s.cwnd = s.ssthresh
	s.grown = 0
}

// acked grows the congestion window for freed messages that left it, when
// the window was the limit (before, the messages in flight, reached it).
func (s *Sender) acked(freed, before int) {
	if before < s.cwnd || s.cwnd >= int(s.w) {
		return
	}
	if s.cwnd < s.ssthresh {
		s.cwnd = min(s.cwnd+freed, int(s.w))
		return
	}
	s.grown += freed
	for s.grown >= s.cwnd && s.cwnd < int(s.w) {
		s.grown -= s.cwnd
		s.cwnd++
	}
}

// HyStart++ parameters (RFC 9406 §4.3): the round trip must grow by
// lastRoundMin/8, clamped to [hyMinEta, hyMaxEta], over at least
// hySamples samples of a round.
const (
	hySamples = 4
	hyMinEta  = 4 * time.Millisecond
	hyMaxEta  = 16 * time.Millisecond
)

// hystart ends slow start when this round's lowest RTT sample exceeds the
// previous round's by eta: queueing delay is growing.
func (s *Sender) hystart(now time.Time, t *target, rtt time.Duration) {
	if s.cwnd >= s.ssthresh {
		return
	}
	if now.Sub(s.roundStart) >= t.srtt {
		s.roundStart = now
		s.lastRoundMin, s.roundMin, s.roundSamples = s.roundMin, 0, 0
	}
	if s.roundMin == 0 || rtt < s.roundMin {
		s.roundMin = rtt
	}
	s.roundSamples++
	if s.lastRoundMin == 0 || s.roundSamples < hySamples {
		return
	}
	eta := min(max(s.lastRoundMin/8, hyMinEta), hyMaxEta)
	if s.roundMin >= s.lastRoundMin+eta {
		s.ssthresh = s.cwnd
	}
}

// due is when pending copy c, sent already, is deemed lost: its timeout by
// the target's current RTO (backed off as far as its retransmissions
// were), and not before one RTO after the target's last sign of progress
// since the copy was sent.
func (s *Sender) due(c *txCopy) time.Time {
	d := c.lastSent.Add(s.backoff(c.t.rto, c.backoff0+c.retries))
	if c.t.heard.After(c.lastSent) {
		d = later(d, c.t.heard.Add(c.t.rto))
	}
	return d
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// growRing doubles the ring (up to Window) when the window outgrows it.
func (s *Sender) growRing() {
	n := len(s.ring)
	grown := make([]entry, min(2*n, int(s.w)))
	for i := range n {
		grown[i] = s.ring[(s.head+i)%n]
	}
	s.ring, s.head = grown, 0
}

// Epoch returns the stream's epoch, to be carried in every data packet's header.
func (s *Sender) Epoch() uint64 { return s.epoch }

// Full reports whether the congestion window is full (CongestionWindow
// messages in flight); Push fails while it is true. Check it before Push
// (and before taking a message off the outbound queue).
func (s *Sender) Full() bool { return s.n >= s.cwnd }

// InFlight returns the number of messages in the window.
func (s *Sender) InFlight() int { return s.n }

// Base returns the window base: the lowest index still in flight, or the next
// index to be assigned if nothing is.
func (s *Sender) Base() uint32 { return s.base }

// InWindow reports whether message seq is in flight: between the base and
// the next index to be assigned.
func (s *Sender) InWindow(seq uint32) bool { return seq < s.m && dist(s.base, seq, s.m) < uint32(s.n) }

// Next returns the index the next Push will assign.
func (s *Sender) Next() uint32 { return add(s.base, uint32(s.n), s.m) }

// Push assigns the next index to body, addressed to targets (duplicates are
// ignored), and returns the packet to transmit: the first transmission, to
// every target, is the caller's job (unicast: send to the destination;
// broadcast: flood). Push assumes that transmission happens at now and starts
// each target's retransmission timer.
//
// The sender keeps body until the message leaves the window; the caller must
// not modify it. Push returns ErrWindowFull if Full, ErrNoTargets if targets
// is empty.
func (s *Sender) Push(now time.Time, body []byte, targets []uuid.UUID) (Packet, error) {
	if s.Full() {
		return Packet{}, ErrWindowFull
	}
	if len(targets) == 0 {
		return Packet{}, ErrNoTargets
	}
	seq := s.Next()
	if s.n == len(s.ring) {
		s.growRing()
	}
	e := s.at(s.n)
	e.seq, e.body = seq, body
	e.copies = e.copies[:0]
	for _, id := range targets {
		t := s.targets[id]
		if t == nil {
			t = s.track(id)
		}
		e.copies = append(e.copies, txCopy{
			t:        t,
			sent:     true,
			backoff0: t.backedOff,
			lastSent: now,
			deadline: now.Add(s.firstRTO(t)),
		})
	}
	if len(e.copies) > 1 {
		slices.SortFunc(e.copies, func(a, b txCopy) int { return cmp.Compare(a.t.slot, b.t.slot) })
		e.copies = slices.CompactFunc(e.copies, func(a, b txCopy) bool { return a.t == b.t })
	}
	// The entry joins the window before its timers are scheduled: schedule
	// may compact the heap, which rebuilds it from the window.
	e.live = len(e.copies)
	s.timers += e.live
	s.n++
	for i := range e.copies {
		c := &e.copies[i]
		c.t.live++
		s.schedule(seq, c)
	}
	s.reconcileProbes() // a sync-probed target with a new copy needs no sync probe
	return Packet{Seq: seq, Base: s.base, Body: body}, nil
}

// OnAck handles an acknowledgement of this stream from target from, and
// returns how many messages left the window (freed slots).
//
// An ack with another StreamEpoch, or whose Cum lies at most MaxSkip behind
// the last Cum accepted from that target (an old ack, overtaken), returns
// ErrStaleAck. An ack from a node that is not a target, with any other Cum
// outside [last Cum, next index] (it acknowledges indexes never sent), with
// a SACK longer than Window bits, or with SACK bits at or beyond the next
// index returns ErrInvalidAck. Either way nothing changes.
//
// Otherwise every copy for from below Cum is done (delivered), and every
// copy for from marked in SACK stops counting retries: it stays in the window
// until Cum passes it, and from's probe timer covers it (see Tick). The first
// acknowledgement of a copy transmitted exactly once gives an RTT sample
// (Karn's rule).
func (s *Sender) OnAck(now time.Time, from uuid.UUID, a message.Ack) (freed int, err error) {
	if a.StreamEpoch != s.epoch {
		return 0, fmt.Errorf("%w: stream epoch %d, sender epoch %d", ErrStaleAck, a.StreamEpoch, s.epoch)
	}
	t := s.targets[from]
	if t == nil {
		return 0, fmt.Errorf("%w: from %s, not a target", ErrInvalidAck, from)
	}
	if a.Cum >= s.m {
		return 0, fmt.Errorf("%w: cum %d not below modulo %d", ErrInvalidAck, a.Cum, s.m)
	}
	next := s.Next()
	if dist(t.lo, a.Cum, s.m) > dist(t.lo, next, s.m) {
		// Outside [lo, next]: at most MaxSkip behind lo it is an old ack
		// overtaken by a newer one; otherwise it claims unsent indexes.
		if dist(a.Cum, t.lo, s.m) <= s.lead {
			return 0, fmt.Errorf("%w: cum %d behind %d", ErrStaleAck, a.Cum, t.lo)
		}
		return 0, fmt.Errorf("%w: cum %d beyond next index %d", ErrInvalidAck, a.Cum, next)
	}
	if len(a.SACK) > (int(s.w)+7)/8 {
		return 0, fmt.Errorf("%w: SACK of %d bytes for window %d", ErrInvalidAck, len(a.SACK), s.w)
	}
	if hi := highestBit(a.SACK); hi >= 0 {
		if hi >= int(s.w) || uint32(hi) >= dist(a.Cum, next, s.m) {
			return 0, fmt.Errorf("%w: SACK bit %d past cum %d (next index %d, window %d)", ErrInvalidAck, hi, a.Cum, next, s.w)
		}
	}

	// Valid: apply. sample is the send time of the newest copy newly known
	// received that was transmitted exactly once.
	var sample time.Time
	sampled := false
	consider := func(c *txCopy) {
		if c.state == copyPending && c.sent && c.retries == 0 && (!sampled || c.lastSent.After(sample)) {
			sample, sampled = c.lastSent, true
		}
	}
	if c := dist(s.base, a.Cum, s.m); c <= uint32(s.n) {
		for j := 0; j < int(c); j++ {
			e := s.at(j)
			if cp := e.find(t); cp != nil && cp.live() {
				consider(cp)
				s.finish(e, cp, copyAcked)
			}
		}
	}
	sacked := false
	for i, b := range a.SACK {
		for bit := 0; b != 0; bit, b = bit+1, b>>1 {
			if b&1 == 0 {
				continue
			}
			j := dist(s.base, add(a.Cum, uint32(i*8+bit), s.m), s.m)
			if j >= uint32(s.n) {
				continue // below the base: already done
			}
			e := s.at(int(j))
			cp := e.find(t)
			if cp == nil || cp.state != copyPending {
				continue
			}
			consider(cp)
			cp.state = copySacked
			s.timers--
			t.sacked++
			sacked = true
		}
	}
	if sacked {
		s.fastRetransmit(now, t)
	}
	progress := a.Cum != t.lo
	t.lo = a.Cum
	if progress || sacked {
		t.heard = now
	}
	if sampled {
		s.sampleRTT(t, now.Sub(sample))
		s.hystart(now, t, now.Sub(sample))
	}
	if (sacked && !t.probing) || (progress && t.probing) {
		// Start the probe timer, or restart it: the receiver is alive.
		s.armProbe(t, now.Add(s.backoff(t.rto, 1)))
	}
	before := s.n
	freed = s.release()
	s.acked(freed, before)
	s.reconcileProbes()
	return freed, nil
}

// Tick performs what is due at now: every pending copy whose timer expired is
// retransmitted, or fails if it already had MaxRetries retransmissions
// (Err wraps ErrRetriesExhausted), and every target whose probe timer expired
// is probed. Packets carry the base as it is after this Tick's failures.
//
// Retransmission timer: a copy's first timeout is its target's RTO; after
// its k-th retransmission it waits min(RTO*2^k, MaxRTO).
//
// Probe timer: a target with SACKed copies, or one that holds the base back
// with nothing in flight (see Blocked), is probed: its lowest SACKed message,
// or the message at the base, is sent again. The first probe comes
// min(2*RTO, MaxRTO) after the first SACK or after the last progress of its
// cumulative ack (a sync probe: at once), the k-th waits min(RTO*2^(k+1),
// MaxRTO) after the previous one. Probes use no retry budget and never stop
// by themselves: a lost window update cannot stall the stream, and a SACKed
// message never fails because the application is slow.
func (s *Sender) Tick(now time.Time) (resend []Retransmit, failed []Failure) {
	var unsampled []*target // targets without an RTT sample that timed out in this Tick
	for len(s.heap) > 0 && !s.heap[0].at.After(now) {
		it := s.heap.pop()
		e, c := s.lookup(it)
		if c == nil {
			continue // stale
		}
		if due := s.due(c); c.sent && !c.lost && due.After(now) {
			// Late, not lost: the RTO grew since the copy was sent, or
			// the target's acks still show progress (the copy waits in a
			// queue behind others; RFC 6298 §5.3 restarts the timer on
			// every such ack).
			c.deadline = due
			s.schedule(e.seq, c)
			continue
		}
		c.lost = false
		switch {
		case c.sent && c.retries+c.held < s.cfg.MaxRetries && !c.t.sampled && slices.Contains(unsampled, c.t):
			// The path's round trip is unknown and may simply exceed the
			// initial RTO: retransmit one copy per timeout and hold the
			// others back by the backed-off RTO, so that their
			// acknowledgements, if they come, are valid samples (Karn's
			// rule discards the retransmitted ones). A hold uses the retry
			// budget as a retransmission would: an unreachable target's
			// copies fail together, not one budget after another.
			c.held++
			c.deadline = now.Add(s.firstRTO(c.t))
			s.schedule(e.seq, c)
			continue
		case !c.sent:
			c.sent = true
			c.lastSent = now
			c.backoff0 = c.t.backedOff
			c.deadline = now.Add(s.firstRTO(c.t))
		case c.retries+c.held >= s.cfg.MaxRetries:
			failed = append(failed, Failure{
				Seq:    e.seq,
				Target: c.t.id,
				Body:   e.body,
				Err:    fmt.Errorf("%w: index %d to %s after %d retransmissions", ErrRetriesExhausted, e.seq, c.t.id, c.retries+c.held),
			})
			s.finish(e, c, copyFailed)
			continue
		default:
			if !c.t.sampled {
				unsampled = append(unsampled, c.t)
			}
			if c.t.sampled {
				// Before the first sample a timeout may only mean that
				// the round trip exceeds the initial RTO (backoff is
				// the answer to that), not congestion.
				s.cut(now, c.t)
			}
			c.retries++
			c.t.backedOff = max(c.t.backedOff, c.backoff0+c.retries)
			c.lastSent = now
			c.deadline = now.Add(s.backoff(c.t.rto, c.backoff0+c.retries))
		}
		s.schedule(e.seq, c) // strictly after now: the loop ends
		resend = append(resend, Retransmit{Target: c.t.id, Packet: Packet{Seq: e.seq, Body: e.body}})
	}
	s.release()
	for i := range resend {
		resend[i].Packet.Base = s.base
	}
	s.reconcileProbes()
	for _, t := range s.probing {
		if t.probeAt.After(now) {
			continue
		}
		e := s.probeEntry(t)
		resend = append(resend, Retransmit{Target: t.id, Packet: Packet{Seq: e.seq, Base: s.base, Body: e.body}})
		t.probes++
		t.probeAt = now.Add(s.backoff(t.rto, t.probes+1))
	}
	s.noteBlocked(now)
	s.lastTick = now
	return resend, failed
}

// Deadline returns the earliest time at which Tick has work, or at which
// Stuck will name a target, and false if no timer is running. A zero or past
// time means "Tick now" (after AddTarget the new target's first
// transmissions are due at once).
func (s *Sender) Deadline() (time.Time, bool) {
	s.prune()
	var best time.Time
	found := len(s.heap) > 0
	if found {
		best = s.heap[0].at
	}
	for _, t := range s.probing {
		if !found || t.probeAt.Before(best) {
			best, found = t.probeAt, true
		}
	}
	// The moment Stuck will name a target, unless a Tick has passed it:
	// then Stuck names it already, and it is the caller's to act on.
	if at := s.blockedSince.Add(s.StuckAfter()); s.blockedBy != uuid.Nil && at.After(s.lastTick) {
		if !found || at.Before(best) {
			best, found = at, true
		}
	}
	return best, found
}

// StuckAfter is how long one target may hold the window back (Blocked)
// before Stuck names it: as long as the whole retry budget takes, MaxRTO ×
// (MaxRetries+1).
func (s *Sender) StuckAfter() time.Duration {
	return s.cfg.MaxRTO * time.Duration(s.cfg.MaxRetries+1)
}

// Stuck names the target that has held the window back (Blocked) for
// StuckAfter or longer, as seen by the Ticks up to now: it cannot be
// reached, and the caller gives up on it (RemoveTarget, or a new stream).
// Blocking is noticed at Tick, so call Stuck after Tick.
func (s *Sender) Stuck(now time.Time) (uuid.UUID, bool) {
	s.noteBlocked(now)
	if s.blockedBy == uuid.Nil || now.Sub(s.blockedSince) < s.StuckAfter() {
		return uuid.Nil, false
	}
	return s.blockedBy, true
}

// noteBlocked follows which target Blocked names, and since when.
func (s *Sender) noteBlocked(now time.Time) {
	id, ok := s.Blocked()
	switch {
	case !ok:
		s.blockedBy = uuid.Nil
	case id != s.blockedBy:
		s.blockedBy, s.blockedSince = id, now
	}
}

// AddTarget makes id a target of every message in flight that does not
// already have it (broadcast: a node appeared) and of nothing else; later
// Pushes name it themselves. Its first transmissions are due immediately:
// Deadline reports a zero time and the next Tick returns them as Retransmits
// (they use no retry budget), after which its timers run from that Tick's now.
// Without messages in flight AddTarget only starts tracking id.
func (s *Sender) AddTarget(id uuid.UUID) {
	t := s.targets[id]
	if t == nil {
		t = s.track(id)
	}
	for j := 0; j < s.n; j++ {
		e := s.at(j)
		i, found := slices.BinarySearchFunc(e.copies, t.slot, func(c txCopy, slot uint64) int { return cmp.Compare(c.t.slot, slot) })
		if found {
			continue
		}
		e.copies = slices.Insert(e.copies, i, txCopy{t: t})
		e.live++
		t.live++
		s.timers++
		s.schedule(e.seq, &e.copies[i])
	}
	s.reconcileProbes()
}

// RemoveTarget forgets target id (it left the network, or the caller gave up
// on it): each of its copies still pending or SACKed fails with an error
// wrapping ErrTargetGone and cause (if not nil), the messages it alone held
// leave the window, and later acks from id are invalid. Removing an unknown
// target returns nil.
func (s *Sender) RemoveTarget(id uuid.UUID, cause error) []Failure {
	t := s.targets[id]
	if t == nil {
		return nil
	}
	err := ErrTargetGone
	if cause != nil {
		err = fmt.Errorf("%w: %w", ErrTargetGone, cause)
	}
	var failed []Failure
	for j := 0; j < s.n; j++ {
		e := s.at(j)
		if cp := e.find(t); cp != nil && cp.live() {
			failed = append(failed, Failure{Seq: e.seq, Target: id, Body: e.body, Err: err})
			s.finish(e, cp, copyFailed)
		}
	}
	delete(s.targets, id)
	s.tlist = slices.DeleteFunc(s.tlist, func(x *target) bool { return x == t })
	s.release()
	s.reconcileProbes()
	return failed
}

// FailAll gives up on everything in flight (the node is closing): every copy
// pending or SACKed fails with cause (ErrClosed if nil), in index order. The
// sender stays consistent and keeps its targets.
func (s *Sender) FailAll(cause error) []Failure {
	if cause == nil {
		cause = ErrClosed
	}
	var failed []Failure
	for j := 0; j < s.n; j++ {
		e := s.at(j)
		for i := range e.copies {
			if c := &e.copies[i]; c.live() {
				failed = append(failed, Failure{Seq: e.seq, Target: c.t.id, Body: e.body, Err: cause})
				s.finish(e, c, copyFailed)
			}
		}
	}
	s.release()
	s.reconcileProbes()
	return failed
}

// RTO returns the current retransmission timeout towards target (InitialRTO
// for a target without RTT samples or unknown to the sender).
func (s *Sender) RTO(target uuid.UUID) time.Duration {
	if t := s.targets[target]; t != nil {
		return t.rto
	}
	return s.cfg.InitialRTO
}

// Blocked reports the target that holds the window back: every message at
// the base is done, but the base may not move more than MaxSkip past the
// target's last cumulative acknowledgement, or its receiver could no longer
// tell new packets from old ones. While blocked, and the target has nothing
// else in flight, Tick sync-probes it (sends it the message at the base, on a
// backed-off timer capped at MaxRTO and without limit): one acknowledgement
// unblocks the stream. A target that stays blocking is unreachable; the
// caller should RemoveTarget it.
func (s *Sender) Blocked() (uuid.UUID, bool) {
	if s.n == 0 || s.ring[s.head].live > 0 {
		return uuid.Nil, false
	}
	for _, t := range s.tlist {
		if s.behind(t) >= s.lead {
			return t.id, true
		}
	}
	return uuid.Nil, false
}

// track starts tracking a new target. Its receiver is assumed to be at or
// past the current base: fresh receivers start at the first Base they see.
func (s *Sender) track(id uuid.UUID) *target {
	t := &target{id: id, slot: s.nextSlot, lo: s.base, rto: s.cfg.InitialRTO}
	s.nextSlot++
	s.targets[id] = t
	s.tlist = append(s.tlist, t)
	return t
}

// find returns e's copy for t, or nil.
func (e *entry) find(t *target) *txCopy {
	if len(e.copies) == 1 {
		if e.copies[0].t == t {
			return &e.copies[0]
		}
		return nil
	}
	i, ok := slices.BinarySearchFunc(e.copies, t.slot, func(c txCopy, slot uint64) int { return cmp.Compare(c.t.slot, slot) })
	if !ok {
		return nil
	}
	return &e.copies[i]
}

// finish marks a live copy done.
func (s *Sender) finish(e *entry, c *txCopy, st copyState) {
	if c.state == copyPending {
		s.timers--
	} else {
		c.t.sacked--
	}
	c.state = st
	e.live--
	c.t.live--
}

// armProbe (re)starts t's probe timer at at.
func (s *Sender) armProbe(t *target, at time.Time) {
	if !t.probing {
		t.probing = true
		s.probing = append(s.probing, t)
	}
	t.probeAt, t.probes = at, 0
}

// wantProbe reports whether t's probe timer should run.
func (s *Sender) wantProbe(t *target) bool {
	return t.sacked > 0 || s.mustSync(t)
}

// reconcileProbes stops the probe timers that are no longer needed.
func (s *Sender) reconcileProbes() {
	if len(s.probing) == 0 {
		return
	}
	kept := s.probing[:0]
	for _, t := range s.probing {
		if s.targets[t.id] == t && s.wantProbe(t) {
			kept = append(kept, t)
			continue
		}
		t.probing = false
	}
	clear(s.probing[len(kept):])
	s.probing = kept
}

// probeEntry returns the message to probe t with: the base message for a
// sync probe, else t's lowest SACKed message.
func (s *Sender) probeEntry(t *target) *entry {
	if t.sacked > 0 {
		for j := 0; j < s.n; j++ {
			e := s.at(j)
			if c := e.find(t); c != nil && c.state == copySacked {
				return e
			}
		}
	}
	return &s.ring[s.head]
}

// behind returns how many indexes t.lo lies behind the base (0 if at or ahead).
func (s *Sender) behind(t *target) uint32 {
	next := s.Next()
	if dist(s.base, t.lo, s.m) <= dist(s.base, next, s.m) {
		return 0
	}
	return dist(t.lo, s.base, s.m)
}

// slack returns how far the base may advance before it is MaxSkip past t.lo.
func (s *Sender) slack(t *target) int64 {
	next := s.Next()
	if ahead := dist(s.base, t.lo, s.m); ahead <= dist(s.base, next, s.m) {
		return int64(s.lead) + int64(ahead)
	}
	return int64(s.lead) - int64(dist(t.lo, s.base, s.m))
}

// mustSync reports whether t should be sync-probed: the head message is done
// but t holds the base back, and t has no live copy of its own whose
// retransmissions or probes would carry the base to its receiver.
func (s *Sender) mustSync(t *target) bool {
	return s.n > 0 && s.ring[s.head].live == 0 && t.live == 0 && s.behind(t) >= s.lead
}

// release slides the window past every done message at the base, as far as
// the MaxSkip bound allows, starts sync probes (due at once) if the bound
// holds it, and returns how many messages left. Callers then run
// reconcileProbes.
func (s *Sender) release() int {
	freed := 0
	room := int64(-1)
	for s.n > 0 && s.ring[s.head].live == 0 {
		if room < 0 {
			room = int64(s.n)
			for _, t := range s.tlist {
				room = min(room, s.slack(t))
			}
		}
		if room <= 0 {
			for _, t := range s.tlist {
				if !t.probing && s.mustSync(t) {
					s.armProbe(t, time.Time{})
				}
			}
			return freed
		}
		e := &s.ring[s.head]
		if s.keep {
			acked := true
			for _, c := range e.copies {
				acked = acked && c.state == copyAcked
			}
			s.released = append(s.released, Released{Body: e.body, Acked: acked})
		}
		clear(e.copies)
		e.copies = e.copies[:0]
		e.body = nil
		s.head = (s.head + 1) % len(s.ring)
		s.n--
		s.base = add(s.base, 1, s.m)
		room--
		freed++
	}
	return freed
}

// Released is a message that left the sender's window (see KeepReleased).
type Released struct {
	// Body is the body Push was given.
	Body []byte
	// Acked is true when every copy of the message was acknowledged, and
	// false when any failed: its Body was then handed out in a Failure.
	Acked bool
}

// KeepReleased makes the sender keep, from now on, every message that leaves
// its window (done for every target), until TakeReleased hands them over. A
// caller that owns the bodies it pushes learns with it when the sender no
// longer refers to one: once a body released Acked is in nothing else of the
// caller's, its memory may be reused. A sender that keeps them must be
// drained: it holds at most one window's worth between two calls that
// acknowledge or expire messages.
func (s *Sender) KeepReleased() { s.keep = true }

// TakeReleased appends the messages released since the last call to dst and
// returns it; the sender keeps no reference to them.
func (s *Sender) TakeReleased(dst []Released) []Released {
	dst = append(dst, s.released...)
	clear(s.released)
	s.released = s.released[:0]
	return dst
}

// firstRTO is the timeout of a first transmission to t: its RTO, backed off
// while timeouts have had no valid sample since.
func (s *Sender) firstRTO(t *target) time.Duration { return s.backoff(t.rto, t.backedOff) }

// backoff returns min(rto*2^k, MaxRTO).
func (s *Sender) backoff(rto time.Duration, k int) time.Duration {
	d := rto
	for ; k > 0 && d < s.cfg.MaxRTO; k-- {
		d *= 2
	}
	return min(d, s.cfg.MaxRTO)
}

// sampleRTT folds one RTT sample into t's estimator (RFC 6298, section 2),
// and ends the backoff. The margin over the smoothed RTT is at least MinRTO
// (RFC 6298's clock granularity G, here the scheduling and forwarding
// delays that a steady path's variance does not show): on a path whose
// round trip never varies, RTTVAR decays to zero and an RTO equal to the RTT
// fired just before each acknowledgement arrived.
func (s *Sender) sampleRTT(t *target, r time.Duration) {
	if r < 0 {
		r = 0
	}
	if !t.sampled {
		t.sampled = true
		t.srtt = r
		t.rttvar = r / 2
	} else {
		diff := t.srtt - r
		if diff < 0 {
			diff = -diff
		}
		t.rttvar = (3*t.rttvar + diff) / 4
		t.srtt = (7*t.srtt + r) / 8
	}
	t.rto = min(t.srtt+max(4*t.rttvar, s.cfg.MinRTO), s.cfg.MaxRTO)
	t.backedOff = 0
}

// FastThreshold is how many later messages, sent no earlier than a pending
// one, must be known received (SACKed) before the pending one is deemed lost
// and retransmitted at once instead of at its timeout: QUIC's packet
// threshold (RFC 9002, section 6.1.1). Three tolerates mild reordering.
const FastThreshold = 3

// fastRetransmit pulls forward, to now, the timer of every copy for t that
// is still pending although FastThreshold copies of later messages, sent at
// or after its last transmission, have arrived. A retransmitted copy is
// judged again only against messages sent after its retransmission. It
// counts as a retransmission like a timeout does (retry budget, backoff).
func (s *Sender) fastRetransmit(now time.Time, t *target) {
	later := 0
	var newest time.Time
	var lost []int // window offsets, highest first
	for j := s.n - 1; j >= 0; j-- {
		e := s.at(j)
		c := e.find(t)
		if c == nil {
			continue
		}
		switch c.state {
		case copySacked:
			later++
			if c.lastSent.After(newest) {
				newest = c.lastSent
			}
		case copyPending:
			if later >= FastThreshold && c.sent && !c.lastSent.After(newest) && c.deadline.After(now) {
				lost = append(lost, j)
			}
		}
	}
	// Lowest index first: the receiver can deliver in order sooner.
	for _, j := range slices.Backward(lost) {
		e := s.at(j)
		c := e.find(t)
		c.deadline = now
		c.lost = true
		s.schedule(e.seq, c)
	}
}

// schedule records c's (new) deadline. When stale items dominate the heap
// (Deadline and Tick are not called, or acks keep outrunning timers), the
// heap is rebuilt from the window, so it stays O(pending copies): c and
// every other pending copy must already be in the window and counted in
// timers. (A copy scheduled again right after a rebuild has two identical
// items; the second is stale once the first has fired.)
func (s *Sender) schedule(seq uint32, c *txCopy) {
	if len(s.heap) >= 4*s.timers+64 {
		s.rebuildHeap()
	}
	s.heap.push(timerItem{at: c.deadline, ord: s.ord, seq: seq, t: c.t})
	s.ord++
}

// lookup returns the pending copy an item stands for, or nil if it is stale.
func (s *Sender) lookup(it timerItem) (*entry, *txCopy) {
	j := dist(s.base, it.seq, s.m)
	if j >= uint32(s.n) {
		return nil, nil
	}
	e := s.at(int(j))
	c := e.find(it.t)
	if c == nil || c.state != copyPending || !c.deadline.Equal(it.at) {
		return nil, nil
	}
	return e, c
}

// prune drops stale items from the top of the heap.
func (s *Sender) prune() {
	for len(s.heap) > 0 {
		if _, c := s.lookup(s.heap[0]); c != nil {
			return
		}
		s.heap.pop()
	}
}

func (s *Sender) rebuildHeap() {
	clear(s.heap)
	s.heap = s.heap[:0]
	for j := 0; j < s.n; j++ {
		e := s.at(j)
		for i := range e.copies {
			if c := &e.copies[i]; c.state == copyPending {
				s.heap = append(s.heap, timerItem{at: c.deadline, ord: s.ord, seq: e.seq, t: c.t})
				s.ord++
			}
		}
	}
	s.heap.init()
}

// highestBit returns the index of the highest set bit of the LSB-first
// bitmap b, or -1.
func highestBit(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != 0 {
			for bit := 7; bit >= 0; bit-- {
				if b[i]&(1<<bit) != 0 {
					return i*8 + bit
				}
			}
		}
	}
	return -1
}

// String describes the sender's state for diagnosis: the window, and per
// target its acknowledged point, live and SACKed copies, RTO and probe timer,
// then every message in flight with the state and retries of each copy.
func (s *Sender) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "epoch %d base %d next %d inflight %d timers %d heap %d\n", s.epoch, s.base, s.Next(), s.n, s.timers, len(s.heap))
	for _, t := range s.tlist {
		fmt.Fprintf(&b, "  target %x: lo %d live %d sacked %d rto %v probing %v probes %d probeAt %s\n",
			t.id[:4], t.lo, t.live, t.sacked, t.rto, t.probing, t.probes, t.probeAt.Format("15:04:05.000"))
	}
	for j := 0; j < s.n; j++ {
		e := s.at(j)
		fmt.Fprintf(&b, "  msg %d live %d:", e.seq, e.live)
		for _, c := range e.copies {
			if c.live() {
				fmt.Fprintf(&b, " %x/%s/r%d/sent=%v/due=%s", c.t.id[:4], [...]string{"pending", "sacked", "acked", "failed"}[c.state], c.retries, c.sent, c.deadline.Format("15:04:05.000"))
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}
