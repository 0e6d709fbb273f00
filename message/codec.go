package message

import (
	"encoding/binary"
	"math"
	"slices"

	"github.com/google/uuid"
)

// HeaderSize is the size in bytes of the fixed frame header that precedes the body.
//
// Layout (all integers big-endian; docs/PROTOCOL.md, Part 1, is normative):
//
//	off  0  u8        version (= Version)
//	off  1  u8        type
//	off  2  u8        flags
//	off  3  u8        hop limit
//	off  4  [16]byte  source node UUID (UID.Node)
//	off 20  i32       index (UID.Index)
//	off 24  [16]byte  target node UUID (all zero = none)
//	off 40  u64       epoch
//	off 48  u32       ref
//	off 52  u32       body length
//	off 56            body
const HeaderSize = 56

// DefaultMaxBody is the body-length limit Decode applies when given maxBody <= 0:
// 1 MiB, matching transport.DefaultMaxFrame minus header room.
const DefaultMaxBody = 1 << 20

// Field offsets within the header.
const (
	offVersion  = 0
	offType     = 1
	offFlags    = 2
	offHopLimit = 3
	offSource   = 4
	offIndex    = 20
	offTarget   = 24
	offEpoch    = 40
	offRef      = 48
	offBodyLen  = 52
)

// IsData reports whether t carries application bytes end to end (msg and
// msg_broadcast). Data messages have a non-negative UID index.
func (t Type) IsData() bool { return t == TypeMsg || t == TypeMsgBroadcast }

// Valid reports whether f has only bits this version knows.
func (f Flags) Valid() bool { return f&^flagsKnown == 0 }

// Append appends the encoded frame to dst and returns the extended slice.
//
// It never fails and does not check m: the caller makes sure m is valid
// (see Validate), or the receiver's decoder will reject the frame. Encoding
// into a buffer with enough capacity allocates nothing.
func (m *Message) Append(dst []byte) []byte {
	dst = slices.Grow(dst, HeaderSize+len(m.Body))
	return append(m.AppendHeader(dst), m.Body...)
}

// AppendHeader appends the frame's HeaderSize-byte header alone, with the
// body length of m.Body, to dst: a sender that keeps the body right after
// room for the header (frame[HeaderSize:]) encodes the frame in place with
// m.AppendHeader(frame[:0]), copying nothing.
func (m *Message) AppendHeader(dst []byte) []byte {
	h := &m.Header
	dst = append(dst, Version, byte(h.Type), byte(h.Flags), h.HopLimit)
	dst = append(dst, m.UID.Node[:]...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.UID.Index))
	dst = append(dst, h.Target[:]...)
	dst = binary.BigEndian.AppendUint64(dst, h.Epoch)
	dst = binary.BigEndian.AppendUint32(dst, h.Ref)
	return binary.BigEndian.AppendUint32(dst, uint32(len(m.Body)))
}

// Encode returns the encoded frame in a new slice of exactly the frame's size.
func (m *Message) Encode() []byte {
	return m.Append(make([]byte, 0, HeaderSize+len(m.Body)))
}

// Validate reports whether m would be accepted by Decode(m.Encode(), maxBody)
// (maxBody <= 0 means DefaultMaxBody). It checks the frame only, not the
// payload inside the body.
func (m *Message) Validate(maxBody int) error {
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	if !m.Header.Type.Valid() {
		return decodeErr(ErrType, offType, "type "+itoa(int(m.Header.Type)))
	}
	if !m.Header.Flags.Valid() {
		return decodeErr(ErrMalformed, offFlags, "unknown flag bits")
	}
	if len(m.Body) > maxBody || uint64(len(m.Body)) > math.MaxUint32 {
		return decodeErr(ErrTooLarge, offBodyLen, "body length "+itoa(len(m.Body))+" > limit "+itoa(maxBody))
	}
	return checkIndex(m.Header.Type, m.UID.Index)
}

