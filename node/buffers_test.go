package node

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/distrirender/distrirender/internal/testutil"
	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/transport/quic"
)

func TestBuffers(t *testing.T) {
	const hdr = message.HeaderSize
	cases := []struct {
		name   string
		size   int  // frame length asked of get
		body   bool // give back the body after the header, not the frame
		reused bool // the next get of size reuses it
	}{
		{"small frames are not pooled", 1 << 10, false, false},
		{"under 16 KiB is not pooled", 1<<minPooledShift - 1, false, false},
		{"16 KiB frame", 1 << minPooledShift, false, true},
		{"64 KiB body back", 1<<16 + hdr, true, true},
		{"64 KiB sealed body back", 1<<16 + hdr + message.SealOverhead + 8, true, true},
		{"frame just over a class", classSize(16) + 1, true, true},
		{"1 MiB frame", 1<<20 + hdr, true, true},
		{"over the largest class", classSize(maxPooledShift) + 1, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b buffers
			p := b.get(c.size)
			if len(p) != c.size {
				t.Fatalf("get(%d) has length %d", c.size, len(p))
			}
			back := p
			if c.body {
				back = p[hdr:len(p):cap(p)]
			}
			b.put(back)
			q := b.get(c.size)
			if len(q) != c.size {
				t.Fatalf("second get(%d) has length %d", c.size, len(q))
			}
			if got := len(back) > 0 && &q[0] == &back[:1][0]; got != c.reused {
				t.Fatalf("reused = %v, want %v", got, c.reused)
			}
		})
	}
}

// A buffer loses a header each time its body comes back: it serves many
// frames of its class, then is dropped, never handed out too short.
func TestBuffersWearOut(t *testing.T) {
	var b buffers
	const size = 1<<16 + message.HeaderSize
	p := b.get(size)
	first := &p[0]
	uses := 0
	for range 1000 {
		if len(p) != size {
			t.Fatalf("get(%d) has length %d", size, len(p))
		}
		b.put(p[message.HeaderSize:len(p):cap(p)])
		p = b.get(size)
		if &p[0] == first {
			t.Fatal("the buffer's start came back")
		}
		if cap(p) < size {
			t.Fatalf("a buffer of capacity %d for a %d-byte frame", cap(p), size)
		}
		if cap(p) != classSize(16) {
			uses++
		} else {
			break // a new buffer: the old one was worn out
		}
	}
	if uses < 32 {
		t.Fatalf("a 64 KiB buffer served %d frames, want at least 32", uses)
	}
	t.Logf("a 64 KiB buffer served %d frames", uses+1)
}

func TestBuffersBounded(t *testing.T) {
	var b buffers
	var held [][]byte
	for range 2 * maxPerClass {
		held = append(held, b.get(1<<20))
	}
	for _, p := range held {
		b.put(p)
		b.put(p) // twice: kept once
	}
	if b.bytes > maxPooledBytes {
		t.Fatalf("the pool keeps %d bytes, over %d", b.bytes, maxPooledBytes)
	}
	n := 0
	for _, class := range b.free {
		n += len(class)
	}
	if n*classSize(20) != b.bytes {
		t.Fatalf("%d buffers of %d bytes counted as %d bytes: one kept twice?", n, classSize(20), b.bytes)
	}
}

// Large messages over QUIC are read into the node's buffers, and the bodies
// an application releases are reused for the next ones; the sender's frames
// come back once acknowledged and written, and carry later messages. No
// message ever sees another's bytes (run with -race: a buffer used after
// it came back would race with its next use).
func TestReleasedBodiesAreReused(t *testing.T) {
	seed := testutil.Seed(t)
	for _, c := range []struct {
		name string
		opts []Option
	}{
		{"open", nil},
		{"sealed", []Option{WithClusterSecrets([]byte("buffers test cluster secret, 32B"))}},
	} {
		t.Run(c.name, func(t *testing.T) { releasedBodiesAreReused(t, seed, c.opts) })
	}
}

func releasedBodiesAreReused(t *testing.T, seed uint64, opts []Option) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var nodes [2]*Node
	for i := range nodes {
		tr, err := quic.Listen("127.0.0.1:0", quic.Config{})
		if err != nil {
			t.Fatal(err)
		}
		n, err := New(tr, append([]Option{WithMinConnections(0)}, opts...)...)
		if err != nil {
			_ = tr.Close()
			t.Fatal(err)
		}
		defer n.Close()
		nodes[i] = n
	}
	if err := nodes[0].Connect(ctx, nodes[1].Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	const count = 300
	r := rand.New(rand.NewPCG(seed, 0))
	want := make([][]byte, count)
	for i := range want {
		want[i] = make([]byte, 1<<14+r.IntN(1<<16))
		for j := range want[i] {
			want[i][j] = byte(r.Uint32())
		}
	}
	sent := make(chan error, 1)
	go func() {
		for _, b := range want {
			if err := nodes[0].Send(ctx, nodes[1].ID(), b); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	for i := range count {
		d, err := nodes[1].Receive(ctx)
		if err != nil {
			t.Fatalf("Receive %d: %v", i, err)
		}
		if !bytes.Equal(d.Body, want[i]) {
			t.Fatalf("message %d: %d bytes, want %d bytes; not the message sent", i, len(d.Body), len(want[i]))
		}
		d.Release()
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	reused := func(n *Node) uint64 {
		n.bufs.mu.Lock()
		defer n.bufs.mu.Unlock()
		return n.bufs.reused
	}
	if got := reused(nodes[1]); got < count/2 {
		t.Fatalf("%d of %d frames were read into released buffers, want at least half", got, count)
	}
	// The sender's frames come back once acknowledged (core Ready.Free):
	// later messages are copied into them.
	if got := reused(nodes[0]); got < count/4 {
		t.Fatalf("%d of %d messages were sent from reused frames, want at least a quarter", got, count)
	}
	t.Logf("%d of %d frames read into released buffers, %d sent from reused ones", reused(nodes[1]), count, reused(nodes[0]))
}
