package libp2p_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/distrirender/distrirender/transport/libp2p"
	"github.com/distrirender/distrirender/transport/transporttest"
)

// BenchmarkEdge measures frames through one edge on loopback, a sender and a
// receiver goroutine, over QUIC and over TCP (Noise or TLS, yamux). allocs/op
// counts both sides; the receiver allocates each frame it returns.
func BenchmarkEdge(b *testing.B) {
	for _, c := range []struct {
		name   string
		listen []string
	}{{"QUIC", quicOnly}, {"TCP", tcpOnly}} {
		for _, size := range []int{64, 1 << 10, 64 << 10} {
			b.Run(fmt.Sprintf("%s/size=%d", c.name, size), func(b *testing.B) {
				ta := newTransport(b, libp2p.Config{ListenAddrs: c.listen})
				tb := newTransport(b, libp2p.Config{ListenAddrs: c.listen})
				// A cancellable context, as the node passes: each Send and
				// Receive then watches it.
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				ab, err := ta.Dial(ctx, tb.Addrs()[0])
				if err != nil {
					b.Fatal(err)
				}
				defer ab.Close()
				ba, err := tb.Accept(ctx)
				if err != nil {
					b.Fatal(err)
				}
				defer ba.Close()
				transporttest.BenchEdge(b, ctx, ab, ba, size)
			})
		}
	}
}
