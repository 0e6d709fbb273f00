package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/transport"
)

// Marks in the first byte of a workload's frames.
const (
	markData = 0 // an ordinary frame
	markLast = 1 // the last frame of a throughput measurement
	markStop = 2 // ends the echo of a latency measurement
)

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// allocsSample reads the count of heap allocations so far.
type allocsSample [1]metrics.Sample

func (s *allocsSample) read() uint64 {
	s[0].Name = "/gc/heap/allocs:objects"
	metrics.Read(s[:])
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// cost is what a measurement used: wall time, CPU time, allocations, and
// the mesh's retransmissions and forward-buffer drops.
type cost struct {
	wall, cpu     time.Duration
	allocs        uint64
	retx, dropped uint64
}

// meter takes the cost of what runs between start and stop.
type meter struct {
	p     *path
	as    allocsSample
	start cost
	t0    time.Time
}

func (m *meter) begin() {
	m.start.retx, m.start.dropped = m.p.counters()
	m.start.allocs = m.as.read()
	m.start.cpu = cpuTime()
	m.t0 = time.Now()
}

func (m *meter) end() cost {
	c := cost{wall: time.Since(m.t0), cpu: cpuTime() - m.start.cpu, allocs: m.as.read() - m.start.allocs}
	retx, dropped := m.p.counters()
	c.retx, c.dropped = retx-m.start.retx, dropped-m.start.dropped
	return c
}

// oneWay sends frames of size bytes from src to dst for dur or limit frames,
// whichever comes first, and returns how many arrived and what that cost,
// from the first Send to the last Receive. A layer that loses frames makes
// it wait until ctx ends.
func (p *path) oneWay(ctx context.Context, size int, dur time.Duration, limit int) (int, cost, error) {
	payload, last := make([]byte, size), make([]byte, size)
	last[0] = markLast
	m := meter{p: p}
	sent := make(chan error, 1)
	m.begin()
	stop := m.t0.Add(dur)
	p.wg.Go(func() {
		for i := 0; ; i++ {
			if i+1 >= limit || (i%16 == 0 && time.Now().After(stop)) {
				sent <- p.src.Send(ctx, last)
				return
			}
			if err := p.src.Send(ctx, payload); err != nil {
				sent <- err
				return
			}
		}
	})
	n := 0
	for {
		f, err := p.dst.Receive(ctx)
		if err != nil {
			return n, cost{}, fmt.Errorf("receive after %d frames: %w", n, err)
		}
		n++
		if len(f) > 0 && f[0] == markLast {
			break
		}
	}
	c := m.end()
	if err := <-sent; err != nil {
		return n, c, fmt.Errorf("send: %w", err)
	}
	return n, c, nil
}

// pingPong sends 64-byte frames from src, each echoed by dst, one at a time
// for dur or limit round trips, and returns the round-trip times.
func (p *path) pingPong(ctx context.Context, dur time.Duration, limit int) ([]time.Duration, error) {
	echoed := make(chan error, 1)
	p.wg.Go(func() {
		for {
			f, err := p.dst.Receive(ctx)
			if err != nil {
				echoed <- err
				return
			}
			if len(f) > 0 && f[0] == markStop {
				echoed <- nil
				return
			}
			if err := p.dst.Send(ctx, f); err != nil {
				echoed <- err
				return
			}
		}
	})
	ping, stopMsg := make([]byte, 64), make([]byte, 64)
	stopMsg[0] = markStop
	rtts := make([]time.Duration, 0, min(limit, 1<<16))
	stop := time.Now().Add(dur)
	var err error
	for len(rtts) < limit && time.Now().Before(stop) {
		t0 := time.Now()
		if err = p.src.Send(ctx, ping); err != nil {
			break
		}
		if _, err = p.src.Receive(ctx); err != nil {
			break
		}
		rtts = append(rtts, time.Since(t0))
	}
	if err == nil {
		err = p.src.Send(ctx, stopMsg)
	}
	if err != nil {
		return nil, err
	}
	if err := <-echoed; err != nil {
		return nil, fmt.Errorf("echo: %w", err)
	}
	return rtts, nil
}

// firstEcho sends one 64-byte frame from src, echoes it at dst and receives
// it back at src, on the caller's goroutine.
func (p *path) firstEcho(ctx context.Context) error {
	hello := make([]byte, 64)
	if err := p.src.Send(ctx, hello); err != nil {
		return err
	}
	f, err := p.dst.Receive(ctx)
	if err != nil {
		return err
	}
	if err := p.dst.Send(ctx, f); err != nil {
		return err
	}
	_, err = p.src.Receive(ctx)
	return err
}

// percentile returns the q-quantile (0..1) of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

// failoverResult is what one failover measurement saw.
type failoverResult struct {
	gap                                     time.Duration // from the close until a message sent after it arrived
	sent, delivered                         int
	lost, duplicated, reordered, failedMsgs int
	retx, dropped                           uint64
}

// failover runs a stream of numbered 64-byte messages from node 0 to node
// 3 over two 3-hop paths (0-1-2-3 and 0-4-2-3), closes the transport of
// node 0's next hop under it (abruptly: its node says no goodbye), and
// measures how long until a message accepted after the close is delivered,
// then whether every message arrived once and in order.
func (ts *transports) failover(ctx context.Context, name string, pre, post time.Duration, limit int) (failoverResult, error) {
	var res failoverResult
	p := newPath()
	defer p.close()
	nodes, trs, err := ts.addNodes(ctx, p, name, 5, meshOptions(0, false))
	if err != nil {
		return res, err
	}
	for _, e := range [][2]int{{0, 1}, {1, 2}, {2, 3}, {0, 4}, {4, 2}} {
		if err := connect(ctx, nodes, e[0], e[1]); err != nil {
			return res, err
		}
	}
	src, dst := nodes[0], nodes[3]
	if err := waitRoutes(ctx, src, dst, 3); err != nil {
		return res, err
	}
	if err := waitFor(ctx, "routes through both forwarders", func() bool {
		return distance(nodes[1], dst.ID()) == 2 && distance(nodes[4], dst.ID()) == 2
	}); err != nil {
		return res, err
	}

	var sent, killSeq atomic.Int64
	killSeq.Store(-1)
	var stopSending atomic.Bool
	sendDone := make(chan error, 1)
	p.wg.Go(func() {
		body := make([]byte, 64)
		for seq := range int64(limit) {
			if stopSending.Load() {
				break
			}
			binary.BigEndian.PutUint64(body, uint64(seq))
			if err := src.Send(ctx, dst.ID(), body); err != nil {
				sendDone <- err
				return
			}
			sent.Store(seq + 1)
		}
		sendDone <- nil
	})

	var mu sync.Mutex // guards what the receiver records
	seen := make([]bool, limit)
	var delivered, dup, reordered int
	maxSeq := int64(-1)
	var flowing time.Time
	var killedAt time.Time
	p.wg.Go(func() {
		for {
			d, err := dst.Receive(p.ctx)
			if err != nil {
				return
			}
			if len(d.Body) < 8 {
				continue
			}
			seq := int64(binary.BigEndian.Uint64(d.Body))
			now := time.Now()
			mu.Lock()
			switch {
			case seq < 0 || seq >= int64(limit):
			case seen[seq]:
				dup++
			default:
				seen[seq] = true
				delivered++
				if seq < maxSeq {
					reordered++
				}
				maxSeq = max(maxSeq, seq)
				if k := killSeq.Load(); k >= 0 && seq >= k && flowing.IsZero() {
					flowing = now
				}
			}
			mu.Unlock()
		}
	})
	wait := func(what string, cond func() bool) error {
		return waitFor(ctx, what, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return cond()
		})
	}

	preEnd := time.Now().Add(pre)
	if err := wait("the stream to flow", func() bool { return delivered > 0 && time.Now().After(preEnd) }); err != nil {
		return res, err
	}
	hop := nextHop(src, dst.ID())
	victim := -1
	for _, i := range []int{1, 4} {
		if nodes[i].ID() == hop {
			victim = i
		}
	}
	if victim < 0 {
		return res, fmt.Errorf("meshbench: node 0's next hop to node 3 is neither forwarder")
	}
	mu.Lock()
	killedAt = time.Now()
	killSeq.Store(sent.Load())
	mu.Unlock()
	_ = trs[victim].Close()
	if err := wait("messages sent after the close to arrive", func() bool { return !flowing.IsZero() }); err != nil {
		return res, err
	}
	postEnd := time.Now().Add(post)
	if err := waitFor(ctx, "the stream after the failover", func() bool { return time.Now().After(postEnd) }); err != nil {
		return res, err
	}
	stopSending.Store(true)
	if err := <-sendDone; err != nil {
		return res, fmt.Errorf("meshbench: send: %w", err)
	}
	total := int(sent.Load())
	if err := wait("every message to arrive or fail", func() bool {
		return delivered+int(p.failed.Load()) >= total
	}); err != nil {
		return res, err
	}
	mu.Lock()
	defer mu.Unlock()
	res = failoverResult{
		gap: flowing.Sub(killedAt), sent: total, delivered: delivered,
		duplicated: dup, reordered: reordered, failedMsgs: int(p.failed.Load()),
	}
	res.lost = total - delivered - res.failedMsgs
	res.retx, res.dropped = p.counters()
	return res, nil
}