// DecodeHeader decodes and validates the fixed header at the start of frame.
//
// frame may hold just the header (for example when reading a length-prefixed
// stream) or the whole frame; the body is neither read nor checked, and
// bodyLen is the length the header declares. DecodeHeader checks, in order:
// at least HeaderSize bytes (ErrTruncated), the version (ErrVersion), the type
// (ErrType), the flags (ErrMalformed), and the index (ErrMalformed: an ack
// must carry AckIndex, msg and msg_broadcast a non-negative index).
//
// It does not allocate unless it fails.
func DecodeHeader(frame []byte) (UID, Header, int, error) {
	if len(frame) < HeaderSize {
		return UID{}, Header{}, 0, truncatedHeader(len(frame))
	}
	if err := checkPrefix(frame); err != nil {
		return UID{}, Header{}, 0, err
	}
	uid, h, n := parseHeader(frame)
	if err := checkIndex(h.Type, uid.Index); err != nil {
		return UID{}, Header{}, 0, err
	}
	if uint64(n) > math.MaxInt {
		// Only reachable where int is 32 bits.
		return UID{}, Header{}, 0, decodeErr(ErrTooLarge, offBodyLen, "body length does not fit in int")
	}
	return uid, h, int(n), nil
}

// Decode decodes and validates one whole frame.
//
// maxBody is the largest body accepted; maxBody <= 0 means DefaultMaxBody.
// Decode checks, in order: truncation, i.e. fewer than HeaderSize bytes or
// fewer body bytes than declared (ErrTruncated); the version (ErrVersion); the
// type (ErrType); the flags (ErrMalformed); the body length against maxBody
// (ErrTooLarge); trailing bytes after the body (ErrMalformed); and the index
// (ErrMalformed: an ack must carry AckIndex, msg and msg_broadcast a
// non-negative index). The body's payload is not decoded: use the payload
// decoders for that.
//
// The returned Body aliases frame (it is not copied); it is a non-nil,
// possibly empty slice. Decode does not allocate unless it fails.
func Decode(frame []byte, maxBody int) (Message, error) {
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	if len(frame) < HeaderSize {
		return Message{}, truncatedHeader(len(frame))
	}
	n := uint64(binary.BigEndian.Uint32(frame[offBodyLen:]))
	rest := uint64(len(frame) - HeaderSize)
	if n > rest {
		return Message{}, decodeErr(ErrTruncated, len(frame),
			"body length "+itoa(int(n))+", "+itoa(int(rest))+" bytes present")
	}
	if err := checkPrefix(frame); err != nil {
		return Message{}, err
	}
	if n > uint64(maxBody) {
		return Message{}, decodeErr(ErrTooLarge, offBodyLen,
			"body length "+itoa(int(n))+" > limit "+itoa(maxBody))
	}
	if n < rest {
		return Message{}, decodeErr(ErrMalformed, HeaderSize+int(n),
			itoa(int(rest-n))+" trailing bytes after body")
	}
	uid, h, _ := parseHeader(frame)
	if err := checkIndex(h.Type, uid.Index); err != nil {
		return Message{}, err
	}
	return Message{UID: uid, Header: h, Body: frame[HeaderSize:len(frame):len(frame)]}, nil
}

// truncatedHeader is the error for a frame shorter than HeaderSize.
func truncatedHeader(have int) error {
	return decodeErr(ErrTruncated, have, "header needs "+itoa(HeaderSize)+" bytes, "+itoa(have)+" present")
}

// checkPrefix checks version, type and flags. frame has at least HeaderSize bytes.
func checkPrefix(frame []byte) error {
	if v := frame[offVersion]; v != Version {
		return decodeErr(ErrVersion, offVersion, "version "+itoa(int(v)))
	}
	if t := Type(frame[offType]); !t.Valid() {
		return decodeErr(ErrType, offType, "type "+itoa(int(t)))
	}
	if f := Flags(frame[offFlags]); !f.Valid() {
		return decodeErr(ErrMalformed, offFlags, "unknown flag bits "+itoa(int(f&^flagsKnown)))
	}
	return nil
}

// checkIndex checks the UID index against what the type allows.
func checkIndex(t Type, index int32) error {
	switch {
	case t == TypeAck && index != AckIndex:
		return decodeErr(ErrMalformed, offIndex, "ack index "+itoa(int(index))+", want -1")
	case t.IsData() && index < 0:
		return decodeErr(ErrMalformed, offIndex, t.String()+" index "+itoa(int(index))+" is negative")
	}
	return nil
}

