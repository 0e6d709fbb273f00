package message

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/testutil"
)

// payloadCodec is one payload type's encoder and decoder, type-erased for tables.
type payloadCodec struct {
	name   string
	decode func([]byte) (any, error)
	encode func(any) []byte
}

var payloadCodecs = []payloadCodec{
	{"StateList",
		func(b []byte) (any, error) { return DecodeStateList(b) },
		func(v any) []byte { return v.(StateList).Append(nil) }},
	{"StateRequest",
		func(b []byte) (any, error) { return DecodeStateRequest(b) },
		func(v any) []byte { return v.(StateRequest).Append(nil) }},
	{"EdgeChange",
		func(b []byte) (any, error) { return DecodeEdgeChange(b) },
		func(v any) []byte { return v.(EdgeChange).Append(nil) }},
	{"Ack",
		func(b []byte) (any, error) { return DecodeAck(b) },
		func(v any) []byte { return v.(Ack).Append(nil) }},
	{"Hello",
		func(b []byte) (any, error) { return DecodeHello(b) },
		func(v any) []byte { return v.(Hello).Append(nil) }},
	{"Reject",
		func(b []byte) (any, error) { return DecodeReject(b) },
		func(v any) []byte { return v.(Reject).Append(nil) }},
	{"Digest",
		func(b []byte) (any, error) { return DecodeDigest(b) },
		func(v any) []byte { return v.(Digest).Append(nil) }},
	{"Auth",
		func(b []byte) (any, error) { return DecodeAuth(b) },
		func(v any) []byte { return v.(*Auth).Append(nil) }},
}

// sampleAuth returns an Auth with n MACs and a signature.
func sampleAuth(n int) *Auth {
	a := &Auth{Nonce: [NonceSize]byte{9}, Key: [KeySize]byte{8}, Sig: bytes.Repeat([]byte{7}, SigSize)}
	for i := range n {
		a.MACs = append(a.MACs, [MACSize]byte{byte(i + 1)})
	}
	return a
}

func codecByName(name string) payloadCodec {
	for _, c := range payloadCodecs {
		if c.name == name {
			return c
		}
	}
	panic(name)
}

// samplePayloads returns valid values of each payload type, including edge cases
// at the limits.
func samplePayloads() map[string][]any {
	many := func(n int) []uuid.UUID {
		out := make([]uuid.UUID, n)
		for i := range out {
			out[i] = fixedUUID(byte(i))
			binary.BigEndian.PutUint16(out[i][14:], uint16(i))
		}
		return out
	}
	maxAddrs := make([]string, MaxAddrs)
	for i := range maxAddrs {
		maxAddrs[i] = strings.Repeat(string(rune('a'+i)), MaxAddrLen)
	}
	return map[string][]any{
		"StateList": {
			StateList{{Origin: fixedUUID(1)}},
			StateList{{Origin: fixedUUID(1), Epoch: 1, Seq: 2, FreeSlots: 3,
				Neighbors: many(3), Addrs: []string{"quic://[::1]:4242", "ünïcødé"}, Name: "render-01 ünï"}},
			StateList{{Origin: fixedUUID(1), Name: strings.Repeat("n", MaxNameLen)}},
			StateList{{Origin: fixedUUID(1), Neighbors: many(MaxNeighbors), Addrs: maxAddrs},
				{Origin: fixedUUID(2), Epoch: ^uint64(0), Seq: ^uint64(0), FreeSlots: ^uint16(0)}},
			StateList{{Origin: fixedUUID(1), Seq: 2, Neighbors: many(2), Key: [KeySize]byte{5}, Sig: bytes.Repeat([]byte{6}, SigSize)},
				{Origin: fixedUUID(2)}},
		},
		"StateRequest": {
			StateRequest(nil),
			StateRequest{fixedUUID(1)},
			StateRequest(many(MaxStates)),
		},
		"EdgeChange": {
			EdgeChange{},
			EdgeChange{Origin: fixedUUID(1), Epoch: 2, Seq: 3, Peer: fixedUUID(4), FreeSlots: 5},
			EdgeChange{Origin: fixedUUID(1), Epoch: 2, Seq: 3, Peer: fixedUUID(4), FreeSlots: 5, Sig: [SigSize]byte{6, 6}},
		},
		"Ack": {
			Ack{},
			Ack{StreamEpoch: 7, Cum: 9999, SACK: []byte{1}},
			Ack{StreamEpoch: ^uint64(0), Cum: ^uint32(0), SACK: bytes.Repeat([]byte{0xff}, MaxSACKBytes)},
		},
		"Hello": {
			Hello{},
			Hello{FreeSlots: 10, Addrs: []string{"mem://n1"}},
			Hello{FreeSlots: ^uint16(0), Addrs: maxAddrs},
			Hello{FreeSlots: 3, Addrs: []string{"mem://n1"}, Auth: &Auth{Nonce: [NonceSize]byte{1}, Key: [KeySize]byte{2}}},
			Hello{Auth: sampleAuth(1)},
		},
		"Auth": {
			&Auth{Nonce: [NonceSize]byte{1}, Key: [KeySize]byte{2}},
			sampleAuth(1),
			sampleAuth(MaxMACs),
		},
		"Digest": {
			Digest{},
			Digest{Last: fixedUUID(9), Entries: []DigestEntry{{Origin: fixedUUID(1), Epoch: 2, Seq: 3}, {Origin: fixedUUID(9), Epoch: ^uint64(0), Seq: ^uint64(0)}}},
			Digest{First: many(1)[0], Last: uuid.Max, Entries: digestOf(many(MaxStates))},
		},
		"Reject": {
			Reject{Reason: RejectFull},
			Reject{Reason: RejectDuplicate},
			Reject{Reason: RejectSelf},
			Reject{Reason: RejectClosing, EntryPoints: []string{"quic://10.0.0.2:4242", "quic://10.0.0.3:4242"}},
			Reject{Reason: RejectFull, EntryPoints: maxAddrs},
		},
	}
}

