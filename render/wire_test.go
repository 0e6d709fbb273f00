package render

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

func testJob() Job {
	return Job{ID: 0x1122334455667788, Scene: "default", Width: 70, Height: 50, Samples: 4, Depth: 5, Seed: 9, TileSize: 32}
}

func TestWireRoundTrip(t *testing.T) {
	j := testJob()
	pix := bytes.Repeat([]byte{1, 2, 3, 255}, 32*32)
	msgs := []wireMsg{
		{typ: msgJob, jobID: j.ID, job: j, fingerprint: 0xfeedface},
		{typ: msgRequest, jobID: j.ID, slot: 63},
		{typ: msgAssign, jobID: j.ID, slot: 2, tile: 5},
		{typ: msgResult, jobID: j.ID, slot: 2, tile: 0, elapsed: 1500 * time.Millisecond, pixels: pix},
		{typ: msgDone, jobID: j.ID, reason: doneCancelled},
		{typ: msgDecline, jobID: j.ID, reason: declineFingerprint},
	}
	for _, m := range msgs {
		b := m.encode()
		got, err := decode(b)
		if err != nil {
			t.Fatalf("%s: %v", m.typ, err)
		}
		if got.typ != m.typ || got.jobID != m.jobID || got.job != m.job || got.fingerprint != m.fingerprint ||
			got.slot != m.slot || got.tile != m.tile || got.elapsed != m.elapsed || !bytes.Equal(got.pixels, m.pixels) || got.reason != m.reason {
			t.Fatalf("%s: round trip gave %+v", m.typ, got)
		}
		if m.typ == msgAssign || m.typ == msgResult {
			if err := got.checkTile(&j); err != nil {
				t.Fatalf("%s: checkTile: %v", m.typ, err)
			}
		}
		// Every strict prefix is truncated, and one more byte is trailing.
		for n := range len(b) {
			if _, err := decode(b[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s cut to %d bytes: err %v, want ErrMalformed", m.typ, n, err)
			}
		}
		if _, err := decode(append(b, 0)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s with a trailing byte: err %v", m.typ, err)
		}
	}
}

func TestWireMalformed(t *testing.T) {
	j := testJob()
	good := func(m wireMsg) []byte { return m.encode() }
	job := good(wireMsg{typ: msgJob, jobID: j.ID, job: j})
	patch := func(b []byte, off int, v ...byte) []byte {
		b = bytes.Clone(b)
		copy(b[off:], v)
		return b
	}
	u16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	result := good(wireMsg{typ: msgResult, jobID: j.ID, tile: 1, pixels: make([]byte, 8)})
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"bad magic", patch(job, 0, 'X'), ErrMalformed},
		{"version 2", patch(job, 2, 2), ErrVersion},
		{"version 0", patch(job, 2, 0), ErrVersion},
		{"unknown type", patch(job, 3, 99), ErrMalformed},
		{"type 0", patch(job, 3, 0), ErrMalformed},
		{"job id 0", patch(job, 4, 0, 0, 0, 0, 0, 0, 0, 0), ErrMalformed},
		{"width 0", patch(job, 12, u16(0)...), ErrMalformed},
		{"height too large", patch(job, 14, u16(MaxSize+1)...), ErrMalformed},
		{"samples 0", patch(job, 16, u32(0)...), ErrMalformed},
		{"samples too many", patch(job, 16, u32(MaxSamples+1)...), ErrMalformed},
		{"depth 0", patch(job, 20, 0), ErrMalformed},
		{"tile size 3", patch(job, 21, u16(3)...), ErrMalformed},
		{"tile size 257", patch(job, 21, u16(257)...), ErrMalformed},
		{"scene name uppercase", patch(job, len(job)-1, 'T'), ErrMalformed},
		{"scene name length past end", patch(job, len(job)-8, 9), ErrMalformed},
		{"scene name empty", patch(job, len(job)-8, 0)[:len(job)-7], ErrMalformed},
		{"slot 64", good(wireMsg{typ: msgRequest, jobID: 1, slot: 64}), ErrMalformed},
		{"assign slot 200", good(wireMsg{typ: msgAssign, jobID: 1, slot: 200}), ErrMalformed},
		{"pixel length short", patch(result, 25, u32(7)...), ErrMalformed},
		{"pixel length huge", patch(result, 25, u32(1<<31)...), ErrMalformed},
		{"render time negative", patch(result, 17, 0xff), ErrMalformed},
		{"done reason 7", good(wireMsg{typ: msgDone, jobID: 1, reason: 7}), ErrMalformed},
		{"decline reason 0", good(wireMsg{typ: msgDecline, jobID: 1, reason: 0}), ErrMalformed},
		{"decline reason 9", good(wireMsg{typ: msgDecline, jobID: 1, reason: 9}), ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := decode(c.b); !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
		})
	}
}

