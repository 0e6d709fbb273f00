// Package bpack is the part of BinaryPack (peerjs-js-binarypack 2, the
// encoding of peerjs's "binary" serialization) that the WebRTC transport
// needs: it writes raw (binary) values and the chunk maps that carry a
// value too large for one data-channel message, and it reads any BinaryPack
// value, strictly, without trusting a length it has not seen the bytes for,
// and reassembles chunked messages within fixed bounds.
//
// BinaryPack is MessagePack's older cousin with its own type bytes:
//
//	0x00-0x7f  positive fixint        0xe0-0xff  negative fixint
//	0x80-0x8f  fixmap (n pairs)       0x90-0x9f  fixarray (n items)
//	0xa0-0xaf  fixraw (n bytes)       0xb0-0xbf  fixstr (n bytes of UTF-8)
//	0xc0 nil   0xc1 undefined         0xc2 false 0xc3 true
//	0xca float32 0xcb float64         0xcc-0xcf uint8/16/32/64
//	0xd0-0xd3 int8/16/32/64           0xd4-0xd7 undefined (no payload)
//	0xd8/0xd9 str16/str32             0xda/0xdb raw16/raw32
//	0xdc/0xdd array16/array32         0xde/0xdf map16/map32
//
// with big-endian lengths and numbers.
package bpack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// ChunkSize is peerjs's chunkedMTU: a packed value longer than this
// travels in pieces of this many bytes, each wrapped in a chunk map (chosen
// so that browsers that cut messages at 16 KiB still work).
const ChunkSize = 16300

// maxDepth bounds the nesting of a BinaryPack value Unpack reads.
const maxDepth = 16

// MaxPartials bounds the chunked messages an Unpacker reassembles at once,
// forgetting the oldest beyond it. An ordered channel has at most one (a sender sends the chunks of a
// message one after the other); an unordered one may interleave a few.
const MaxPartials = 4

// minChunk is the smallest average chunk an Unpacker reassembles: a
// message may come in at most limit/minChunk+1 chunks, which bounds the
// bookkeeping a peer can make it keep. peerjs sends chunks of 16300 bytes.
const minChunk = 1024

// ErrMalformed is wrapped by Unpack's errors for malformed BinaryPack and
// bad chunks.
var ErrMalformed = errors.New("malformed BinaryPack")

// bpKind is the kind of a decoded BinaryPack value.
type bpKind uint8

const (
	bpNil bpKind = iota // nil and undefined
	bpBool
	bpInt
	bpFloat
	bpString
	bpRaw
	bpArray
	bpMap
)

// bpValue is a decoded BinaryPack value. Strings and raws alias the input.
type bpValue struct {
	kind  bpKind
	num   int64     // bpInt (an unsigned value over MaxInt64 reads as -1); bpBool: 0 or 1
	bytes []byte    // bpString, bpRaw
	items []bpValue // bpArray: the items; bpMap: key, value, key, value...
}

// field returns the value of the map entry whose key is the string key.
func (v bpValue) field(key string) (bpValue, bool) {
	if v.kind != bpMap {
		return bpValue{}, false
	}
	for i := 0; i+1 < len(v.items); i += 2 {
		if k := v.items[i]; k.kind == bpString && string(k.bytes) == key {
			return v.items[i+1], true
		}
	}
	return bpValue{}, false
}

// bpDecode decodes one BinaryPack value that fills b exactly.
func bpDecode(b []byte) (bpValue, error) {
	d := bpDecoder{b: b}
	v, err := d.value(0)
	if err != nil {
		return bpValue{}, err
	}
	if d.off != len(b) {
		return bpValue{}, fmt.Errorf("%w: %d bytes after the value", ErrMalformed, len(b)-d.off)
	}
	return v, nil
}

type bpDecoder struct {
	b   []byte
	off int
}

func (d *bpDecoder) take(n int) ([]byte, error) {
	if n < 0 || n > len(d.b)-d.off {
		return nil, fmt.Errorf("%w: %d bytes wanted at offset %d of %d", ErrMalformed, n, d.off, len(d.b))
	}
	p := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return p, nil
}

