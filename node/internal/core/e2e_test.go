package core

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/distrirender/distrirender/message"
)

// securedPair returns two closed-cluster cores that are neighbours and
// hold each other's signed records.
func securedPair(tb testing.TB) (*Core, *Core) {
	a, b := securedCore(1), securedCore(2)
	n := newTestNet(tb, a, b)
	n.join(a, b)
	n.settle()
	return a, b
}

// Both ends of a pair derive the same key, and a frame sealed by one opens
// at the other only unchanged (the hop limit aside).
func TestSealOpen(t *testing.T) {
	a, b := securedPair(t)
	f := (&message.Message{
		UID:    message.UID{Node: a.ID(), Index: 3},
		Header: message.Header{Type: message.TypeMsg, HopLimit: 9, Target: b.ID(), Epoch: a.Epoch()},
		Body:   []byte("body"),
	}).Encode()
	sealed, err := a.sealer.seal(a, b.ID(), f)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("body")) {
		t.Fatal("the sealed frame carries the body in clear")
	}
	message.DecrementHopLimit(sealed)
	for i, tc := range []struct {
		name  string
		flip  int // byte to flip, -1 none
		valid bool
	}{
		{"as sent", -1, true},
		{"index", 23, false},
		{"epoch", 47, false},
		{"body", message.HeaderSize + 1, false},
		{"tag", len(sealed) - 1, false},
	} {
		g := append([]byte(nil), sealed...)
		if tc.flip >= 0 {
			g[tc.flip] ^= 1
		}
		m, err := message.Decode(g, 0)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		err = b.sealer.open(b, &m, g)
		if (err == nil) != tc.valid {
			t.Fatalf("%s: open: %v", tc.name, err)
		}
		if tc.valid && string(m.Body) != "body" {
			t.Fatalf("opened body %q", m.Body)
		}
	}
}

// BenchmarkSealOpen measures what sealed streams cost per frame: one seal
// at the origin (a copy and AES-256-GCM) and one open at the target (in
// place).
func BenchmarkSealOpen(b *testing.B) {
	x, y := securedPair(b)
	for _, size := range []int{64, 1024, 64 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			f := (&message.Message{
				UID:    message.UID{Node: x.ID(), Index: 3},
				Header: message.Header{Type: message.TypeMsg, HopLimit: 9, Target: y.ID(), Epoch: x.Epoch()},
				Body:   make([]byte, size),
			}).Encode()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				s, _ := x.sealer.seal(x, y.ID(), f)
				m, _ := message.Decode(s, 1<<20)
				if err := y.sealer.open(y, &m, s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSignFlood measures a flooded broadcast's signature: one
// signature at the origin, one check at a node that has not seen it yet
// (later copies from other neighbours hit the cache of checked digests).
func BenchmarkSignFlood(b *testing.B) {
	x, y := securedPair(b)
	f := (&message.Message{
		UID:    message.UID{Node: x.ID(), Index: 3},
		Header: message.Header{Type: message.TypeMsgBroadcast, HopLimit: 9, Epoch: x.Epoch()},
		Body:   make([]byte, 64),
	}).Encode()
	b.ReportAllocs()
	for b.Loop() {
		s := x.sealer.signFlood(f)
		m, _ := message.Decode(s, 1<<20)
		clear(y.sealer.seen)
		if err := y.sealer.openFlood(y, &m, s); err != nil {
			b.Fatal(err)
		}
	}
}

// A pair forgotten (its record aged out) and made again never seals two
// frames with one nonce: the counter is the node's, not the pair's.
func TestNonceNeverRepeats(t *testing.T) {
	a, b := securedPair(t)
	f := (&message.Message{
		UID:    message.UID{Node: a.ID(), Index: 1},
		Header: message.Header{Type: message.TypeMsg, HopLimit: 9, Target: b.ID(), Epoch: a.Epoch()},
		Body:   []byte("x"),
	}).Encode()
	first, _ := a.sealer.seal(a, b.ID(), f)
	a.sealer.forget(b.ID())
	again, _ := a.sealer.seal(a, b.ID(), f)
	n := func(s []byte) []byte { return s[message.HeaderSize : message.HeaderSize+8] }
	if bytes.Equal(n(first), n(again)) {
		t.Fatal("the same nonce twice under one key")
	}
}
