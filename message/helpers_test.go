package message

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/google/uuid"
)

// sameMessage reports whether a and b are equal, treating nil and empty bodies alike.
func sameMessage(a, b Message) bool {
	return a.UID == b.UID && a.Header == b.Header && bytes.Equal(a.Body, b.Body)
}

// wantClass fails the test unless err is a *DecodeError of the given class.
func wantClass(t testing.TB, err, class error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want %v", class)
	}
	if !errors.Is(err, class) {
		t.Fatalf("got %v, want class %v", err, class)
	}
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v is not a *DecodeError", err)
	}
}

// isSentinel reports whether err wraps one of the package's sentinels via a *DecodeError.
func isSentinel(err error) bool {
	var de *DecodeError
	if !errors.As(err, &de) {
		return false
	}
	for _, s := range []error{ErrTruncated, ErrTooLarge, ErrVersion, ErrType, ErrMalformed} {
		if de.Err == s {
			return true
		}
	}
	return false
}

func fixedUUID(b byte) uuid.UUID {
	var u uuid.UUID
	for i := range u {
		u[i] = b + byte(i)
	}
	return u
}

func randUUID(rng *rand.Rand) uuid.UUID {
	var u uuid.UUID
	for i := range u {
		u[i] = byte(rng.Uint32())
	}
	return u
}

// randBytes returns n random bytes, nil when n == 0.
func randBytes(rng *rand.Rand, n int) []byte {
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// randAddr returns a non-empty valid UTF-8 address, sometimes with multi-byte runes.
func randAddr(rng *rand.Rand) string {
	alphabet := []rune("abcdefghijklmnopqrstuvwxyz0123456789.:/[]-é€😀")
	n := 1 + rng.IntN(40)
	if rng.IntN(20) == 0 {
		n = 60 // 60 runes of at most 4 bytes: at most 240 bytes.
	}
	rs := make([]rune, n)
	for i := range rs {
		rs[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(rs)
}

// randAddrs returns up to MaxAddrs addresses, nil when none.
func randAddrs(rng *rand.Rand) []string {
	n := rng.IntN(MaxAddrs + 1)
	if rng.IntN(3) == 0 {
		n = rng.IntN(3)
	}
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = randAddr(rng)
	}
	return out
}

func randState(rng *rand.Rand) State {
	s := State{
		Origin:    randUUID(rng),
		Epoch:     rng.Uint64(),
		Seq:       rng.Uint64(),
		FreeSlots: uint16(rng.Uint32()),
		Addrs:     randAddrs(rng),
	}
	n := rng.IntN(12)
	if rng.IntN(50) == 0 {
		n = MaxNeighbors
	}
	if n > 0 {
		s.Neighbors = make([]uuid.UUID, n)
		for i := range s.Neighbors {
			s.Neighbors[i] = randUUID(rng)
		}
	}
	return s
}

func randStateList(rng *rand.Rand) StateList {
	n := 1 + rng.IntN(5)
	out := make(StateList, n)
	for i := range out {
		out[i] = randState(rng)
	}
	return out
}

func randStateRequest(rng *rand.Rand) StateRequest {
	n := rng.IntN(10)
	if rng.IntN(50) == 0 {
		n = MaxStates
	}
	if n == 0 {
		return nil
	}
	out := make(StateRequest, n)
	for i := range out {
		out[i] = randUUID(rng)
	}
	return out
}

func randEdgeChange(rng *rand.Rand) EdgeChange {
	return EdgeChange{
		Origin:    randUUID(rng),
		Epoch:     rng.Uint64(),
		Seq:       rng.Uint64(),
		Peer:      randUUID(rng),
		FreeSlots: uint16(rng.Uint32()),
	}
}

func randAck(rng *rand.Rand) Ack {
	return Ack{
		StreamEpoch: rng.Uint64(),
		Cum:         rng.Uint32(),
		SACK:        randBytes(rng, rng.IntN(MaxSACKBytes+1)),
	}
}

func randHello(rng *rand.Rand) Hello {
	return Hello{FreeSlots: uint16(rng.Uint32()), Addrs: randAddrs(rng)}
}

func randReject(rng *rand.Rand) Reject {
	return Reject{
		Reason:      RejectReason(1 + rng.IntN(int(RejectClosing))),
		EntryPoints: randAddrs(rng),
	}
}

// randMessage returns a random valid message of a random type, with a body that
// is the type's payload (or random bytes for data).
func randMessage(rng *rand.Rand) Message {
	t := Type(1 + rng.IntN(int(typeMax)))
	m := Message{
		UID: UID{Node: randUUID(rng), Index: int32(rng.Uint32())},
		Header: Header{
			Type:     t,
			HopLimit: uint8(rng.Uint32()),
			Epoch:    rng.Uint64(),
		},
	}
	if rng.IntN(2) == 0 {
		m.Header.Target = randUUID(rng)
	}
	switch t {
	case TypeHello, TypeWelcome:
		m.Body = randHello(rng).Append(nil)
	case TypeReject:
		m.Body = randReject(rng).Append(nil)
	case TypeNetworkState:
		m.Body = randStateList(rng).Append(nil)
	case TypeNetworkStateRequest:
		m.Body = randStateRequest(rng).Append(nil)
	case TypeNewEdge, TypeDestroyEdge:
		m.Body = randEdgeChange(rng).Append(nil)
	case TypeMsg, TypeMsgBroadcast:
		m.UID.Index = int32(rng.IntN(math.MaxInt32))
		m.Header.Ref = rng.Uint32()
		n := rng.IntN(256)
		if rng.IntN(200) == 0 {
			n = rng.IntN(DefaultMaxBody + 1)
		}
		m.Body = randBytes(rng, n)
	case TypeAck:
		m.UID.Index = AckIndex
		if rng.IntN(2) == 0 {
			m.Header.Flags = FlagBroadcastStream
		}
		m.Body = randAck(rng).Append(nil)
	}
	return m
}
