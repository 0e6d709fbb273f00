package message

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/testutil"
)

// sampleMessages returns one valid message of every type, with its payload.
func sampleMessages() []Message {
	src := fixedUUID(0x10)
	dst := fixedUUID(0x80)
	body := func(t Type) []byte {
		switch t {
		case TypeHello, TypeWelcome:
			return Hello{FreeSlots: 7, Addrs: []string{"quic://10.0.0.1:4242", "webrtc://peerjs/abc"}}.Append(nil)
		case TypeReject:
			return Reject{Reason: RejectFull, EntryPoints: []string{"quic://10.0.0.9:4242"}}.Append(nil)
		case TypeNetworkState:
			return StateList{{Origin: src, Epoch: 3, Seq: 9, FreeSlots: 2,
				Neighbors: []uuid.UUID{fixedUUID(1), fixedUUID(2)}, Addrs: []string{"mem://a"}}}.Append(nil)
		case TypeNetworkStateRequest:
			return StateRequest{fixedUUID(1)}.Append(nil)
		case TypeNewEdge, TypeDestroyEdge:
			return EdgeChange{Origin: src, Epoch: 3, Seq: 10, Peer: fixedUUID(3), FreeSlots: 1}.Append(nil)
		case TypeMsg, TypeMsgBroadcast:
			return []byte("hello, mesh")
		case TypeAck:
			return Ack{StreamEpoch: 3, Cum: 9998, SACK: []byte{0b101}}.Append(nil)
		}
		return nil
	}
	var out []Message
	for t := TypeHello; t <= typeMax; t++ {
		m := Message{
			UID:    UID{Node: src, Index: 0},
			Header: Header{Type: t, HopLimit: 1, Epoch: 3},
			Body:   body(t),
		}
		switch t {
		case TypeMsg, TypeMsgBroadcast:
			m.UID.Index = 9999
			m.Header.Target = dst
			m.Header.HopLimit = 32
			m.Header.Ref = 9990
		case TypeAck:
			m.UID.Index = AckIndex
			m.Header.Target = dst
			m.Header.HopLimit = 32
			m.Header.Flags = FlagBroadcastStream
		}
		out = append(out, m)
	}
	return out
}

func TestRoundTripEveryType(t *testing.T) {
	for _, m := range sampleMessages() {
		t.Run(m.Header.Type.String(), func(t *testing.T) {
			if err := m.Validate(0); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			frame := m.Encode()
			if len(frame) != HeaderSize+len(m.Body) || cap(frame) != len(frame) {
				t.Fatalf("Encode: len %d cap %d, want %d", len(frame), cap(frame), HeaderSize+len(m.Body))
			}
			if got := m.Append([]byte("xy")); !bytes.Equal(got[2:], frame) || string(got[:2]) != "xy" {
				t.Fatalf("Append does not append the same frame")
			}
			// In place: the body already sits after room for the header.
			buf := make([]byte, HeaderSize+len(m.Body))
			copy(buf[HeaderSize:], m.Body)
			inPlace := m
			inPlace.Body = buf[HeaderSize:]
			if h := inPlace.AppendHeader(buf[:0]); len(h) != HeaderSize || &h[0] != &buf[0] || !bytes.Equal(buf, frame) {
				t.Fatalf("AppendHeader in place: %x, want %x", buf, frame)
			}
			got, err := Decode(frame, 0)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !sameMessage(got, m) {
				t.Fatalf("Decode = %+v, want %+v", got, m)
			}
			uid, h, n, err := DecodeHeader(frame)
			if err != nil || uid != m.UID || h != m.Header || n != len(m.Body) {
				t.Fatalf("DecodeHeader = %v %v %d %v", uid, h, n, err)
			}
			// The header alone is enough for DecodeHeader.
			if _, _, n2, err := DecodeHeader(frame[:HeaderSize]); err != nil || n2 != n {
				t.Fatalf("DecodeHeader(header only) = %d, %v", n2, err)
			}
		})
	}
}

