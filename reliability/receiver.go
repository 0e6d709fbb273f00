package reliability

import (
	"fmt"

	"github.com/distrirender/distrirender/message"
)

// Verdict is what Receiver.OnData did with a packet.
type Verdict uint8

// Verdicts. After Accepted, Duplicate and OutOfWindow the caller sends the
// receiver's Ack to the stream's origin; after Stale and Invalid it sends
// nothing.
const (
	// Accepted: the message was new and is buffered; Pop will return it in order.
	Accepted Verdict = iota
	// Duplicate: the message was already delivered, already buffered, or
	// belongs to the stream's past. Nothing was stored; re-acknowledge so the
	// sender learns what it missed.
	Duplicate
	// OutOfWindow: the message lies Window or more indexes past the delivery
	// point (the application has not popped enough). Nothing was stored.
	OutOfWindow
	// Stale: the packet belongs to an older incarnation (epoch) of the sender.
	// Nothing changed.
	Stale
	// Invalid: the packet is malformed (OnData also returns an error wrapping
	// ErrInvalidData). Nothing changed.
	Invalid
)

// String returns the verdict's name.
func (v Verdict) String() string {
	switch v {
	case Accepted:
		return "accepted"
	case Duplicate:
		return "duplicate"
	case OutOfWindow:
		return "out-of-window"
	case Stale:
		return "stale"
	case Invalid:
		return "invalid"
	}
	return fmt.Sprintf("Verdict(%d)", uint8(v))
}

// Receiver is the receiving end of one stream (one origin's unicast stream to
// this node, or one origin's broadcast stream). It buffers at most Window
// messages, delivers them in index order through Pop, and describes its state
// in Ack.
//
// Its cumulative point (the next index Pop returns, Ack's Cum) advances only
// when the application pops, or when the sender's Base shows that missing
// indexes were given up: a slow application therefore holds the sender back
// instead of overflowing the buffer.
//
// The ring of slots is indexed relative to the cumulative point (slot head
// holds index next), so Modulo need not be a multiple of Window. It starts
// at InitialWindow slots and grows, up to Window, as far as the sender goes.
//
// A Receiver is not safe for concurrent use; it does no I/O and reads no clock.
type Receiver struct {
	w    uint32 // Window
	m    uint32 // Modulo
	lead uint32 // MaxSkip

	init  bool
	epoch uint64
	next  uint32 // delivery point: the index Pop returns next (Ack.Cum)
	skip  uint32 // the floor (highest Base seen) is next+skip; 0 if not ahead
	head  uint32 // ring slot of index next
	count int    // buffered messages
	slots []rslot
}

type rslot struct {
	body []byte
	full bool
}

// NewReceiver returns an uninitialised receiver: the first OnData sets its
// epoch and delivery point (from the packet's Base). It panics if
// cfg.WithDefaults() is invalid.
func NewReceiver(cfg Config) *Receiver {
	cfg = mustValid(cfg)
	return &Receiver{
		w:     uint32(cfg.Window),
		m:     cfg.Modulo,
		lead:  cfg.MaxSkip(),
		slots: make([]rslot, cfg.InitialWindow),
	}
}

// Resume starts r as the receiver of stream incarnation epoch that has
// delivered every index below next: a caller that dropped a receiver (its
// origin's record aged out) and remembered Epoch and Next makes a new one
// that still tells the stream's old messages from new ones, where a fresh
// receiver would take a retransmission of a delivered message for a new
// one. It panics if next is not below the modulo.
func (r *Receiver) Resume(epoch uint64, next uint32) {
	if next >= r.m {
		panic("reliability: Resume with an index not below the modulo")
	}
	r.reset(epoch, next)
}

// Started reports whether the receiver has an incarnation (a first packet,
// or Resume).
func (r *Receiver) Started() bool { return r.init }

// Epoch returns the epoch of the stream incarnation being received (0 before
// the first packet).
func (r *Receiver) Epoch() uint64 { return r.epoch }

// Buffered returns how many messages are buffered and not yet popped; never
// more than Window.
func (r *Receiver) Buffered() int { return r.count }

// Next returns the delivery point: the index Pop returns next (Ack's Cum).
func (r *Receiver) Next() uint32 { return r.next }

