package memory_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/distrirender/distrirender/transport/memory"
	"github.com/distrirender/distrirender/transport/transporttest"
)

// BenchmarkEdge measures frames through one edge of a perfect link, a sender
// and a receiver goroutine, and, for comparison, a link with a delay (every
// frame through the delivery goroutine and a timer).
func BenchmarkEdge(b *testing.B) {
	for _, delay := range []time.Duration{0, time.Microsecond} {
		for _, size := range []int{64, 64 << 10} {
			b.Run(fmt.Sprintf("delay=%v/size=%d", delay, size), func(b *testing.B) {
				n := memory.NewNetwork(memory.Config{Seed: 1, Faults: memory.Faults{Delay: delay}})
				defer n.Close()
				ta, _ := n.Listen("a")
				tb, _ := n.Listen("b")
				ctx := context.Background()
				ab, err := ta.Dial(ctx, "b")
				if err != nil {
					b.Fatal(err)
				}
				ba, _ := tb.Accept(ctx)
				transporttest.BenchEdge(b, ctx, ab, ba, size)
			})
		}
	}
}
