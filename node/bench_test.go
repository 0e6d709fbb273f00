package node_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/reliability"
	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/memory"
)

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report adds messages/s and CPU per delivered message to a benchmark.
func report(b *testing.B, start time.Time, cpu0 time.Duration) {
	el := time.Since(start)
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/msg")
}

var benchSizes = []int{64, 1024, 64 << 10}

// BenchmarkEndToEnd measures reliable in-order delivery through a line of
// nodes on the memory transport, beside the raw baseline: the same frames
// pushed through the same number of memory edges by bare relay goroutines
// (no routing, no reliability). Compare msgs/s and cpu-ns/msg of
// raw/hops=H/size=S with node/hops=H/size=S/window=W in one run.
func BenchmarkEndToEnd(b *testing.B) {
	for _, hops := range []int{1, 3} {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("raw/hops=%d/size=%d", hops, size), func(b *testing.B) { benchRaw(b, hops, size) })
			for _, window := range []int{10, 256} {
				b.Run(fmt.Sprintf("node/hops=%d/size=%d/window=%d", hops, size, window), func(b *testing.B) {
					benchNode(b, hops, size, window)
				})
			}
		}
	}
}

func benchNode(b *testing.B, hops, size, window int) {
	m := newMesh(b, hops+1, 1,
		node.WithReliability(reliability.Config{Window: window, Modulo: 10_000}),
		node.WithQueues(4096, 4*window))
	for i := range hops {
		m.Link(i, i+1)
	}
	m.WaitConverged(10 * time.Second)
	src, dst := m.Node(0), m.Node(hops)
	ctx := context.Background()
	payload := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	errc := make(chan error, 1)
	go func() {
		for range b.N {
			if err := src.Send(ctx, dst.ID(), payload); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for range b.N {
		if _, err := dst.Receive(ctx); err != nil {
			b.Fatal(err)
		}
	}
	report(b, start, cpu0)
	b.StopTimer()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

// benchRaw relays frames through hops memory edges with bare goroutines.
func benchRaw(b *testing.B, hops, size int) {
	net := memory.NewNetwork(memory.Config{Seed: 1})
	defer net.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	trs := make([]*memory.Transport, hops+1)
	for i := range trs {
		var err error
		if trs[i], err = net.Listen(fmt.Sprintf("r%d", i)); err != nil {
			b.Fatal(err)
		}
	}
	outs := make([]transport.Edge, hops) // outs[i]: i -> i+1, dialled by i
	ins := make([]transport.Edge, hops)  // ins[i]: the same edge, accepted by i+1
	for i := range hops {
		var err error
		if outs[i], err = trs[i].Dial(ctx, fmt.Sprintf("r%d", i+1)); err != nil {
			b.Fatal(err)
		}
		if ins[i], err = trs[i+1].Accept(ctx); err != nil {
			b.Fatal(err)
		}
	}
	done := make(chan struct{})
	for i := 1; i < hops; i++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				f, err := ins[i-1].Receive(ctx)
				if err != nil {
					return
				}
				if outs[i].Send(ctx, f) != nil {
					return
				}
			}
		}()
	}
	payload := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	go func() {
		for range b.N {
			if outs[0].Send(ctx, payload) != nil {
				return
			}
		}
	}()
	for range b.N {
		if _, err := ins[hops-1].Receive(ctx); err != nil {
			b.Fatal(err)
		}
	}
	report(b, start, cpu0)
	b.StopTimer()
	cancel()
	for i := 1; i < hops; i++ {
		<-done
	}
}

// BenchmarkRoundTrip measures request and response one at a time at 1 hop
// over the memory transport: ns/op is the round trip, allocs/op what both
// nodes allocate for it (two messages, two acknowledgements).
func BenchmarkRoundTrip(b *testing.B) {
	m := newMesh(b, 2, 1)
	m.Link(0, 1)
	m.WaitConverged(10 * time.Second)
	a, z := m.Node(0), m.Node(1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	echoed := make(chan error, 1)
	go func() {
		for {
			d, err := z.Receive(ctx)
			if err != nil {
				echoed <- nil
				return
			}
			if err := z.Send(ctx, d.From, d.Body); err != nil {
				echoed <- err
				return
			}
		}
	}()
	ping := make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := a.Send(ctx, z.ID(), ping); err != nil {
			b.Fatal(err)
		}
		if _, err := a.Receive(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cancel()
	if err := <-echoed; err != nil {
		b.Fatal(err)
	}
}