func TestCheckTile(t *testing.T) {
	j := testJob() // 70x50 in 32-pixel tiles: 3x2 tiles, the last column 6 wide, the last row 18 high
	if n := j.Tiles(); n != 6 {
		t.Fatalf("%d tiles, want 6", n)
	}
	cases := []struct {
		name string
		m    wireMsg
		ok   bool
	}{
		{"full tile", wireMsg{typ: msgResult, jobID: j.ID, tile: 0, pixels: make([]byte, 32*32*4)}, true},
		{"corner tile", wireMsg{typ: msgResult, jobID: j.ID, tile: 5, pixels: make([]byte, 6*18*4)}, true},
		{"corner tile with a full tile's pixels", wireMsg{typ: msgResult, jobID: j.ID, tile: 5, pixels: make([]byte, 32*32*4)}, false},
		{"one byte short", wireMsg{typ: msgResult, jobID: j.ID, tile: 1, pixels: make([]byte, 32*32*4-1)}, false},
		{"tile out of bounds", wireMsg{typ: msgResult, jobID: j.ID, tile: 6, pixels: make([]byte, 16)}, false},
		{"assign out of bounds", wireMsg{typ: msgAssign, jobID: j.ID, tile: 1 << 30}, false},
		{"assign in bounds", wireMsg{typ: msgAssign, jobID: j.ID, tile: 4}, true},
		{"wrong job", wireMsg{typ: msgAssign, jobID: j.ID + 1, tile: 0}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Through the codec, as it arrives.
			m, err := decode(c.m.encode())
			if err != nil {
				t.Fatal(err)
			}
			err = m.checkTile(&j)
			if (err == nil) != c.ok {
				t.Fatalf("checkTile: %v, want ok=%v", err, c.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidJob) {
				t.Fatalf("error %v does not wrap ErrInvalidJob", err)
			}
		})
	}
}

func TestJobValidate(t *testing.T) {
	ok := Job{Scene: "default", Width: 64, Height: 48}.WithDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(*Job){
		"no scene":       func(j *Job) { j.Scene = "" },
		"scene spaces":   func(j *Job) { j.Scene = "my scene" },
		"zero width":     func(j *Job) { j.Width = 0 },
		"huge height":    func(j *Job) { j.Height = MaxSize + 1 },
		"zero samples":   func(j *Job) { j.Samples = 0 },
		"depth 65":       func(j *Job) { j.Depth = 65 },
		"tile 2":         func(j *Job) { j.TileSize = 2 },
		"too many tiles": func(j *Job) { j.Width, j.Height, j.TileSize = MaxSize, MaxSize, 8 },
	}
	for name, f := range bad {
		j := ok
		f(&j)
		if err := j.Validate(); !errors.Is(err, ErrInvalidJob) {
			t.Errorf("%s: %v", name, err)
		}
	}
	j := Job{Scene: "default", Width: 70, Height: 50, TileSize: 32}.WithDefaults()
	for i, want := range []string{"(0,0)-(32,32)", "(32,0)-(64,32)", "(64,0)-(70,32)", "(0,32)-(32,50)", "(32,32)-(64,50)", "(64,32)-(70,50)"} {
		r, err := j.TileRect(i)
		if err != nil || r.String() != want {
			t.Fatalf("tile %d: %v %v, want %s", i, r, err, want)
		}
	}
	for _, i := range []int{-1, 6} {
		if _, err := j.TileRect(i); !errors.Is(err, ErrInvalidJob) {
			t.Fatalf("tile %d: %v", i, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	j := testJob()
	for _, m := range []wireMsg{
		{typ: msgJob, jobID: j.ID, job: j, fingerprint: 1},
		{typ: msgRequest, jobID: 3, slot: 1},
		{typ: msgAssign, jobID: 3, slot: 1, tile: 4},
		{typ: msgResult, jobID: j.ID, slot: 1, tile: 5, elapsed: time.Second, pixels: make([]byte, 6*18*4)},
		{typ: msgDone, jobID: 3},
		{typ: msgDecline, jobID: 3, reason: declineBusy},
	} {
		f.Add(m.encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error %v wraps neither ErrMalformed nor ErrVersion", err)
			}
			return
		}
		// A decoded message encodes back to the same bytes...
		if enc := m.encode(); !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding gave %x, want %x", enc, b)
		}
		// ...and checking it against a job never panics.
		_ = m.checkTile(&j)
	})
}