// parseHeader reads the header fields without checking them.
// frame has at least HeaderSize bytes.
func parseHeader(frame []byte) (UID, Header, uint32) {
	uid := UID{
		Node:  uuid.UUID(frame[offSource : offSource+16]),
		Index: int32(binary.BigEndian.Uint32(frame[offIndex:])),
	}
	h := Header{
		Type:     Type(frame[offType]),
		Flags:    Flags(frame[offFlags]),
		HopLimit: frame[offHopLimit],
		Target:   uuid.UUID(frame[offTarget : offTarget+16]),
		Epoch:    binary.BigEndian.Uint64(frame[offEpoch:]),
		Ref:      binary.BigEndian.Uint32(frame[offRef:]),
	}
	return uid, h, binary.BigEndian.Uint32(frame[offBodyLen:])
}

// PeekType returns the type byte of an encoded frame without validating the
// frame, or 0 (no valid type) when frame is shorter than a header. It is for
// a caller that has already decoded the frame once and needs its type again
// from the bytes.
func PeekType(frame []byte) Type {
	if len(frame) < HeaderSize {
		return 0
	}
	return Type(frame[offType])
}

// DecrementHopLimit lowers the hop limit of an encoded frame in place before
// the frame is relayed, and reports whether it may travel on: false when the
// limit is already 1 or 0 (the frame is then left as it was), or when frame
// is shorter than a header. A relaying node calls it once per frame, not once
// per neighbour it relays to.
func DecrementHopLimit(frame []byte) bool {
	if len(frame) < HeaderSize || frame[offHopLimit] <= 1 {
		return false
	}
	frame[offHopLimit]--
	return true
}

// Seal returns a copy of an encoded, unsealed frame with FlagSealed set and
// its body n bytes longer, those last bytes zero: the caller computes the
// tag (TagSize bytes for a frame with a target, SigSize for a flooded
// broadcast) over TagCovers of the copy and writes it with
// copy(Tag(f, n), ...). frame must be a valid frame (it comes from this
// node's own encoder).
func Seal(frame []byte, n int) []byte { return SealInto(nil, frame, n) }

// SealInto is Seal, writing the copy into dst when its capacity suffices
// (dst's bytes are overwritten) and into a new slice otherwise.
func SealInto(dst, frame []byte, n int) []byte {
	f := SealHeader(dst, frame, n)
	copy(f[HeaderSize:], frame[HeaderSize:])
	clear(f[len(frame):])
	return f
}

// SealHeader is SealInto for a caller that writes the whole body itself (an
// AEAD sealing the plaintext from frame into the copy): only the header is
// copied, and the body's bytes are left as dst held them.
func SealHeader(dst, frame []byte, n int) []byte {
	size := len(frame) + n
	var f []byte
	if cap(dst) >= size {
		f = dst[:size]
	} else {
		f = make([]byte, size)
	}
	copy(f, frame[:HeaderSize])
	f[offFlags] |= byte(FlagSealed)
	binary.BigEndian.PutUint32(f[offBodyLen:], uint32(len(frame)-HeaderSize+n))
	return f
}

// MarkCongestion sets FlagCongestion in an encoded frame, in place.
func MarkCongestion(frame []byte) {
	if len(frame) > offFlags {
		frame[offFlags] |= byte(FlagCongestion)
	}
}

// ClearCongestion clears FlagCongestion in an encoded frame or header, in
// place (what end-to-end sealing covers leaves it out).
func ClearCongestion(frame []byte) {
	if len(frame) > offFlags {
		frame[offFlags] &^= byte(FlagCongestion)
	}
}

// TagCovers returns the two runs of a frame sealed with an n-byte tag that
// the tag covers: everything before the hop limit, and everything after it
// up to the tag. The hop limit is left out because forwarders lower it.
// frame must be at least HeaderSize+n bytes.
func TagCovers(frame []byte, n int) (head, rest []byte) {
	return frame[:offHopLimit], frame[offHopLimit+1 : len(frame)-n]
}

// Tag returns the n-byte tag of a sealed frame: its last n bytes.
func Tag(frame []byte, n int) []byte { return frame[len(frame)-n:] }
