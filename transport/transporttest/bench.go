package transporttest

import (
	"context"
	"testing"

	"github.com/distrirender/distrirender/transport"
)

// BenchEdge measures frames of size bytes sent one way through an edge:
// from sends on the calling goroutine while to receives on another, with
// ctx passed to every call (pass the context the caller would use: some
// transports cache per-context state). allocs/op counts both sides. Every
// transport's BenchmarkEdge calls it after making its own edge pair, so
// their numbers compare.
func BenchEdge(b *testing.B, ctx context.Context, from, to transport.Edge, size int) {
	b.Helper()
	frame := make([]byte, size)
	done := make(chan error, 1)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		for range b.N {
			if _, err := to.Receive(ctx); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for range b.N {
		if err := from.Send(ctx, frame); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
