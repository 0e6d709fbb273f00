package core

import (
	"testing"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
)

// FuzzSecuredFrame feeds a closed-cluster core arbitrary frames from a
// neighbour: sealed, signed or not, whole or cut. It must never panic, and a
// frame that is not correctly sealed for it must never be delivered. The
// seed corpus is in testdata/fuzz/FuzzSecuredFrame.
func FuzzSecuredFrame(f *testing.F) {
	a, b := securedPair(f)
	msg := (&message.Message{
		UID:    message.UID{Node: a.ID(), Index: 0},
		Header: message.Header{Type: message.TypeMsg, HopLimit: 9, Target: b.ID(), Epoch: a.Epoch()},
		Body:   []byte("body"),
	}).Encode()
	sealed, _ := a.sealer.seal(a, b.ID(), msg)
	flood := a.sealer.signFlood((&message.Message{
		UID:    message.UID{Node: a.ID(), Index: 0},
		Header: message.Header{Type: message.TypeMsgBroadcast, HopLimit: 9, Epoch: a.Epoch()},
		Body:   []byte("all"),
	}).Encode())
	for _, s := range [][]byte{msg, sealed, flood, sealed[:len(sealed)-1]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, b := securedPair(t)
		m, err := message.Decode(data, 0)
		if err != nil {
			return
		}
		sealedOK := false
		if len(data) >= message.HeaderSize+message.TagSize {
			c := append([]byte(nil), data...)
			mm, _ := message.Decode(c, 0)
			sealedOK = mm.Header.Target == b.ID() && b.sealer.open(b, &mm, c) == nil
		}
		floodOK := false
		if len(data) >= message.HeaderSize+message.SigSize {
			c := append([]byte(nil), data...)
			mm, _ := message.Decode(c, 0)
			floodOK = mm.Header.Target == uuid.Nil && b.sealer.openFlood(b, &mm, c) == nil
		}
		b.Frame(t0, 2, m, append([]byte(nil), data...))
		rd := b.Ready()
		if len(rd.Deliveries) > 0 && !sealedOK && !floodOK {
			t.Fatalf("delivered %q from a frame not sealed for b", rd.Deliveries[0].Body)
		}
		b.Advance()
	})
}