// joinResult is what one join measurement saw.
type joinResult struct {
	build    time.Duration // building and balancing the mesh
	reach    time.Duration // Connect until the joiner and every member route to each other
	balanced time.Duration // Connect until the joiner has its minimum of neighbours
	edges    int
}

// joinMinConns is the default minimum of neighbours a node keeps
// (node.WithMinConnections).
const joinMinConns = 5

// join builds a mesh of size nodes on the memory transport with the default
// options (balancing included), each joining through a random earlier
// member, waits until it is balanced and converged, then measures one more
// node joining through a random member.
func (ts *transports) join(ctx context.Context, size int, rng *rand.Rand) (joinResult, error) {
	var res joinResult
	p := newPath()
	defer p.close()
	t0 := time.Now()
	nodes, _, err := ts.addNodes(ctx, p, tMemory, size, nil)
	if err != nil {
		return res, err
	}
	for i := 1; i < size; i++ {
		if err := connect(ctx, nodes, i, rng.IntN(i)); err != nil && !errors.Is(err, node.ErrDuplicateEdge) {
			return res, err
		}
	}
	minConns := min(joinMinConns, size-1)
	if err := waitFor(ctx, "the mesh to converge and balance", func() bool {
		return balanced(nodes, minConns) && converged(nodes)
	}); err != nil {
		return res, err
	}
	res.build = time.Since(t0)
	for _, n := range nodes {
		res.edges += len(n.Neighbors())
	}
	res.edges /= 2

	more, _, err := ts.addNodes(ctx, p, tMemory, 1, nil)
	if err != nil {
		return res, err
	}
	joiner := more[0]
	all := append(slices.Clone(nodes), joiner)
	t1 := time.Now()
	if err := joiner.Connect(ctx, nodes[rng.IntN(size)].Addrs()[0]); err != nil {
		return res, fmt.Errorf("meshbench: join: %w", err)
	}
	if err := waitFor(ctx, "the joiner to be reached", func() bool {
		if res.balanced == 0 && len(joiner.Neighbors()) >= minConns {
			res.balanced = time.Since(t1)
		}
		return converged(all)
	}); err != nil {
		return res, err
	}
	res.reach = time.Since(t1)
	if err := waitFor(ctx, "the joiner to balance", func() bool { return len(joiner.Neighbors()) >= minConns }); err != nil {
		return res, err
	}
	if res.balanced == 0 {
		res.balanced = time.Since(t1)
	}
	return res, nil
}

// converged reports whether every node routes to every other.
func converged(nodes []*node.Node) bool {
	for _, n := range nodes {
		reached := 0
		for _, ni := range n.Topology().Nodes {
			if ni.Distance > 0 {
				reached++
			}
		}
		if reached < len(nodes)-1 {
			return false
		}
	}
	return true
}

// balanced reports whether every node has at least minConns neighbours.
func balanced(nodes []*node.Node, minConns int) bool {
	for _, n := range nodes {
		if len(n.Neighbors()) < minConns {
			return false
		}
	}
	return true
}

// ensure the edge layer's ends are transport.Edges, as the package says.
var _ transport.Edge = (*edgeEnd)(nil)
