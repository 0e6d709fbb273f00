package bpack

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"testing"
)

// packFrame packs a frame as a "binary" edge sends it: one message, or the
// chunk maps of a packed frame longer than chunk.
func packFrame(frame []byte, id, chunk int) [][]byte {
	head := AppendRawHeader(nil, len(frame))
	if len(head)+len(frame) <= chunk {
		return [][]byte{append(head, frame...)}
	}
	blob := append(head, frame...)
	total := (len(blob) + chunk - 1) / chunk
	var msgs [][]byte
	for n := range total {
		piece := blob[n*chunk : min((n+1)*chunk, len(blob))]
		msgs = append(msgs, AppendChunk(nil, id, n, total, nil, piece))
	}
	return msgs
}

func TestBinaryPackFrames(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const maxFrame = 300 << 10
	u := NewUnpacker(maxFrame)
	for i, size := range []int{0, 1, 15, 16, 255, 256, 65535, 65536, ChunkSize - 5, ChunkSize - 4, ChunkSize, 100_000, maxFrame} {
		frame := make([]byte, size)
		for j := range frame {
			frame[j] = byte(r.Uint32())
		}
		msgs := packFrame(frame, i+1, ChunkSize)
		for k, m := range msgs {
			if len(m) > ChunkSize+ChunkOverhead {
				t.Fatalf("size %d: message %d is %d bytes, over %d", size, k, len(m), ChunkSize+ChunkOverhead)
			}
			got, rc, what, err := u.Unpack(m)
			if err != nil {
				t.Fatalf("size %d: message %d of %d: %v", size, k, len(msgs), err)
			}
			last := k == len(msgs)-1
			if last && (rc != Frame || !bytes.Equal(got, frame)) {
				t.Fatalf("size %d: got %v %d bytes (%q), want the frame", size, rc, len(got), what)
			}
			if !last && rc != Nothing {
				t.Fatalf("size %d: message %d of %d gave %v", size, k, len(msgs), rc)
			}
		}
	}
	if len(u.partials) != 0 {
		t.Fatalf("%d partial messages left", len(u.partials))
	}
}

// TestBinaryPackPeerJS decodes messages as peerjs-js-binarypack 2.1 packs
// them.
func TestBinaryPackPeerJS(t *testing.T) {
	for _, c := range []struct {
		name, hex string
		want      Result
		frame     string
		what      string
	}{
		{"Uint8Array [1,2,3]", "a3010203", Frame, "\x01\x02\x03", ""},
		{"string hi", "b26869", Frame, "hi", ""},
		{"empty ArrayBuffer", "a0", Frame, "", ""},
		{"number 42", "2a", Nothing, "", "a number or boolean"},
		{"negative -1", "ff", Nothing, "", "a number or boolean"},
		{"double 1.5", "cb3ff8000000000000", Nothing, "", "a number or boolean"},
		{"null", "c0", Nothing, "", "a null value"},
		{"array [1]", "9101", Nothing, "", "an array"},
		{"object {a:1}", "81b16101", Nothing, "", "an object"},
		// {__peerData: {type: "close"}}
		{"close", "81ba5f5f70656572446174618" + "1b474797065b5636c6f7365", Close, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			msg, err := hex.DecodeString(c.hex)
			if err != nil {
				t.Fatal(err)
			}
			got, r, what, err := NewUnpacker(1 << 20).Unpack(msg)
			if err != nil {
				t.Fatal(err)
			}
			if r != c.want || string(got) != c.frame || what != c.what {
				t.Fatalf("got %v %q %q, want %v %q %q", r, got, what, c.want, c.frame, c.what)
			}
		})
	}
}

func TestBinaryPackChunksOutOfOrder(t *testing.T) {
	frame := bytes.Repeat([]byte("0123456789"), 5000)
	a := packFrame(frame, 7, 4096)
	b := packFrame(frame[:20000], 8, 4096)
	u := NewUnpacker(1 << 20)
	// An unordered channel: two messages interleaved, pieces reversed.
	var msgs [][]byte
	for i := range max(len(a), len(b)) {
		if i < len(a) {
			msgs = append(msgs, a[len(a)-1-i])
		}
		if i < len(b) {
			msgs = append(msgs, b[len(b)-1-i])
		}
	}
	var got [][]byte
	for _, m := range msgs {
		f, r, _, err := u.Unpack(m)
		if err != nil {
			t.Fatal(err)
		}
		if r == Frame {
			got = append(got, f)
		}
	}
	if len(got) != 2 || !bytes.Equal(got[0], frame[:20000]) || !bytes.Equal(got[1], frame) {
		t.Fatalf("got %d frames, want the short one then the long one", len(got))
	}
}