func validate(v any) error {
	switch v := v.(type) {
	case StateList:
		return v.Validate()
	case StateRequest:
		return v.Validate()
	case Ack:
		return v.Validate()
	case Hello:
		return v.Validate()
	case Reject:
		return v.Validate()
	case Digest:
		return v.Validate()
	case *Auth:
		return v.Validate()
	}
	return nil
}

func TestPayloadRoundTrip(t *testing.T) {
	for name, values := range samplePayloads() {
		c := codecByName(name)
		for i, v := range values {
			if err := validate(v); err != nil {
				t.Fatalf("%s #%d: Validate: %v", name, i, err)
			}
			enc := c.encode(v)
			got, err := c.decode(enc)
			if err != nil {
				t.Fatalf("%s #%d: decode: %v", name, i, err)
			}
			if !reflect.DeepEqual(got, v) {
				t.Fatalf("%s #%d: round trip\n got %+v\nwant %+v", name, i, got, v)
			}
			// Every proper prefix is truncated; a hello's optional Auth
			// or an edge change's signature cut off leaves an unsigned
			// value or trailing bytes.
			optional := name == "Hello" && v.(Hello).Auth != nil || name == "EdgeChange" && v.(EdgeChange).Signed()
			for n := range len(enc) {
				got, err := c.decode(enc[:n])
				if optional && (errors.Is(err, ErrMalformed) || err == nil && !reflect.DeepEqual(got, v)) {
					continue
				}
				if !errors.Is(err, ErrTruncated) {
					t.Fatalf("%s #%d cut to %d of %d: %v, want ErrTruncated", name, i, n, len(enc), err)
				}
			}
			// Any trailing byte is malformed.
			_, err = c.decode(append(enc, 0))
			wantClass(t, err, ErrMalformed)
		}
	}
}

func TestPayloadLayout(t *testing.T) {
	if n := len((EdgeChange{}).Append(nil)); n != 50 || EdgeChangeSize != 50 {
		t.Fatalf("EdgeChange is %d bytes, want 50", n)
	}
	if n := len(StateList{{}}.Append(nil)); n != 2+minStateSize {
		t.Fatalf("minimal StateList is %d bytes", n)
	}
	got := Hello{FreeSlots: 0x0102, Addrs: []string{"ab", "c"}}.Append(nil)
	if want := []byte{1, 2, 2, 2, 'a', 'b', 1, 'c'}; !bytes.Equal(got, want) {
		t.Fatalf("Hello = %x, want %x", got, want)
	}
	got = Reject{Reason: RejectSelf, EntryPoints: []string{"x"}}.Append(nil)
	if want := []byte{3, 1, 1, 'x'}; !bytes.Equal(got, want) {
		t.Fatalf("Reject = %x, want %x", got, want)
	}
	got = Ack{StreamEpoch: 1, Cum: 2, SACK: []byte{3}}.Append(nil)
	if want := []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 1, 3}; !bytes.Equal(got, want) {
		t.Fatalf("Ack = %x, want %x", got, want)
	}
	u := fixedUUID(9)
	got = StateRequest{u}.Append(nil)
	if want := append([]byte{0, 1}, u[:]...); !bytes.Equal(got, want) {
		t.Fatalf("StateRequest = %x, want %x", got, want)
	}
}

