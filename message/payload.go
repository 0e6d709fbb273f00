package message

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Payload limits. A decoder rejects larger counts with ErrMalformed before it
// allocates anything for them; encoders must stay within them (see the
// Validate methods).
const (
	// MaxNeighbors is the most neighbours one State may list.
	MaxNeighbors = 1024
	// MaxAddrs is the most addresses one State, Hello or Reject may carry.
	MaxAddrs = 16
	// MaxAddrLen is the longest address, in bytes (its length is one byte).
	MaxAddrLen = 255
	// MaxSACKBytes is the longest selective-acknowledgement bitmap, in bytes
	// (1024 indices).
	MaxSACKBytes = 128
	// MaxStates is the most records one StateList or StateRequest may carry.
	MaxStates = 4096
	// MaxNameLen is the longest node name, in bytes (its length is one byte).
	MaxNameLen = 64
)

// DigestEntrySize is the size in bytes of one encoded DigestEntry: origin,
// epoch, seq.
const DigestEntrySize = 16 + 8 + 8

// EdgeChangeSize is the size in bytes of an encoded EdgeChange: origin, epoch,
// seq, peer, free slots.
const EdgeChangeSize = 16 + 8 + 8 + 16 + 2

// Smallest encodings, used to bound counts by the bytes present.
const (
	// minStateSize is an encoded State with no neighbours, no addresses,
	// no name and no signature: origin, epoch, seq, free slots, neighbour
	// count, address count, name length, signature length.
	minStateSize = 16 + 8 + 8 + 2 + 2 + 1 + 1 + 1
	// stateSigSize is the signature block of a signed State: key and
	// signature.
	stateSigSize = KeySize + SigSize
	// minAddrSize is an encoded non-empty address: length byte and one byte.
	minAddrSize = 2
)

// ---------------------------------------------------------------------------
// Encoders. They never fail and do not check their input: a value that breaks
// a limit produces bytes the receiver's decoder rejects. Call Validate first
// when the value comes from outside the program.

// appendAddrs appends an address count and the addresses.
func appendAddrs(dst []byte, addrs []string) []byte {
	dst = append(dst, uint8(len(addrs)))
	for _, a := range addrs {
		dst = append(dst, uint8(len(a)))
		dst = append(dst, a...)
	}
	return dst
}

// appendState appends one State record.
func appendState(dst []byte, s *State) []byte {
	dst = appendUnsigned(dst, s)
	if len(s.Sig) == 0 {
		return append(dst, 0)
	}
	dst = append(dst, stateSigSize)
	dst = append(dst, s.Key[:]...)
	return append(dst, s.Sig...)
}

// appendUnsigned appends a State's fields, from the origin to the name.
func appendUnsigned(dst []byte, s *State) []byte {
	dst = append(dst, s.Origin[:]...)
	dst = binary.BigEndian.AppendUint64(dst, s.Epoch)
	dst = binary.BigEndian.AppendUint64(dst, s.Seq)
	dst = binary.BigEndian.AppendUint16(dst, s.FreeSlots)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s.Neighbors)))
	for i := range s.Neighbors {
		dst = append(dst, s.Neighbors[i][:]...)
	}
	dst = appendAddrs(dst, s.Addrs)
	dst = append(dst, uint8(len(s.Name)))
	return append(dst, s.Name...)
}

// signingPrefix separates link-state signatures from every other use of
// a node's key.
const signingPrefix = "distrirender link state v2\x00"

// SigningBytes returns what the origin signs: a fixed prefix, the record
// without its signature block, then its key.
func (s *State) SigningBytes() []byte {
	dst := appendUnsigned([]byte(signingPrefix), s)
	return append(dst, s.Key[:]...)
}

// Append appends the network_state body: a u16 record count, then each State
// (origin, epoch u64, seq u64, free slots u16, neighbour count u16, the
// neighbours' UUIDs, address count u8, each address as u8 length and bytes,
// the name as u8 length and bytes, then a u8 signature-block length, 0 or
// 96, and the block: the origin's key and its signature).
func (s StateList) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	for i := range s {
		dst = appendState(dst, &s[i])
	}
	return dst
}

