package message

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode and DecodeHeader. Neither may
// panic; every error must be a classified *DecodeError; an accepted frame must
// re-encode to exactly the same bytes (the format has one encoding per message)
// and decode again to the same message. The seed corpus is in
// testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(m.Encode())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data, 0)
		uid, h, n, herr := DecodeHeader(data)
		if herr != nil && !isSentinel(herr) {
			t.Fatalf("DecodeHeader: unclassified error %v", herr)
		}
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("Decode: unclassified error %v", err)
			}
			return
		}
		if herr != nil {
			t.Fatalf("Decode accepted a frame DecodeHeader rejects: %v", herr)
		}
		if uid != m.UID || h != m.Header || n != len(m.Body) {
			t.Fatalf("DecodeHeader disagrees with Decode")
		}
		if err := m.Validate(0); err != nil {
			t.Fatalf("Decode accepted a message Validate rejects: %v", err)
		}
		enc := m.Encode()
		if !bytes.Equal(enc, data) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", data, enc)
		}
		m2, err := Decode(enc, 0)
		if err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		if !sameMessage(m, m2) {
			t.Fatalf("re-decoding gives %+v, want %+v", m2, m)
		}
		// A body payload must not make the payload decoders misbehave either.
		_ = checkPayload(m)
	})
}

// FuzzPayloads feeds arbitrary bytes to the payload decoder chosen by kind
// (modulo the number of payload types, in the order of payloadCodecs). A
// decoder may not panic, must classify its errors, and on success its value
// must encode back to exactly the input, pass Validate, and decode again to an
// equal value. The seed corpus is in testdata/fuzz/FuzzPayloads.
func FuzzPayloads(f *testing.F) {
	for i, c := range payloadCodecs {
		for _, v := range samplePayloads()[c.name] {
			f.Add(uint8(i), c.encode(v))
		}
	}
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		c := payloadCodecs[int(kind)%len(payloadCodecs)]
		v, err := c.decode(data)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("%s: unclassified error %v", c.name, err)
			}
			if !reflect.ValueOf(v).IsZero() {
				t.Fatalf("%s: failed decode returned non-zero %+v", c.name, v)
			}
			return
		}
		if err := validate(v); err != nil {
			t.Fatalf("%s: decoded value fails Validate: %v", c.name, err)
		}
		enc := c.encode(v)
		if !bytes.Equal(enc, data) {
			t.Fatalf("%s: re-encoding differs:\n in %x\nout %x", c.name, data, enc)
		}
		v2, err := c.decode(enc)
		if err != nil {
			t.Fatalf("%s: re-decoding: %v", c.name, err)
		}
		if !reflect.DeepEqual(v, v2) {
			t.Fatalf("%s: re-decoding gives %+v, want %+v", c.name, v2, v)
		}
	})
}