func TestBinaryPackErrors(t *testing.T) {
	big := packFrame(make([]byte, 5000), 1, 2048)
	for _, c := range []struct {
		name  string
		msgs  [][]byte
		limit int
		want  error
	}{
		{"truncated raw", [][]byte{{0xda, 0x00, 0x10, 1, 2}}, 1 << 20, ErrMalformed},
		{"trailing bytes", [][]byte{{0xa1, 1, 2}}, 1 << 20, ErrMalformed},
		{"huge array count", [][]byte{{0xdd, 0xff, 0xff, 0xff, 0xff, 1}}, 1 << 20, ErrMalformed},
		{"huge map count", [][]byte{{0xdf, 0x7f, 0xff, 0xff, 0xff}}, 1 << 20, ErrMalformed},
		{"too deep", [][]byte{bytes.Repeat([]byte{0x91}, 40)}, 1 << 20, ErrMalformed},
		{"empty", [][]byte{{}}, 1 << 20, ErrMalformed},
		{"frame over limit", [][]byte{append([]byte{0xda, 0x01, 0x00}, make([]byte, 256)...)}, 255, ErrTooLarge},
		{"chunks over limit", big, 4000, ErrTooLarge},
		{"chunk without data", [][]byte{{0x83, 0xba, '_', '_', 'p', 'e', 'e', 'r', 'D', 'a', 't', 'a', 1, 0xa1, 'n', 0, 0xa5, 't', 'o', 't', 'a', 'l', 2}}, 1 << 20, ErrMalformed},
		{"piece out of range", [][]byte{AppendChunk(nil, 1, 3, 2, nil, []byte("x"))}, 1 << 20, ErrMalformed},
		{"too many pieces", [][]byte{AppendChunk(nil, 1, 0, 1<<20, nil, []byte("x"))}, 1 << 20, ErrMalformed},
		{"piece twice", [][]byte{AppendChunk(nil, 1, 0, 2, nil, []byte("x")), AppendChunk(nil, 1, 0, 2, nil, []byte("x"))}, 1 << 20, ErrMalformed},
		{"total changes", [][]byte{AppendChunk(nil, 1, 0, 2, nil, []byte("x")), AppendChunk(nil, 1, 1, 3, nil, []byte("x"))}, 1 << 20, ErrMalformed},
		{"chunks of garbage", [][]byte{AppendChunk(nil, 1, 0, 2, nil, []byte{0xda}), AppendChunk(nil, 1, 1, 2, nil, []byte{0xff})}, 1 << 20, ErrMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := NewUnpacker(c.limit)
			var err error
			for _, m := range c.msgs {
				if _, _, _, err = u.Unpack(m); err != nil {
					break
				}
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

// TestBinaryPackPartialsBounded starts more chunked messages than are kept:
// the oldest are forgotten.
func TestBinaryPackPartialsBounded(t *testing.T) {
	u := NewUnpacker(1 << 20)
	for id := 1; id <= 3*MaxPartials; id++ {
		if _, r, _, err := u.Unpack(AppendChunk(nil, id, 0, 2, nil, make([]byte, 2000))); err != nil || r != Nothing {
			t.Fatalf("chunk %d: %v %v", id, r, err)
		}
	}
	if len(u.partials) != MaxPartials || len(u.order) != MaxPartials {
		t.Fatalf("%d partials (%d in order), want %d", len(u.partials), len(u.order), MaxPartials)
	}
	for id := 1; id <= 2*MaxPartials; id++ {
		if u.partials[int64(id)] != nil {
			t.Errorf("chunked message %d is still kept", id)
		}
	}
}

// FuzzUnpack feeds the Unpacker arbitrary messages: it must not panic, and
// what it returns as a frame is within the limit.
func FuzzUnpack(f *testing.F) {
	for _, m := range packFrame(bytes.Repeat([]byte{7}, 3000), 1, 1024) {
		f.Add(m, m)
	}
	f.Add([]byte{0xa3, 1, 2, 3}, []byte{0xc0})
	f.Add([]byte{0x81, 0xba, '_', '_', 'p', 'e', 'e', 'r', 'D', 'a', 't', 'a', 0x81, 0xb4, 't', 'y', 'p', 'e', 0xb5, 'c', 'l', 'o', 's', 'e'}, []byte{})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		const limit = 4096
		u := NewUnpacker(limit)
		for _, m := range [][]byte{a, b, a} {
			frame, r, _, err := u.Unpack(m)
			if err != nil && r != Nothing {
				t.Fatalf("error %v with result %v", err, r)
			}
			if len(frame) > limit {
				t.Fatalf("%d-byte frame over the limit %d", len(frame), limit)
			}
		}
		if len(u.partials) > MaxPartials {
			t.Fatalf("%d partials", len(u.partials))
		}
	})
}