// Append appends the network_state_request body: a u16 count and the UUIDs.
func (r StateRequest) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(r)))
	for i := range r {
		dst = append(dst, r[i][:]...)
	}
	return dst
}

// Append appends the network_state_digest body: First, Last, a u16 entry
// count, then each entry (origin, epoch u64, seq u64).
func (d Digest) Append(dst []byte) []byte {
	dst = append(dst, d.First[:]...)
	dst = append(dst, d.Last[:]...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(d.Entries)))
	for _, e := range d.Entries {
		dst = append(dst, e.Origin[:]...)
		dst = binary.BigEndian.AppendUint64(dst, e.Epoch)
		dst = binary.BigEndian.AppendUint64(dst, e.Seq)
	}
	return dst
}

// Append appends the new_edge / destroy_edge body: EdgeChangeSize bytes
// (origin, epoch u64, seq u64, peer, free slots u16), then the signature
// when signed (SigSize bytes more).
func (c EdgeChange) Append(dst []byte) []byte {
	dst = append(dst, c.Origin[:]...)
	dst = binary.BigEndian.AppendUint64(dst, c.Epoch)
	dst = binary.BigEndian.AppendUint64(dst, c.Seq)
	dst = append(dst, c.Peer[:]...)
	dst = binary.BigEndian.AppendUint16(dst, c.FreeSlots)
	if c.Signed() {
		dst = append(dst, c.Sig[:]...)
	}
	return dst
}

// Append appends the ack body: stream epoch u64, cumulative index u32, then the
// SACK bitmap as a u8 length and bytes.
func (a Ack) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, a.StreamEpoch)
	dst = binary.BigEndian.AppendUint32(dst, a.Cum)
	dst = append(dst, uint8(len(a.SACK)))
	return append(dst, a.SACK...)
}

// Append appends the hello / welcome body: free slots u16, then the address
// count u8 and each address as u8 length and bytes.
func (h Hello) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, h.FreeSlots)
	dst = appendAddrs(dst, h.Addrs)
	if h.Auth != nil {
		dst = h.Auth.Append(dst)
	}
	return dst
}

// Append appends an Auth (the challenge body, and the tail of a hello in a
// cluster with a secret): nonce, key, a u8 MAC count and the MACs, then a
// u8 signature length (0 or SigSize) and the signature.
func (a *Auth) Append(dst []byte) []byte {
	dst = append(dst, a.Nonce[:]...)
	dst = append(dst, a.Key[:]...)
	dst = append(dst, uint8(len(a.MACs)))
	for i := range a.MACs {
		dst = append(dst, a.MACs[i][:]...)
	}
	dst = append(dst, uint8(len(a.Sig)))
	return append(dst, a.Sig...)
}

// Append appends the reject body: the reason u8, then the entry-point count u8
// and each entry point as u8 length and bytes.
func (r Reject) Append(dst []byte) []byte {
	dst = append(dst, uint8(r.Reason))
	return appendAddrs(dst, r.EntryPoints)
}

// ---------------------------------------------------------------------------
// Validation of values before encoding. Errors are *DecodeError with Offset 0
// and the class the decoder would report.

// validateAddrs checks an address list against the limits.
func validateAddrs(what string, addrs []string) error {
	if len(addrs) > MaxAddrs {
		return decodeErr(ErrMalformed, 0, itoa(len(addrs))+" "+what+" > "+itoa(MaxAddrs))
	}
	for _, a := range addrs {
		if err := validateAddr(a); err != nil {
			return err
		}
	}
	return nil
}

// validateAddr checks one address.
func validateAddr(a string) error {
	switch {
	case a == "":
		return decodeErr(ErrMalformed, 0, "empty address")
	case len(a) > MaxAddrLen:
		return decodeErr(ErrMalformed, 0, "address of "+itoa(len(a))+" bytes > "+itoa(MaxAddrLen))
	case !utf8.ValidString(a):
		return decodeErr(ErrMalformed, 0, "address is not UTF-8")
	}
	return nil
}