// OnData handles one data packet of the stream: epoch is the origin's epoch
// from the message header, seq the message index, base the sender's window
// base (the header's Ref).
//
// If the packet is Accepted, the receiver keeps body (no copy) until Pop
// returns it: the caller must not reuse its buffer.
//
// Validation comes first: seq or base outside the modulo, or seq not within
// Window of base, returns Invalid and an error wrapping ErrInvalidData, and
// changes nothing. Then: an older epoch is Stale; a newer epoch (the sender
// restarted) discards everything buffered and starts over at base, as does
// the first packet. A base ahead of the delivery point (at most MaxSkip ahead)
// tells the receiver that the sender gave up on, or never addressed to it, the
// indexes below base: those it is missing are skipped, those it buffered stay
// deliverable. A base more than Window behind and more than MaxSkip ahead can
// only come from an old packet; it is a Duplicate and changes nothing.
func (r *Receiver) OnData(epoch uint64, seq, base uint32, body []byte) (Verdict, error) {
	if seq >= r.m || base >= r.m {
		return Invalid, fmt.Errorf("%w: index %d or base %d not below modulo %d", ErrInvalidData, seq, base, r.m)
	}
	k := dist(base, seq, r.m)
	if k >= r.w {
		return Invalid, fmt.Errorf("%w: index %d is %d past base %d (window %d)", ErrInvalidData, seq, k, base, r.w)
	}
	if r.init && epoch < r.epoch {
		return Stale, nil
	}
	if !r.init || epoch > r.epoch {
		r.reset(epoch, base)
	}

	// Place base relative to the delivery point: offB in [-Window, MaxSkip].
	var offB int64
	if back := dist(base, r.next, r.m); back <= r.w {
		offB = -int64(back)
	} else if ahead := dist(r.next, base, r.m); ahead <= r.lead {
		offB = int64(ahead)
		if ahead > r.skip {
			r.skip = ahead
			before := r.next
			r.normalise()
			offB -= int64(dist(before, r.next, r.m))
		}
	} else {
		return Duplicate, nil // from the stream's past
	}

	off := offB + int64(k) // seq relative to the delivery point
	switch {
	case off < 0:
		return Duplicate, nil
	case off >= int64(r.w):
		return OutOfWindow, nil
	}
	s := r.slot(uint32(off))
	if s.full {
		return Duplicate, nil
	}
	s.body, s.full = body, true
	r.count++
	return Accepted, nil
}

// Pop returns the next message in index order, if it has arrived, and
// advances the delivery point past it (and past any indexes below the
// sender's Base that will never arrive). Call Ack afterwards and send it: the
// sender's window moves only when the delivery point does.
func (r *Receiver) Pop() (body []byte, seq uint32, ok bool) {
	if r.count == 0 {
		return nil, 0, false
	}
	s := &r.slots[r.head]
	if !s.full {
		return nil, 0, false
	}
	body, seq = s.body, r.next
	*s = rslot{}
	r.count--
	r.advance()
	r.normalise()
	return body, seq, true
}

// Ack describes the receiver's state for the stream's origin: StreamEpoch,
// Cum (the delivery point: every earlier index was delivered to the
// application, or given up by the sender) and SACK (bit i, LSB first within
// each byte, set if index Cum+i is buffered and not yet popped). SACK is nil
// when nothing is buffered and never longer than needed. The returned Ack
// owns its SACK slice.
func (r *Receiver) Ack() message.Ack {
	a := message.Ack{StreamEpoch: r.epoch, Cum: r.next}
	if r.count == 0 {
		return a
	}
	hi := -1
	for i := len(r.slots) - 1; i >= 0; i-- {
		if r.slots[(r.head+uint32(i))%uint32(len(r.slots))].full {
			hi = i
			break
		}
	}
	a.SACK = make([]byte, hi/8+1)
	for i := 0; i <= hi; i++ {
		if r.slots[(r.head+uint32(i))%uint32(len(r.slots))].full {
			a.SACK[i/8] |= 1 << (i % 8)
		}
	}
	return a
}

// slot returns the slot of the index off past the delivery point (off below
// Window), growing the ring to hold it: a stream buffers only as far ahead
// as its sender has gone, so idle streams stay small.
func (r *Receiver) slot(off uint32) *rslot {
	if n := uint32(len(r.slots)); off >= n {
		grown := make([]rslot, min(max(2*n, off+1), r.w))
		for i := range n {
			grown[i] = r.slots[(r.head+i)%n]
		}
		r.slots, r.head = grown, 0
	}
	return &r.slots[(r.head+off)%uint32(len(r.slots))]
}

func (r *Receiver) reset(epoch uint64, base uint32) {
	r.init = true
	r.epoch = epoch
	r.next = base
	r.skip = 0
	r.head = 0
	r.count = 0
	clear(r.slots)
}

// advance moves the delivery point one index forward.
func (r *Receiver) advance() {
	r.head = (r.head + 1) % uint32(len(r.slots))
	r.next = add(r.next, 1, r.m)
	if r.skip > 0 {
		r.skip--
	}
}

// normalise skips the missing indexes below the floor (next+skip), stopping
// at the first buffered one: buffered messages below the floor stay
// deliverable, missing ones are never waited for.
func (r *Receiver) normalise() {
	for r.skip > 0 {
		if r.count == 0 {
			r.next = add(r.next, r.skip, r.m)
			r.head = (r.head + r.skip) % uint32(len(r.slots))
			r.skip = 0
			return
		}
		if r.slots[r.head].full {
			return
		}
		r.advance()
	}
}