// stateBytes builds a State record by hand: origin, epoch, seq, free, then the
// given neighbour count and neighbour bytes, then the raw address section.
func stateBytes(nNeighbors uint16, neighbors []byte, addrs []byte) []byte {
	return namedStateBytes(nNeighbors, neighbors, addrs, []byte{0})
}

// namedStateBytes is stateBytes with the name's bytes (length first).
func namedStateBytes(nNeighbors uint16, neighbors []byte, addrs []byte, name []byte) []byte {
	b := make([]byte, 16+8+8+2)
	b = binary.BigEndian.AppendUint16(b, nNeighbors)
	b = append(b, neighbors...)
	b = append(b, addrs...)
	b = append(b, name...)
	return append(b, 0) // unsigned
}

func u16(n uint16) []byte { return binary.BigEndian.AppendUint16(nil, n) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestPayloadErrors(t *testing.T) {
	okState := stateBytes(0, nil, []byte{0})
	cases := []struct {
		codec string
		name  string
		in    []byte
		class error
	}{
		// StateList
		{"StateList", "empty", nil, ErrTruncated},
		{"StateList", "zero count", u16(0), ErrMalformed},
		{"StateList", "count over limit", cat(u16(MaxStates+1), okState), ErrMalformed},
		{"StateList", "count max u16", cat(u16(0xffff), okState), ErrMalformed},
		{"StateList", "absurd count, few bytes", cat(u16(MaxStates), okState), ErrTruncated},
		{"StateList", "count 2, one state", cat(u16(2), okState), ErrTruncated},
		{"StateList", "neighbours over limit", cat(u16(1), stateBytes(MaxNeighbors+1, nil, []byte{0})), ErrMalformed},
		{"StateList", "neighbours max u16", cat(u16(1), stateBytes(0xffff, nil, []byte{0})), ErrMalformed},
		{"StateList", "neighbours claimed, absent", cat(u16(1), stateBytes(1000, make([]byte, 32), []byte{0})), ErrTruncated},
		{"StateList", "addrs over limit", cat(u16(1), stateBytes(0, nil, []byte{MaxAddrs + 1})), ErrMalformed},
		{"StateList", "addrs absurd", cat(u16(1), stateBytes(0, nil, []byte{0xff})), ErrMalformed},
		{"StateList", "addrs claimed, absent", cat(u16(1), stateBytes(0, nil, []byte{3, 1, 'a'})), ErrTruncated},
		{"StateList", "empty addr", cat(u16(1), stateBytes(0, nil, []byte{1, 0, 'a'})), ErrMalformed},
		{"StateList", "addr not UTF-8", cat(u16(1), stateBytes(0, nil, []byte{1, 2, 0xc3, 0x28})), ErrMalformed},
		{"StateList", "addr length beyond end", cat(u16(1), stateBytes(0, nil, []byte{1, 9, 'a', 'b'})), ErrTruncated},
		{"StateList", "trailing", cat(u16(1), okState, []byte{0}), ErrMalformed},
		{"StateList", "signature block of 5", cat(u16(1), okState[:len(okState)-1], []byte{5, 1, 2, 3, 4, 5}), ErrMalformed},
		{"StateList", "signature block cut", cat(u16(1), okState[:len(okState)-1], []byte{KeySize + SigSize}, make([]byte, 40)), ErrTruncated},
		{"EdgeChange", "signature cut", make([]byte, EdgeChangeSize+SigSize-1), ErrMalformed},
		{"EdgeChange", "zero signature", make([]byte, EdgeChangeSize+SigSize), ErrMalformed},
		{"StateList", "second state bad", cat(u16(2), okState, stateBytes(0, nil, []byte{1, 0, 'a'})), ErrMalformed},
		{"StateList", "name over limit", cat(u16(1), namedStateBytes(0, nil, []byte{0}, append([]byte{MaxNameLen + 1}, make([]byte, MaxNameLen+1)...))), ErrMalformed},
		{"StateList", "name not UTF-8", cat(u16(1), namedStateBytes(0, nil, []byte{0}, []byte{2, 0xc3, 0x28})), ErrMalformed},
		{"StateList", "name beyond end", cat(u16(1), namedStateBytes(0, nil, []byte{0}, []byte{5, 'a'})), ErrTruncated},
		{"StateList", "no name length", cat(u16(1), namedStateBytes(0, nil, []byte{0}, nil)), ErrTruncated},
		// StateRequest
		{"StateRequest", "empty", nil, ErrTruncated},
		{"StateRequest", "one byte", []byte{0}, ErrTruncated},
		{"StateRequest", "count over limit", u16(MaxStates + 1), ErrMalformed},
		{"StateRequest", "absurd count", u16(MaxStates), ErrTruncated},
		{"StateRequest", "partial uuid", cat(u16(1), make([]byte, 15)), ErrTruncated},
		{"StateRequest", "trailing", cat(u16(1), make([]byte, 17)), ErrMalformed},
		{"StateRequest", "trailing after empty", cat(u16(0), make([]byte, 16)), ErrMalformed},
		// EdgeChange
		{"EdgeChange", "empty", nil, ErrTruncated},
		{"EdgeChange", "49 bytes", make([]byte, 49), ErrTruncated},
		{"EdgeChange", "51 bytes", make([]byte, 51), ErrMalformed},
		// Ack
		{"Ack", "empty", nil, ErrTruncated},
		{"Ack", "no sack length", make([]byte, 12), ErrTruncated},
		{"Ack", "sack over limit", cat(make([]byte, 12), []byte{MaxSACKBytes + 1}, make([]byte, MaxSACKBytes+1)), ErrMalformed},
		{"Ack", "sack 255", cat(make([]byte, 12), []byte{255}), ErrMalformed},
		{"Ack", "sack short", cat(make([]byte, 12), []byte{10}, make([]byte, 5)), ErrTruncated},
		{"Ack", "trailing", cat(make([]byte, 12), []byte{1, 1, 1}), ErrMalformed},
		// Hello
		{"Hello", "empty", nil, ErrTruncated},
		{"Hello", "no addr count", []byte{0, 1}, ErrTruncated},
		{"Hello", "addrs over limit", []byte{0, 1, MaxAddrs + 1}, ErrMalformed},
		{"Hello", "addrs claimed", []byte{0, 1, 2, 1, 'a'}, ErrTruncated},
		{"Hello", "empty addr", []byte{0, 1, 1, 0, 'a'}, ErrMalformed},
		{"Hello", "empty addr at end", []byte{0, 1, 1, 0}, ErrTruncated},
		{"Hello", "bad utf8", []byte{0, 1, 1, 1, 0xff}, ErrMalformed},
		{"Hello", "overlong utf8", []byte{0, 1, 1, 2, 0xc0, 0x80}, ErrMalformed},
		{"Hello", "surrogate", []byte{0, 1, 1, 3, 0xed, 0xa0, 0x80}, ErrMalformed},
		{"Hello", "trailing", []byte{0, 1, 0, 0}, ErrMalformed},
		// Reject
		{"Reject", "empty", nil, ErrTruncated},
		{"Reject", "reason 0", []byte{0, 0}, ErrMalformed},
		{"Reject", "reason 6", []byte{6, 0}, ErrMalformed},
		{"Auth", "short", make([]byte, NonceSize+KeySize), ErrTruncated},
		{"Auth", "too many MACs", append(make([]byte, NonceSize+KeySize), MaxMACs+1), ErrMalformed},
		{"Auth", "signature of 3 bytes", append(make([]byte, NonceSize+KeySize), 0, 3, 1, 2, 3), ErrMalformed},
		{"Auth", "trailing", append(make([]byte, NonceSize+KeySize), 0, 0, 1), ErrMalformed},
		{"Reject", "reason 255", []byte{255, 0}, ErrMalformed},
		{"Reject", "no count", []byte{1}, ErrTruncated},
		{"Reject", "count over limit", []byte{1, MaxAddrs + 1}, ErrMalformed},
		{"Reject", "empty entry", []byte{1, 1, 0, 'a'}, ErrMalformed},
		{"Reject", "trailing", []byte{1, 0, 0}, ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.codec+"/"+tc.name, func(t *testing.T) {
			v, err := codecByName(tc.codec).decode(tc.in)
			wantClass(t, err, tc.class)
			if !reflect.ValueOf(v).IsZero() {
				t.Fatalf("failed decode returned non-zero %+v", v)
			}
		})
	}
}

func TestPayloadValidate(t *testing.T) {
	long := strings.Repeat("x", MaxAddrLen+1)
	tooMany := make([]string, MaxAddrs+1)
	for i := range tooMany {
		tooMany[i] = "a"
	}
	cases := []struct {
		name string
		v    any
	}{
		{"empty state list", StateList{}},
		{"too many states", make(StateList, MaxStates+1)},
		{"too many neighbours", StateList{{Neighbors: make([]uuid.UUID, MaxNeighbors+1)}}},
		{"state addr empty", StateList{{Addrs: []string{""}}}},
		{"state name too long", StateList{{Name: strings.Repeat("n", MaxNameLen+1)}}},
		{"too many requested", make(StateRequest, MaxStates+1)},
		{"sack too long", Ack{SACK: make([]byte, MaxSACKBytes+1)}},
		{"hello too many addrs", Hello{Addrs: tooMany}},
		{"hello addr too long", Hello{Addrs: []string{long}}},
		{"hello addr not utf8", Hello{Addrs: []string{"\xff"}}},
		{"reject reason 0", Reject{}},
		{"reject reason 9", Reject{Reason: 9}},
		{"reject entry empty", Reject{Reason: RejectFull, EntryPoints: []string{""}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantClass(t, validate(tc.v), ErrMalformed)
		})
	}
}

func TestPayloadNoAlias(t *testing.T) {
	in := StateList{{Origin: fixedUUID(1), Neighbors: []uuid.UUID{fixedUUID(2)}, Addrs: []string{"mem://a"}}}
	enc := in.Append(nil)
	sl, err := DecodeStateList(enc)
	if err != nil {
		t.Fatal(err)
	}
	ack := Ack{SACK: []byte{1, 2, 3}}.Append(nil)
	a, err := DecodeAck(ack)
	if err != nil {
		t.Fatal(err)
	}
	hb := Hello{Addrs: []string{"mem://h"}}.Append(nil)
	h, err := DecodeHello(hb)
	if err != nil {
		t.Fatal(err)
	}
	rb := Reject{Reason: RejectFull, EntryPoints: []string{"mem://r"}}.Append(nil)
	r, err := DecodeReject(rb)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{enc, ack, hb, rb} {
		for i := range b {
			b[i] = 'Z'
		}
	}
	if !reflect.DeepEqual(sl, in) {
		t.Fatalf("StateList changed with its input: %+v", sl)
	}
	if !bytes.Equal(a.SACK, []byte{1, 2, 3}) || h.Addrs[0] != "mem://h" || r.EntryPoints[0] != "mem://r" {
		t.Fatalf("decoded payload aliases its input: %v %v %v", a.SACK, h.Addrs, r.EntryPoints)
	}
}

func TestPayloadRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(testutil.Seed(t), 1))
	gens := map[string]func(*rand.Rand) any{
		"StateList":    func(r *rand.Rand) any { return randStateList(r) },
		"StateRequest": func(r *rand.Rand) any { return randStateRequest(r) },
		"EdgeChange":   func(r *rand.Rand) any { return randEdgeChange(r) },
		"Ack":          func(r *rand.Rand) any { return randAck(r) },
		"Hello":        func(r *rand.Rand) any { return randHello(r) },
		"Reject":       func(r *rand.Rand) any { return randReject(r) },
	}
	for name, gen := range gens {
		c := codecByName(name)
		for i := range 300 {
			v := gen(rng)
			if err := validate(v); err != nil {
				t.Fatalf("%s #%d: generated invalid value: %v", name, i, err)
			}
			enc := c.encode(v)
			got, err := c.decode(enc)
			if err != nil {
				t.Fatalf("%s #%d: %v", name, i, err)
			}
			if !reflect.DeepEqual(got, v) {
				t.Fatalf("%s #%d: round trip\n got %+v\nwant %+v", name, i, got, v)
			}
			// Corrupt one byte: the decoder either fails with a classified error
			// or returns a value that encodes back to exactly the input.
			enc[rng.IntN(len(enc))] ^= byte(1 + rng.IntN(255))
			if got, err := c.decode(enc); err != nil {
				if !isSentinel(err) {
					t.Fatalf("%s #%d: unclassified error %v", name, i, err)
				}
			} else if !bytes.Equal(c.encode(got), enc) {
				t.Fatalf("%s #%d: corrupted input decoded to a value that encodes differently", name, i)
			}
		}
	}
}

// digestOf makes sorted digest entries for ids.
func digestOf(ids []uuid.UUID) []DigestEntry {
	out := make([]DigestEntry, len(ids))
	for i, id := range ids {
		out[i] = DigestEntry{Origin: id, Epoch: uint64(i), Seq: uint64(i) * 3}
	}
	slices.SortFunc(out, func(a, b DigestEntry) int { return compareUUID(a.Origin, b.Origin) })
	return out
}