// Validate reports whether s can be encoded and decoded back: 1 to MaxStates
// records, each with at most MaxNeighbors neighbours and valid addresses.
// It does not check that neighbours are sorted.
func (s StateList) Validate() error {
	if len(s) == 0 || len(s) > MaxStates {
		return decodeErr(ErrMalformed, 0, "state count "+itoa(len(s))+" not in 1.."+itoa(MaxStates))
	}
	for i := range s {
		if n := len(s[i].Neighbors); n > MaxNeighbors {
			return decodeErr(ErrMalformed, 0, itoa(n)+" neighbours > "+itoa(MaxNeighbors))
		}
		if err := validateAddrs("addresses", s[i].Addrs); err != nil {
			return err
		}
		if err := ValidateName(s[i].Name); err != nil {
			return err
		}
	}
	return nil
}

// ValidateName reports whether name can be a node's name: at most
// MaxNameLen bytes of UTF-8.
func ValidateName(name string) error {
	switch {
	case len(name) > MaxNameLen:
		return decodeErr(ErrMalformed, 0, "name of "+itoa(len(name))+" bytes > "+itoa(MaxNameLen))
	case !utf8.ValidString(name):
		return decodeErr(ErrMalformed, 0, "name is not UTF-8")
	}
	return nil
}

// Validate reports whether d can be encoded and decoded back: at most
// MaxStates entries, sorted by origin without repeats, all within
// [First, Last].
func (d Digest) Validate() error {
	if len(d.Entries) > MaxStates {
		return decodeErr(ErrMalformed, 32, "digest count "+itoa(len(d.Entries))+" > "+itoa(MaxStates))
	}
	if compareUUID(d.First, d.Last) > 0 {
		return decodeErr(ErrMalformed, 16, "digest range ends before it starts")
	}
	for i, e := range d.Entries {
		off := 34 + i*DigestEntrySize
		if compareUUID(e.Origin, d.First) < 0 || compareUUID(e.Origin, d.Last) > 0 {
			return decodeErr(ErrMalformed, off, "digest entry outside its range")
		}
		if i > 0 && compareUUID(d.Entries[i-1].Origin, e.Origin) >= 0 {
			return decodeErr(ErrMalformed, off, "digest entries not sorted by origin")
		}
	}
	return nil
}