func TestWireLayout(t *testing.T) {
	m := Message{
		UID: UID{Node: fixedUUID(0x10), Index: -1},
		Header: Header{Type: TypeAck, Flags: FlagBroadcastStream, HopLimit: 0x20,
			Target: fixedUUID(0x80), Epoch: 0x0102030405060708, Ref: 0x0a0b0c0d},
		Body: []byte{0xee, 0xff},
	}
	f := m.Encode()
	want := []byte{Version, 11, 1, 0x20}
	u := fixedUUID(0x10)
	want = append(want, u[:]...)
	want = append(want, 0xff, 0xff, 0xff, 0xff)
	v := fixedUUID(0x80)
	want = append(want, v[:]...)
	want = append(want, 1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d, 0, 0, 0, 2, 0xee, 0xff)
	if !bytes.Equal(f, want) {
		t.Fatalf("frame\n got %x\nwant %x", f, want)
	}
}

func TestDecodeBodyAliases(t *testing.T) {
	m := Message{UID: UID{Index: 1}, Header: Header{Type: TypeMsg}, Body: []byte("abc")}
	f := m.Encode()
	got, err := Decode(f, 0)
	if err != nil {
		t.Fatal(err)
	}
	f[HeaderSize] = 'X'
	if string(got.Body) != "Xbc" {
		t.Fatalf("Body does not alias the frame: %q", got.Body)
	}
	if cap(got.Body) != len(got.Body) {
		t.Fatalf("Body cap %d, want %d (appending must not write into the frame)", cap(got.Body), len(got.Body))
	}
	// An empty body is non-nil.
	m.Body = nil
	got, err = Decode(m.Encode(), 0)
	if err != nil || got.Body == nil || len(got.Body) != 0 {
		t.Fatalf("empty body: %v %v", got.Body, err)
	}
}

// mutate returns a copy of the valid frame f changed by fn.
func mutate(f []byte, fn func([]byte) []byte) []byte {
	return fn(append([]byte(nil), f...))
}

func TestDecodeErrors(t *testing.T) {
	data := Message{UID: UID{Node: fixedUUID(1), Index: 5}, Header: Header{Type: TypeMsg, HopLimit: 8},
		Body: bytes.Repeat([]byte{7}, 64)}
	valid := data.Encode()
	ack := Message{UID: UID{Node: fixedUUID(1), Index: AckIndex}, Header: Header{Type: TypeAck},
		Body: Ack{Cum: 1}.Append(nil)}
	validAck := ack.Encode()
	setIndex := func(i int32) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint32(b[offIndex:], uint32(i)); return b }
	}
	setByte := func(off int, v byte) func([]byte) []byte {
		return func(b []byte) []byte { b[off] = v; return b }
	}
	setLen := func(n uint32) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint32(b[offBodyLen:], n); return b }
	}
	cases := []struct {
		name    string
		frame   []byte
		maxBody int
		class   error
		offset  int
	}{
		{"nil", nil, 0, ErrTruncated, 0},
		{"one byte", []byte{1}, 0, ErrTruncated, 1},
		{"header minus one", valid[:HeaderSize-1], 0, ErrTruncated, HeaderSize - 1},
		{"header only", valid[:HeaderSize], 0, ErrTruncated, HeaderSize},
		{"body short by one", valid[:len(valid)-1], 0, ErrTruncated, len(valid) - 1},
		{"length max u32", mutate(valid, setLen(math.MaxUint32)), 0, ErrTruncated, len(valid)},
		{"version 0", mutate(valid, setByte(offVersion, 0)), 0, ErrVersion, offVersion},
		{"version 1 (before the digest)", mutate(valid, setByte(offVersion, 1)), 0, ErrVersion, offVersion},
		{"version 3", mutate(valid, setByte(offVersion, 3)), 0, ErrVersion, offVersion},
		{"version 255", mutate(valid, setByte(offVersion, 255)), 0, ErrVersion, offVersion},
		{"type 0", mutate(valid, setByte(offType, 0)), 0, ErrType, offType},
		{"type 13", mutate(valid, setByte(offType, byte(typeMax)+1)), 0, ErrType, offType},
		{"type 255", mutate(valid, setByte(offType, 255)), 0, ErrType, offType},
		{"flag bit 3", mutate(valid, setByte(offFlags, 8)), 0, ErrMalformed, offFlags},
		{"flag bit 7", mutate(valid, setByte(offFlags, 0x81)), 0, ErrMalformed, offFlags},
		{"over maxBody", valid, 63, ErrTooLarge, offBodyLen},
		{"at maxBody", valid, 64, nil, 0},
		{"negative maxBody is default", valid, -1, nil, 0},
		{"trailing byte", append(append([]byte(nil), valid...), 0), 0, ErrMalformed, len(valid)},
		{"trailing header", append(append([]byte(nil), valid...), valid...), 0, ErrMalformed, len(valid)},
		{"ack index 0", mutate(validAck, setIndex(0)), 0, ErrMalformed, offIndex},
		{"ack index 5", mutate(validAck, setIndex(5)), 0, ErrMalformed, offIndex},
		{"ack index -2", mutate(validAck, setIndex(-2)), 0, ErrMalformed, offIndex},
		{"msg index -1", mutate(valid, setIndex(-1)), 0, ErrMalformed, offIndex},
		{"broadcast index min", mutate(mutate(valid, setByte(offType, byte(TypeMsgBroadcast))), setIndex(math.MinInt32)), 0, ErrMalformed, offIndex},
		{"msg index max", mutate(valid, setIndex(math.MaxInt32)), 0, nil, 0},
		{"control index -1", mutate(mutate(valid, setByte(offType, byte(TypeKeepalive))), setIndex(-1)), 0, nil, 0},
		// Order of checks: the first failing check wins.
		{"truncated beats version", mutate(valid, setByte(offVersion, 9))[:HeaderSize+1], 0, ErrTruncated, HeaderSize + 1},
		{"version beats type", mutate(mutate(valid, setByte(offVersion, 9)), setByte(offType, 0)), 0, ErrVersion, offVersion},
		{"type beats flags", mutate(mutate(valid, setByte(offType, 0)), setByte(offFlags, 0xff)), 0, ErrType, offType},
		{"flags beat size", mutate(valid, setByte(offFlags, 0xff)), 1, ErrMalformed, offFlags},
		{"size beats trailing", append(append([]byte(nil), valid...), 0), 1, ErrTooLarge, offBodyLen},
		{"trailing beats index", append(mutate(valid, setIndex(-1)), 0), 0, ErrMalformed, len(valid)},
		{"size beats index", mutate(valid, setIndex(-1)), 1, ErrTooLarge, offBodyLen},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode(tc.frame, tc.maxBody)
			if tc.class == nil {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				return
			}
			wantClass(t, err, tc.class)
			if !sameMessage(m, Message{}) {
				t.Fatalf("failed Decode returned %+v, want zero Message", m)
			}
			var de *DecodeError
			errors.As(err, &de)
			if de.Offset != tc.offset {
				t.Fatalf("offset %d, want %d (%v)", de.Offset, tc.offset, err)
			}
		})
	}
}

