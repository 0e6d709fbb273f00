package quic_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/distrirender/distrirender/transport/quic"
	"github.com/distrirender/distrirender/transport/transporttest"
)

// BenchmarkEdge measures frames one way through one edge on the IPv4
// loopback: a sender goroutine and a receiver goroutine. allocs/op counts
// both sides and quic-go's own work; Receive's one slice per frame is among
// them.
func BenchmarkEdge(b *testing.B) {
	for _, size := range []int{64, 1 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			ta, tb := listen(b, quic.Config{}), listen(b, quic.Config{})
			ab, ba := dial(b, ta, tb)
			ctx := context.Background()
			transporttest.BenchEdge(b, ctx, ab, ba, size)
		})
	}
}
