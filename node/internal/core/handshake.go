package core

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
)

// RejectError is a handshake answered with a rejection (node.RejectedError
// carries the same fields to the application).
type RejectError struct {
	Peer        uuid.UUID
	Reason      message.RejectReason
	EntryPoints []string
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("node: connection rejected by %s (reason %d, %d entry points)", e.Peer, e.Reason, len(e.EntryPoints))
}

// ParseHandshake decodes a handshake frame that should be of type want
// (hello for the side that accepts, welcome for the dialler, who may get a
// reject instead). A reject becomes a *RejectError, or ErrDuplicateEdge for
// a duplicate; anything else that is not what was wanted wraps ErrHandshake.
func ParseHandshake(frame []byte, want message.Type, maxBody int) (message.Message, message.Hello, error) {
	m, err := message.Decode(frame, maxBody)
	if err != nil {
		return m, message.Hello{}, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	if m.UID.Node == uuid.Nil {
		return m, message.Hello{}, fmt.Errorf("%w: nil node ID", ErrHandshake)
	}
	if m.Header.Type == message.TypeReject && want == message.TypeWelcome {
		r, err := message.DecodeReject(m.Body)
		if err != nil {
			return m, message.Hello{}, fmt.Errorf("%w: %w", ErrHandshake, err)
		}
		if r.Reason == message.RejectDuplicate {
			return m, message.Hello{}, fmt.Errorf("%w: %s", ErrDuplicateEdge, m.UID.Node)
		}
		return m, message.Hello{}, &RejectError{Peer: m.UID.Node, Reason: r.Reason, EntryPoints: r.EntryPoints}
	}
	if m.Header.Type != want {
		return m, message.Hello{}, fmt.Errorf("%w: got %s, want %s", ErrHandshake, m.Header.Type, want)
	}
	h, err := message.DecodeHello(m.Body)
	if err != nil {
		return m, message.Hello{}, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	return m, h, nil
}

// HandshakeFrame encodes a frame of a handshake outside the Core's loop
// (reject, goodbye) for node id in epoch.
func HandshakeFrame(id uuid.UUID, epoch uint64, hopLimit uint8, typ message.Type, body []byte) []byte {
	m := &message.Message{
		UID:    message.UID{Node: id},
		Header: message.Header{Type: typ, HopLimit: hopLimit, Epoch: epoch},
		Body:   body,
	}
	return m.Encode()
}

// The dialling side of a handshake over links that may lose, reorder or
// delay frames (the Edge contract allows it). The driver and the simulator
// both follow these numbers.
const (
	// HandshakeTries is how many times a dial whose handshake fails is
	// tried, within the caller's time; each try gets TryTimeout.
	HandshakeTries = 4
	// MaxEarlyFrames bounds the frames kept that overtook the welcome.
	MaxEarlyFrames = 64
)

// HelloAgainAfter is when, after the first hello, the dialler says hello
// for the k-th time more (k from 0) while no answer came: 100 ms, then
// doubling. The acceptor answers a repeated hello with its welcome again.
func HelloAgainAfter(k int) time.Duration {
	return 100 * time.Millisecond << min(k, 10)
}

// RetryAfter is how long the dialler waits before try number tries+1 of a
// failed handshake: 100 ms, doubling.
func RetryAfter(tries int) time.Duration {
	return 100 * time.Millisecond << min(tries, 10)
}

// TryTimeout is how long one try of a handshake may take: half of the
// configured handshake timeout, so that a lost answer leaves time to try
// again within it.
func TryTimeout(handshake time.Duration) time.Duration { return handshake / 2 }