// uint reads an n-byte big-endian unsigned number (n is 1, 2, 4 or 8).
func (d *bpDecoder) uint(n int) (uint64, error) {
	p, err := d.take(n)
	if err != nil {
		return 0, err
	}
	var u uint64
	for _, c := range p {
		u = u<<8 | uint64(c)
	}
	return u, nil
}

func (d *bpDecoder) value(depth int) (bpValue, error) {
	if depth > maxDepth {
		return bpValue{}, fmt.Errorf("%w: nested deeper than %d", ErrMalformed, maxDepth)
	}
	t, err := d.uint(1)
	if err != nil {
		return bpValue{}, err
	}
	switch c := byte(t); {
	case c < 0x80:
		return bpValue{kind: bpInt, num: int64(c)}, nil
	case c >= 0xe0:
		return bpValue{kind: bpInt, num: int64(int8(c))}, nil
	case c >= 0xa0 && c <= 0xaf:
		return d.bytes(bpRaw, int(c&0x0f))
	case c >= 0xb0 && c <= 0xbf:
		return d.bytes(bpString, int(c&0x0f))
	case c >= 0x90 && c <= 0x9f:
		return d.list(bpArray, int(c&0x0f), depth)
	case c >= 0x80 && c <= 0x8f:
		return d.list(bpMap, int(c&0x0f), depth)
	}
	switch c := byte(t); c {
	case 0xc0, 0xc1, 0xd4, 0xd5, 0xd6, 0xd7:
		return bpValue{kind: bpNil}, nil
	case 0xc2, 0xc3:
		return bpValue{kind: bpBool, num: int64(c & 1)}, nil
	case 0xca, 0xcb:
		if _, err := d.take(4 << (c & 1)); err != nil {
			return bpValue{}, err
		}
		return bpValue{kind: bpFloat}, nil
	case 0xcc, 0xcd, 0xce, 0xcf:
		u, err := d.uint(1 << (c - 0xcc))
		if err != nil {
			return bpValue{}, err
		}
		n := int64(u)
		if u > 1<<63-1 {
			n = -1
		}
		return bpValue{kind: bpInt, num: n}, nil
	case 0xd0, 0xd1, 0xd2, 0xd3:
		size := 1 << (c - 0xd0)
		u, err := d.uint(size)
		if err != nil {
			return bpValue{}, err
		}
		shift := 64 - 8*size // sign-extend
		return bpValue{kind: bpInt, num: int64(u<<shift) >> shift}, nil
	case 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf:
		n, err := d.uint(2 << ((c - 0xd8) & 1))
		if err != nil {
			return bpValue{}, err
		}
		if n > uint64(len(d.b)) {
			return bpValue{}, fmt.Errorf("%w: length %d in a %d-byte message", ErrMalformed, n, len(d.b))
		}
		switch c {
		case 0xd8, 0xd9:
			return d.bytes(bpString, int(n))
		case 0xda, 0xdb:
			return d.bytes(bpRaw, int(n))
		case 0xdc, 0xdd:
			return d.list(bpArray, int(n), depth)
		default:
			return d.list(bpMap, int(n), depth)
		}
	}
	return bpValue{}, fmt.Errorf("%w: unknown type byte %#x", ErrMalformed, t) // unreachable: every byte is a type
}

func (d *bpDecoder) bytes(kind bpKind, n int) (bpValue, error) {
	p, err := d.take(n)
	if err != nil {
		return bpValue{}, err
	}
	return bpValue{kind: kind, bytes: p}, nil
}

// list reads n items (an array) or n key-value pairs (a map). Every item
// takes at least one byte, so a count the input cannot hold fails before
// anything is allocated for it.
func (d *bpDecoder) list(kind bpKind, n, depth int) (bpValue, error) {
	items := n
	if kind == bpMap {
		items = 2 * n
	}
	if items > len(d.b)-d.off {
		return bpValue{}, fmt.Errorf("%w: %d items in %d bytes", ErrMalformed, items, len(d.b)-d.off)
	}
	v := bpValue{kind: kind, items: make([]bpValue, 0, items)}
	for range items {
		item, err := d.value(depth + 1)
		if err != nil {
			return bpValue{}, err
		}
		v.items = append(v.items, item)
	}
	return v, nil
}