func TestDecodeTooLargeDefault(t *testing.T) {
	m := Message{UID: UID{Index: 1}, Header: Header{Type: TypeMsg}, Body: make([]byte, DefaultMaxBody+1)}
	_, err := Decode(m.Encode(), 0)
	wantClass(t, err, ErrTooLarge)
	wantClass(t, m.Validate(0), ErrTooLarge)
	m.Body = m.Body[:DefaultMaxBody]
	if _, err := Decode(m.Encode(), 0); err != nil {
		t.Fatalf("body of exactly DefaultMaxBody: %v", err)
	}
	if _, err := Decode(append(m.Encode(), 0), 0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing byte after maximal body: %v", err)
	}
}

func TestDecodeTruncatedEveryLength(t *testing.T) {
	for _, m := range sampleMessages() {
		f := m.Encode()
		for n := range len(f) {
			if _, err := Decode(f[:n], 0); !errors.Is(err, ErrTruncated) {
				t.Fatalf("%v cut to %d of %d bytes: %v, want ErrTruncated", m.Header.Type, n, len(f), err)
			}
		}
		for n := range HeaderSize {
			if _, _, _, err := DecodeHeader(f[:n]); !errors.Is(err, ErrTruncated) {
				t.Fatalf("DecodeHeader %v cut to %d: %v", m.Header.Type, n, err)
			}
		}
	}
}

