package webrtc_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/distrirender/distrirender/transport/transporttest"
	"github.com/distrirender/distrirender/transport/webrtc"
)

// BenchmarkEdge measures frames one way through one edge on the IPv4
// loopback, "binary" (frames over 16300 bytes go in chunks) and "raw" (one
// message per frame): a sender goroutine and a receiver goroutine.
// allocs/op counts both sides and pion's own work.
func BenchmarkEdge(b *testing.B) {
	url := signalServer(b, webrtc.SignalConfig{})
	for _, ser := range []string{webrtc.SerializationBinary, webrtc.SerializationRaw} {
		for _, size := range []int{64, 1 << 10, 64 << 10} {
			b.Run(fmt.Sprintf("%s/size=%d", ser, size), func(b *testing.B) {
				ta := newTransport(b, webrtc.Config{Server: url, Serialization: ser})
				tb := newTransport(b, webrtc.Config{Server: url})
				ab, ba := pair(b, ta, tb)
				transporttest.BenchEdge(b, context.Background(), ab, ba, size)
			})
		}
	}
}