// AppendRawHeader appends the BinaryPack header of an n-byte raw value.
func AppendRawHeader(dst []byte, n int) []byte {
	switch {
	case n <= 0x0f:
		return append(dst, 0xa0|byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, 0xda), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(dst, 0xdb), uint32(n))
	}
}

// appendUint appends a non-negative integer as BinaryPack encodes it.
func appendUint(dst []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(dst, byte(n))
	case n <= 0xff:
		return append(dst, 0xcc, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, 0xcd), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(dst, 0xce), uint32(n))
	}
}

// appendFixstr appends a string of at most 15 bytes.
func appendFixstr(dst []byte, s string) []byte {
	return append(append(dst, 0xb0|byte(len(s))), s...)
}

// RawHeaderLen is the length of the raw header AppendRawHeader writes for n.
func RawHeaderLen(n int) int {
	switch {
	case n <= 0x0f:
		return 1
	case n <= 0xffff:
		return 3
	default:
		return 5
	}
}

// AppendChunk appends the chunk map that peerjs sends for piece n of total
// of the packed message id, the piece being head followed by rest:
//
//	{"__peerData": id, "n": n, "data": <raw piece>, "total": total}
func AppendChunk(dst []byte, id, n, total int, head, rest []byte) []byte {
	dst = append(dst, 0x84)
	dst = appendFixstr(dst, "__peerData")
	dst = appendUint(dst, id)
	dst = appendFixstr(dst, "n")
	dst = appendUint(dst, n)
	dst = appendFixstr(dst, "data")
	dst = AppendRawHeader(dst, len(head)+len(rest))
	dst = append(append(dst, head...), rest...)
	dst = appendFixstr(dst, "total")
	return appendUint(dst, total)
}

// ChunkOverhead bounds the bytes AppendChunk adds to a piece of at most
// ChunkSize bytes with id, n and total below 2^32.
const ChunkOverhead = 1 + 11 + 5 + 2 + 5 + 5 + 3 + 6 + 5

// Result is what one message amounts to.
type Result int

// The results of Unpack.
const (
	// Nothing is a piece of a chunked message not yet complete, or a value
	// that is not a frame.
	Nothing Result = iota
	// Frame is a frame: a raw value, or a string's UTF-8 bytes.
	Frame
	// Close is peerjs's {"__peerData": {"type": "close"}}: the sender asks
	// the receiver to close the connection.
	Close
)

// Unpacker reads the messages of a peerjs "binary" connection: whole
// BinaryPack values and chunk maps, which it reassembles. It holds at most
// MaxPartials messages in reassembly, each of at most the frame limit and a
// raw header. It is not safe for concurrent use.
type Unpacker struct {
	maxFrame int // the largest frame
	limit    int // the largest packed message: maxFrame and its raw header
	partials map[int64]*partial
	order    []int64 // ids in partials, oldest first
}

// partial is a chunked message being reassembled: the pieces before next
// in buf, later ones that came early in pieces.
type partial struct {
	total  int
	size   int
	next   int
	buf    []byte
	pieces map[int][]byte
}

// NewUnpacker returns an Unpacker for frames of at most maxFrame bytes.
func NewUnpacker(maxFrame int) *Unpacker {
	return &Unpacker{maxFrame: maxFrame, limit: maxFrame + RawHeaderLen(maxFrame), partials: make(map[int64]*partial)}
}

// ErrTooLarge is wrapped by Unpack's errors for a frame over the limit.
var ErrTooLarge = errors.New("message over the frame limit")

// Unpack reads one message. A raw value is a frame (returned in a slice of
// its own) and so is a string (its UTF-8 bytes); any other value is
// reported in what as a description, for the caller to log, and otherwise
// ignored. It returns an error for malformed BinaryPack, a bad chunk, or a
// message over the limit.
func (u *Unpacker) Unpack(msg []byte) (frame []byte, r Result, what string, err error) {
	v, err := bpDecode(msg)
	if err != nil {
		return nil, Nothing, "", err
	}
	if pd, ok := v.field("__peerData"); ok {
		switch pd.kind {
		case bpInt:
			return u.chunk(v, pd.num)
		case bpMap:
			if t, ok := pd.field("type"); ok && t.kind == bpString && string(t.bytes) == "close" {
				return nil, Close, "", nil
			}
		}
		return nil, Nothing, "an unknown __peerData message", nil
	}
	return u.value(v)
}