func TestDecodeHeaderErrors(t *testing.T) {
	valid := (&Message{UID: UID{Index: 3}, Header: Header{Type: TypeMsg}, Body: []byte("xyz")}).Encode()
	cases := []struct {
		name  string
		frame []byte
		class error
	}{
		{"short", valid[:10], ErrTruncated},
		{"version", mutate(valid, func(b []byte) []byte { b[0] = Version + 1; return b }), ErrVersion},
		{"type", mutate(valid, func(b []byte) []byte { b[1] = 0; return b }), ErrType},
		{"flags", mutate(valid, func(b []byte) []byte { b[2] = 8; return b }), ErrMalformed},
		{"data index", mutate(valid, func(b []byte) []byte { b[offIndex] = 0x80; return b }), ErrMalformed},
		{"ack index", mutate(valid, func(b []byte) []byte { b[offType] = byte(TypeAck); return b }), ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			uid, h, n, err := DecodeHeader(tc.frame)
			wantClass(t, err, tc.class)
			if uid != (UID{}) || h != (Header{}) || n != 0 {
				t.Fatalf("failed DecodeHeader returned %v %v %d", uid, h, n)
			}
		})
	}
	// DecodeHeader neither reads nor checks the body.
	for _, f := range [][]byte{valid[:HeaderSize], valid[:HeaderSize+1], append(append([]byte(nil), valid...), 1, 2)} {
		if _, _, n, err := DecodeHeader(f); err != nil || n != 3 {
			t.Fatalf("DecodeHeader(%d bytes) = %d, %v", len(f), n, err)
		}
	}
}

func TestMessageValidate(t *testing.T) {
	cases := []struct {
		name  string
		m     Message
		class error
	}{
		{"ok", Message{UID: UID{Index: 0}, Header: Header{Type: TypeMsg}}, nil},
		{"type", Message{Header: Header{Type: 0}}, ErrType},
		{"flags", Message{Header: Header{Type: TypeAck, Flags: 8}, UID: UID{Index: -1}}, ErrMalformed},
		{"ack index", Message{Header: Header{Type: TypeAck}}, ErrMalformed},
		{"msg index", Message{Header: Header{Type: TypeMsg}, UID: UID{Index: -7}}, ErrMalformed},
		{"size", Message{Header: Header{Type: TypeMsg}, Body: make([]byte, 11)}, ErrTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.Validate(10)
			_, derr := Decode(tc.m.Encode(), 10)
			if tc.class == nil {
				if err != nil || derr != nil {
					t.Fatalf("Validate %v, Decode %v", err, derr)
				}
				return
			}
			wantClass(t, err, tc.class)
			wantClass(t, derr, tc.class)
		})
	}
}

func TestTypeAndFlags(t *testing.T) {
	names := map[string]bool{}
	for ty := Type(0); ty < 255; ty++ {
		if ty.Valid() != (ty.String() != "unknown") {
			t.Fatalf("type %d: Valid %v, String %q", ty, ty.Valid(), ty.String())
		}
		if ty.Valid() {
			if names[ty.String()] {
				t.Fatalf("duplicate name %q", ty.String())
			}
			names[ty.String()] = true
		}
		if ty.IsData() != (ty == TypeMsg || ty == TypeMsgBroadcast) {
			t.Fatalf("type %v: IsData %v", ty, ty.IsData())
		}
	}
	if len(names) != int(typeMax) {
		t.Fatalf("%d named types, want %d", len(names), typeMax)
	}
	if !Flags(0).Valid() || !FlagBroadcastStream.Valid() || !FlagSealed.Valid() || !FlagCongestion.Valid() || Flags(8).Valid() {
		t.Fatal("Flags.Valid")
	}
}

func TestDecodeError(t *testing.T) {
	_, err := Decode([]byte{1, 2, 3}, 0)
	var de *DecodeError
	if !errors.As(err, &de) || de.Err != ErrTruncated || de.Offset != 3 {
		t.Fatalf("got %#v", err)
	}
	want := "message: truncated: header needs 56 bytes, 3 present (offset 3)"
	if err.Error() != want {
		t.Fatalf("Error() = %q, want %q", err.Error(), want)
	}
	if (&DecodeError{Err: ErrMalformed, Offset: 2}).Error() != "message: malformed (offset 2)" {
		t.Fatal("Error() without detail")
	}
}

func TestRandomRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(testutil.Seed(t), 0))
	buf := make([]byte, 0, 4096)
	for i := range 2000 {
		m := randMessage(rng)
		if err := m.Validate(0); err != nil {
			t.Fatalf("#%d: random message invalid: %v", i, err)
		}
		buf = m.Append(buf[:0])
		got, err := Decode(buf, 0)
		if err != nil {
			t.Fatalf("#%d %v: Decode: %v", i, m.Header.Type, err)
		}
		if !sameMessage(got, m) {
			t.Fatalf("#%d: round trip\n got %+v\nwant %+v", i, got.Header, m.Header)
		}
		if !bytes.Equal(got.Encode(), buf) {
			t.Fatalf("#%d: re-encoding differs", i)
		}
		if err := checkPayload(got); err != nil {
			t.Fatalf("#%d %v: payload: %v", i, m.Header.Type, err)
		}
		// Any single corrupted byte either still decodes to a valid message or
		// yields a classified error; it never panics.
		c := append([]byte(nil), buf...)
		c[rng.IntN(len(c))] ^= byte(1 + rng.IntN(255))
		if m2, err := Decode(c, 0); err != nil {
			if !isSentinel(err) {
				t.Fatalf("#%d: unclassified error %v", i, err)
			}
		} else if m2.Validate(0) != nil {
			t.Fatalf("#%d: Decode accepted a frame Validate rejects", i)
		}
	}
}

// checkPayload decodes m's body with the decoder for its type and checks that
// re-encoding gives the same bytes.
func checkPayload(m Message) error {
	var enc []byte
	switch m.Header.Type {
	case TypeHello, TypeWelcome:
		v, err := DecodeHello(m.Body)
		if err != nil {
			return err
		}
		enc = v.Append(nil)
	case TypeReject:
		v, err := DecodeReject(m.Body)
		if err != nil {
			return err
		}
		enc = v.Append(nil)
	case TypeNetworkState:
		v, err := DecodeStateList(m.Body)
		if err != nil {
			return err
		}
		enc = v.Append(nil)
	case TypeNetworkStateRequest:
		v, err := DecodeStateRequest(m.Body)
		if err != nil {
			return err
		}
		enc = v.Append(nil)
	case TypeNewEdge, TypeDestroyEdge:
		v, err := DecodeEdgeChange(m.Body)
		if err != nil {
			return err
		}
		enc = v.Append(nil)
	case TypeAck:
		v, err := DecodeAck(m.Body)
		if err != nil {
			return err
		}
		enc = v.Append(nil)
	default:
		enc = m.Body
	}
	if !bytes.Equal(enc, m.Body) {
		return errors.New("payload re-encoding differs")
	}
	return nil
}

func TestNoAllocs(t *testing.T) {
	m := sampleMessages()[TypeMsg-1]
	frame := m.Encode()
	buf := make([]byte, 0, 1024)
	var sink Message
	cases := map[string]func(){
		"Append": func() { buf = m.Append(buf[:0]) },
		"DecodeHeader": func() {
			uid, h, _, err := DecodeHeader(frame)
			if err != nil {
				panic(err)
			}
			sink.UID, sink.Header = uid, h
		},
		"Decode": func() {
			var err error
			if sink, err = Decode(frame, 0); err != nil {
				panic(err)
			}
		},
		"Validate": func() {
			if err := m.Validate(0); err != nil {
				panic(err)
			}
		},
	}
	for name, fn := range cases {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", name, n)
		}
	}
}

// SealInto gives what Seal gives, in dst when it is large enough, whatever
// dst held before.
func TestSealInto(t *testing.T) {
	frame := (&Message{Header: Header{Type: TypeMsg}, Body: []byte("body")}).Encode()
	want := Seal(frame, 24)
	dirty := bytes.Repeat([]byte{0xAB}, len(want)+10)
	cases := []struct {
		name   string
		dst    []byte
		inside bool
	}{
		{"nil", nil, false},
		{"too small", make([]byte, len(want)-1), false},
		{"exact", make([]byte, len(want)), true},
		{"dirty and larger", dirty, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := SealInto(c.dst, frame, 24)
			if !bytes.Equal(got, want) {
				t.Fatalf("SealInto = %x, want %x", got, want)
			}
			if in := c.dst != nil && cap(c.dst) > 0 && &got[0] == &c.dst[:1][0]; in != c.inside {
				t.Fatalf("written into dst: %v, want %v", in, c.inside)
			}
		})
	}
}

// SealHeader gives Seal's header and length, and leaves the body to the
// caller.
func TestSealHeader(t *testing.T) {
	frame := (&Message{Header: Header{Type: TypeMsg}, Body: []byte("body")}).Encode()
	want := Seal(frame, 24)
	got := SealHeader(bytes.Repeat([]byte{0xAB}, 100), frame, 24)
	if len(got) != len(want) || !bytes.Equal(got[:HeaderSize], want[:HeaderSize]) {
		t.Fatalf("SealHeader = %x, want the header of %x", got, want)
	}
}