// compareUUID orders UUIDs by their bytes.
func compareUUID(a, b uuid.UUID) int {
	for i := range a {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return 0
}

// Validate reports whether r can be encoded and decoded back: at most MaxStates UUIDs.
func (r StateRequest) Validate() error {
	if len(r) > MaxStates {
		return decodeErr(ErrMalformed, 0, "request count "+itoa(len(r))+" > "+itoa(MaxStates))
	}
	return nil
}

// Validate reports whether a can be encoded and decoded back: at most
// MaxSACKBytes of SACK bitmap.
func (a Ack) Validate() error {
	if len(a.SACK) > MaxSACKBytes {
		return decodeErr(ErrMalformed, 0, "SACK of "+itoa(len(a.SACK))+" bytes > "+itoa(MaxSACKBytes))
	}
	return nil
}

// Validate reports whether h can be encoded and decoded back: at most MaxAddrs
// addresses, each non-empty UTF-8 of at most MaxAddrLen bytes.
func (h Hello) Validate() error {
	if h.Auth != nil {
		if err := h.Auth.Validate(); err != nil {
			return err
		}
	}
	return validateAddrs("addresses", h.Addrs)
}

// Validate reports whether a can be encoded and decoded back: at most
// MaxMACs MACs, and a signature of SigSize bytes or none.
func (a *Auth) Validate() error {
	if len(a.MACs) > MaxMACs {
		return decodeErr(ErrMalformed, 0, itoa(len(a.MACs))+" MACs > "+itoa(MaxMACs))
	}
	if len(a.Sig) != 0 && len(a.Sig) != SigSize {
		return decodeErr(ErrMalformed, 0, "signature of "+itoa(len(a.Sig))+" bytes")
	}
	return nil
}

// Validate reports whether r can be encoded and decoded back: a known reason and
// at most MaxAddrs entry points, each non-empty UTF-8 of at most MaxAddrLen bytes.
func (r Reject) Validate() error {
	if !r.Reason.Valid() {
		return decodeErr(ErrMalformed, 0, "reject reason "+itoa(int(r.Reason)))
	}
	return validateAddrs("entry points", r.EntryPoints)
}

// Valid reports whether r is a reason this version knows.
func (r RejectReason) Valid() bool { return r >= RejectFull && r <= RejectAuth }

// String returns the reason's protocol name.
func (r RejectReason) String() string {
	switch r {
	case RejectFull:
		return "full"
	case RejectDuplicate:
		return "duplicate"
	case RejectSelf:
		return "self"
	case RejectClosing:
		return "closing"
	case RejectAuth:
		return "auth"
	}
	return "unknown"
}

// ---------------------------------------------------------------------------
// Decoders.

// reader reads big-endian fields from a payload. The first failure sticks:
// later reads return zero values and the error is kept.
type reader struct {
	b   []byte
	off int
	err error
}

// left is the number of unread bytes.
func (r *reader) left() int { return len(r.b) - r.off }

// fail records the first error.
func (r *reader) fail(class error, off int, detail string) {
	if r.err == nil {
		r.err = decodeErr(class, off, detail)
	}
}

// take returns the next n bytes (aliasing the input), or nil after a failure.
func (r *reader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if r.left() < n {
		r.fail(ErrTruncated, r.off, what+" needs "+itoa(n)+" bytes, "+itoa(r.left())+" present")
		return nil
	}
	b := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

func (r *reader) u8(what string) uint8 {
	if b := r.take(1, what); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16(what string) uint16 {
	if b := r.take(2, what); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32(what string) uint32 {
	if b := r.take(4, what); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64(what string) uint64 {
	if b := r.take(8, what); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *reader) uuid(what string) uuid.UUID {
	if b := r.take(16, what); b != nil {
		return uuid.UUID(b)
	}
	return uuid.Nil
}

// count reads a count (already read as n at offset off) and checks it against
// limit (ErrMalformed) and against the bytes left, given that each item takes at
// least minSize bytes (ErrTruncated). It reports whether the count is usable.
func (r *reader) count(n, off, limit, minSize int, what string) bool {
	if r.err != nil {
		return false
	}
	if n > limit {
		r.fail(ErrMalformed, off, what+" "+itoa(n)+" > "+itoa(limit))
		return false
	}
	if n*minSize > r.left() {
		r.fail(ErrTruncated, off, what+" "+itoa(n)+" needs at least "+itoa(n*minSize)+" bytes, "+itoa(r.left())+" present")
		return false
	}
	return true
}

// addrs reads an address count and the addresses, copying them.
func (r *reader) addrs(what string) []string {
	off := r.off
	n := int(r.u8(what + " count"))
	if !r.count(n, off, MaxAddrs, minAddrSize, what+" count") || n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	for range n {
		off := r.off
		l := int(r.u8("address length"))
		if r.err == nil && l == 0 {
			r.fail(ErrMalformed, off, "empty address")
		}
		b := r.take(l, "address")
		if r.err != nil {
			return nil
		}
		if !utf8.Valid(b) {
			r.fail(ErrMalformed, off+1, "address is not UTF-8")
			return nil
		}
		out = append(out, string(b))
	}
	return out
}

// end fails with ErrMalformed if bytes are left over.
func (r *reader) end(what string) {
	if r.err == nil && r.left() != 0 {
		r.fail(ErrMalformed, r.off, itoa(r.left())+" trailing bytes after "+what)
	}
}

// state reads one State record.
func (r *reader) state(s *State) {
	s.Origin = r.uuid("state origin")
	s.Epoch = r.u64("state epoch")
	s.Seq = r.u64("state seq")
	s.FreeSlots = r.u16("state free slots")
	off := r.off
	n := int(r.u16("neighbour count"))
	if r.count(n, off, MaxNeighbors, 16, "neighbour count") && n > 0 {
		s.Neighbors = make([]uuid.UUID, n)
		for i := range s.Neighbors {
			s.Neighbors[i] = r.uuid("neighbour")
		}
	}
	s.Addrs = r.addrs("addresses")
	off = r.off
	l := int(r.u8("name length"))
	if r.err == nil && l > MaxNameLen {
		r.fail(ErrMalformed, off, "name of "+itoa(l)+" bytes > "+itoa(MaxNameLen))
	}
	b := r.take(l, "name")
	if r.err == nil && !utf8.Valid(b) {
		r.fail(ErrMalformed, off+1, "name is not UTF-8")
	}
	if r.err == nil && l > 0 {
		s.Name = string(b)
	}
	off = r.off
	switch n := int(r.u8("signature block length")); {
	case r.err != nil || n == 0:
	case n != stateSigSize:
		r.fail(ErrMalformed, off, "signature block of "+itoa(n)+" bytes")
	default:
		copy(s.Key[:], r.take(KeySize, "state key"))
		if sig := r.take(SigSize, "state signature"); r.err == nil {
			s.Sig = append([]byte(nil), sig...)
		}
	}
}

// DecodeStateList decodes a network_state body. It needs 1 to MaxStates
// records and no trailing bytes. The result does not alias b.
func DecodeStateList(b []byte) (StateList, error) {
	r := reader{b: b}
	n := int(r.u16("state count"))
	if r.err == nil && n == 0 {
		r.fail(ErrMalformed, 0, "state count 0")
	}
	if !r.count(n, 0, MaxStates, minStateSize, "state count") {
		return nil, r.err
	}
	out := make(StateList, n)
	for i := range out {
		r.state(&out[i])
		if r.err != nil {
			return nil, r.err
		}
	}
	r.end("state list")
	if r.err != nil {
		return nil, r.err
	}
	return out, nil
}

// DecodeStateRequest decodes a network_state_request body: at most MaxStates
// UUIDs and no trailing bytes. An empty request decodes to nil.
func DecodeStateRequest(b []byte) (StateRequest, error) {
	r := reader{b: b}
	n := int(r.u16("request count"))
	if !r.count(n, 0, MaxStates, 16, "request count") {
		return nil, r.err
	}
	var out StateRequest
	if n > 0 {
		out = make(StateRequest, n)
		for i := range out {
			out[i] = r.uuid("requested origin")
		}
	}
	r.end("state request")
	if r.err != nil {
		return nil, r.err
	}
	return out, nil
}

// DecodeDigest decodes a network_state_digest body: a valid Digest (see
// Digest.Validate) and no trailing bytes.
func DecodeDigest(b []byte) (Digest, error) {
	r := reader{b: b}
	d := Digest{First: r.uuid("digest first"), Last: r.uuid("digest last")}
	n := int(r.u16("digest count"))
	if !r.count(n, 32, MaxStates, DigestEntrySize, "digest count") {
		return Digest{}, r.err
	}
	if n > 0 {
		d.Entries = make([]DigestEntry, n)
		for i := range d.Entries {
			d.Entries[i] = DigestEntry{Origin: r.uuid("digest origin"), Epoch: r.u64("digest epoch"), Seq: r.u64("digest seq")}
		}
	}
	r.end("digest")
	if r.err != nil {
		return Digest{}, r.err
	}
	if err := d.Validate(); err != nil {
		return Digest{}, err
	}
	return d, nil
}

// DecodeEdgeChange decodes a new_edge or destroy_edge body: exactly
// EdgeChangeSize bytes, or EdgeChangeSize+SigSize when signed.
func DecodeEdgeChange(b []byte) (EdgeChange, error) {
	r := reader{b: b}
	c := EdgeChange{
		Origin:    r.uuid("edge origin"),
		Epoch:     r.u64("edge epoch"),
		Seq:       r.u64("edge seq"),
		Peer:      r.uuid("edge peer"),
		FreeSlots: r.u16("edge free slots"),
	}
	if r.err == nil && r.left() == SigSize {
		copy(c.Sig[:], r.take(SigSize, "edge signature"))
		if !c.Signed() {
			r.fail(ErrMalformed, EdgeChangeSize, "zero signature")
		}
	}
	r.end("edge change")
	if r.err != nil {
		return EdgeChange{}, r.err
	}
	return c, nil
}

// DecodeAck decodes an ack body. The SACK bitmap is at most MaxSACKBytes,
// copied out of b, and nil when empty.
func DecodeAck(b []byte) (Ack, error) {
	r := reader{b: b}
	a := Ack{
		StreamEpoch: r.u64("stream epoch"),
		Cum:         r.u32("cumulative index"),
	}
	off := r.off
	n := int(r.u8("SACK length"))
	if r.count(n, off, MaxSACKBytes, 1, "SACK length") && n > 0 {
		a.SACK = append([]byte(nil), r.take(n, "SACK")...)
	}
	r.end("ack")
	if r.err != nil {
		return Ack{}, r.err
	}
	return a, nil
}

// DecodeHello decodes a hello or welcome body. Addresses are copied out of b;
// none decodes to nil. Bytes after the addresses are an Auth.
func DecodeHello(b []byte) (Hello, error) {
	r := reader{b: b}
	h := Hello{FreeSlots: r.u16("free slots")}
	h.Addrs = r.addrs("addresses")
	if r.err == nil && r.left() >= minAuthSize {
		h.Auth = r.auth()
	}
	r.end("hello")
	if r.err != nil {
		return Hello{}, r.err
	}
	return h, nil
}

// minAuthSize is an encoded Auth without MACs or signature: fewer bytes
// after a hello's addresses are trailing bytes, not a truncated Auth.
const minAuthSize = NonceSize + KeySize + 2

// auth reads an Auth, copying it out of the input.
func (r *reader) auth() *Auth {
	a := &Auth{}
	copy(a.Nonce[:], r.take(NonceSize, "nonce"))
	copy(a.Key[:], r.take(KeySize, "key"))
	off := r.off
	n := int(r.u8("MAC count"))
	if r.count(n, off, MaxMACs, MACSize, "MAC count") && n > 0 {
		a.MACs = make([][MACSize]byte, n)
		for i := range a.MACs {
			copy(a.MACs[i][:], r.take(MACSize, "MAC"))
		}
	}
	off = r.off
	l := int(r.u8("signature length"))
	if r.err == nil && l != 0 && l != SigSize {
		r.fail(ErrMalformed, off, "signature of "+itoa(l)+" bytes")
	}
	if b := r.take(l, "signature"); r.err == nil && l > 0 {
		a.Sig = append([]byte(nil), b...)
	}
	if r.err != nil {
		return nil
	}
	return a
}

// DecodeAuth decodes a challenge body: an Auth and no trailing bytes.
func DecodeAuth(b []byte) (*Auth, error) {
	r := reader{b: b}
	a := r.auth()
	r.end("auth")
	if r.err != nil {
		return nil, r.err
	}
	return a, nil
}

// DecodeReject decodes a reject body. The reason must be known. Entry points
// are copied out of b; none decodes to nil.
func DecodeReject(b []byte) (Reject, error) {
	r := reader{b: b}
	rj := Reject{Reason: RejectReason(r.u8("reject reason"))}
	if r.err == nil && !rj.Reason.Valid() {
		r.fail(ErrMalformed, 0, "reject reason "+itoa(int(rj.Reason)))
	}
	rj.EntryPoints = r.addrs("entry points")
	r.end("reject")
	if r.err != nil {
		return Reject{}, r.err
	}
	return rj, nil
}