// value turns a complete value into a frame, or describes it.
func (u *Unpacker) value(v bpValue) ([]byte, Result, string, error) {
	switch v.kind {
	case bpRaw, bpString:
		if len(v.bytes) > u.maxFrame {
			return nil, Nothing, "", fmt.Errorf("%w: %d bytes", ErrTooLarge, len(v.bytes))
		}
		return bytes.Clone(v.bytes), Frame, "", nil
	case bpNil:
		return nil, Nothing, "a null value", nil
	case bpBool, bpInt, bpFloat:
		return nil, Nothing, "a number or boolean", nil
	case bpArray:
		return nil, Nothing, "an array", nil
	default:
		return nil, Nothing, "an object", nil
	}
}

// chunk adds one chunk of message id; when the message is complete it is
// decoded as a whole.
func (u *Unpacker) chunk(v bpValue, id int64) ([]byte, Result, string, error) {
	n, nok := v.field("n")
	total, tok := v.field("total")
	data, dok := v.field("data")
	if !nok || !tok || !dok || n.kind != bpInt || total.kind != bpInt || data.kind != bpRaw {
		return nil, Nothing, "", fmt.Errorf("%w: chunk %d lacks n, total or data", ErrMalformed, id)
	}
	if total.num < 1 || total.num > int64(u.limit/minChunk+1) || n.num < 0 || n.num >= total.num {
		return nil, Nothing, "", fmt.Errorf("%w: chunk %d is piece %d of %d", ErrMalformed, id, n.num, total.num)
	}
	p := u.partials[id]
	if p == nil {
		if len(u.order) == MaxPartials {
			// The oldest message will not complete (a sender finishes one
			// message before the next on an ordered channel): forget it.
			delete(u.partials, u.order[0])
			u.order = u.order[1:]
		}
		p = &partial{total: int(total.num), pieces: make(map[int][]byte)}
		u.partials[id] = p
		u.order = append(u.order, id)
	}
	if int(total.num) != p.total {
		return nil, Nothing, "", fmt.Errorf("%w: chunk %d says %d pieces, earlier ones %d", ErrMalformed, id, total.num, p.total)
	}
	i := int(n.num)
	if _, dup := p.pieces[i]; dup || i < p.next {
		return nil, Nothing, "", fmt.Errorf("%w: piece %d of chunk %d twice", ErrMalformed, n.num, id)
	}
	p.size += len(data.bytes)
	if p.size > u.limit {
		return nil, Nothing, "", fmt.Errorf("%w: chunked message %d over %d bytes", ErrTooLarge, id, u.limit)
	}
	if i != p.next {
		p.pieces[i] = bytes.Clone(data.bytes) // early: keep it for later
		return nil, Nothing, "", nil
	}
	if p.buf == nil {
		// Most messages come whole and in order: room for all pieces
		// the size of this one, within the limit.
		p.buf = make([]byte, 0, min(u.limit, p.total*len(data.bytes)))
	}
	p.buf = append(p.buf, data.bytes...)
	for p.next++; ; p.next++ {
		piece, ok := p.pieces[p.next]
		if !ok {
			break
		}
		p.buf = append(p.buf, piece...)
		delete(p.pieces, p.next)
	}
	if p.next < p.total {
		return nil, Nothing, "", nil
	}
	delete(u.partials, id)
	u.order = slices.DeleteFunc(u.order, func(x int64) bool { return x == id })
	whole := p.buf
	w, err := bpDecode(whole)
	if err != nil {
		return nil, Nothing, "", fmt.Errorf("chunked message %d: %w", id, err)
	}
	if _, ok := w.field("__peerData"); ok {
		return nil, Nothing, "a chunked __peerData message", nil
	}
	if (w.kind == bpRaw || w.kind == bpString) && len(w.bytes) <= u.maxFrame {
		// whole is this message's own: the frame can stay in it.
		return w.bytes, Frame, "", nil
	}
	return u.value(w)
}
