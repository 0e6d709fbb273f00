package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/rtcsetup"
	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/reliability"
	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/libp2p"
	"github.com/distrirender/distrirender/transport/memory"
	"github.com/distrirender/distrirender/transport/quic"
	"github.com/distrirender/distrirender/transport/webrtc"
)

// conn is one end of a path: the two calls every layer offers the
// workloads. transport.Edge has them; so do the raw ends and a node
// talking to one destination.
type conn interface {
	Send(ctx context.Context, frame []byte) error
	Receive(ctx context.Context) ([]byte, error)
}

// link is a connection between two ends: a dialled, b accepted.
type link struct {
	a, b  conn
	close func()
	start time.Time // when dialling began
}

// The transports, by the names --transports takes.
const (
	tMemory     = "memory"
	tQUIC       = "quic"
	tLibp2pQUIC = "libp2p-quic"
	tLibp2pTCP  = "libp2p-tcp"
	tWebRTC     = "webrtc"
)

// allTransports returns every transport, in the order tables list them.
func allTransports() []string { return []string{tMemory, tQUIC, tLibp2pQUIC, tLibp2pTCP, tWebRTC} }

// transports makes transports and raw links for one run. Everything it
// makes listens on loopback only.
type transports struct {
	log   *slog.Logger
	mem   *memory.Network
	names atomic.Uint64 // memory addresses and WebRTC peer IDs

	sigOnce sync.Once
	sig     *rtcsetup.Server
	sigErr  error
}

func newTransports(log *slog.Logger) *transports {
	return &transports{log: log, mem: memory.NewNetwork(memory.Config{Seed: 1})}
}

// close stops the signalling server and the memory network.
func (ts *transports) close() {
	if ts.sig != nil {
		ts.sig.Close()
	}
	_ = ts.mem.Close()
}

// signalURL starts the embedded PeerJS signalling server on loopback the
// first time it is needed and returns its URL.
func (ts *transports) signalURL() (string, error) {
	ts.sigOnce.Do(func() {
		ts.sig, ts.sigErr = rtcsetup.Serve("127.0.0.1:0", ts.log)
	})
	if ts.sigErr != nil {
		return "", fmt.Errorf("meshbench: signalling server: %w", ts.sigErr)
	}
	return ts.sig.URL, nil
}

// listen makes a fresh transport of kind name on loopback.
func (ts *transports) listen(ctx context.Context, name string) (transport.Transport, error) {
	switch name {
	case tMemory:
		return ts.mem.Listen(fmt.Sprintf("m%d", ts.names.Add(1)))
	case tQUIC:
		return quic.Listen("127.0.0.1:0", quic.Config{Logger: ts.log})
	case tLibp2pQUIC:
		return libp2p.New(libp2p.Config{ListenAddrs: []string{"/ip4/127.0.0.1/udp/0/quic-v1"}, Logger: ts.log})
	case tLibp2pTCP:
		return libp2p.New(libp2p.Config{ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Logger: ts.log})
	case tWebRTC:
		url, err := ts.signalURL()
		if err != nil {
			return nil, err
		}
		return webrtc.New(ctx, webrtc.Config{Server: url, ID: fmt.Sprintf("mb%d", ts.names.Add(1)), Logger: ts.log})
	}
	return nil, fmt.Errorf("meshbench: unknown transport %q", name)
}

// rawLink makes a raw link of kind name (see raw.go).
func (ts *transports) rawLink(ctx context.Context, name string) (*link, error) {
	switch name {
	case tMemory:
		return rawChanLink(ctx)
	case tQUIC:
		return rawQUICLink(ctx)
	case tLibp2pQUIC:
		return rawLibp2pLink(ctx, "/ip4/127.0.0.1/udp/0/quic-v1")
	case tLibp2pTCP:
		return rawLibp2pLink(ctx, "/ip4/127.0.0.1/tcp/0")
	case tWebRTC:
		return rawPionLink(ctx)
	}
	return nil, fmt.Errorf("meshbench: unknown transport %q", name)
}

// edgeLink makes two transports of kind name and an edge between them.
func (ts *transports) edgeLink(ctx context.Context, name string) (*link, error) {
	ta, err := ts.listen(ctx, name)
	if err != nil {
		return nil, err
	}
	tb, err := ts.listen(ctx, name)
	if err != nil {
		_ = ta.Close()
		return nil, err
	}
	closers := []func(){func() { _ = ta.Close() }, func() { _ = tb.Close() }}
	start := time.Now()
	ea, err := ta.Dial(ctx, tb.Addrs()[0])
	if err != nil {
		closeAll(closers)()
		return nil, fmt.Errorf("meshbench: %s dial: %w", name, err)
	}
	closers = append(closers, func() { _ = ea.Close() })
	eb, err := tb.Accept(ctx)
	if err != nil {
		closeAll(closers)()
		return nil, fmt.Errorf("meshbench: %s accept: %w", name, err)
	}
	closers = append(closers, func() { _ = eb.Close() })
	return &link{a: &edgeEnd{Edge: ea}, b: &edgeEnd{Edge: eb}, close: closeAll(closers), start: start}, nil
}

// edgeEnd is an end of the edge layer: it receives every frame into one
// reused buffer with transport.ReceiveBuffer (a frame is valid until the
// next Receive, as the raw layer's), as a user who cares about the cost of
// large frames would.
type edgeEnd struct {
	transport.Edge
	buf []byte
}

// Receive implements conn.
func (e *edgeEnd) Receive(ctx context.Context) ([]byte, error) {
	return transport.ReceiveBuffer(ctx, e.Edge, e.frame)
}

func (e *edgeEnd) frame(n int) []byte {
	if cap(e.buf) < n {
		e.buf = make([]byte, n)
	}
	return e.buf[:n]
}

// path is what the workloads run over: src sends to dst and dst answers
// src, through hops links (relayed by bare goroutines in the raw and edge
// layers) or through a line of nodes.
type path struct {
	src, dst conn
	start    time.Time    // when the first dial began
	nodes    []*node.Node // mesh layer: the nodes whose counters count
	failed   atomic.Uint64

	ctx     context.Context // ends when the path closes
	cancel  context.CancelFunc
	closers []func()
	wg      sync.WaitGroup // relays, event readers, workload goroutines
}

func newPath() *path {
	p := &path{}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// close stops everything the path started and waits for its goroutines.
func (p *path) close() {
	p.cancel()
	closeAll(p.closers)()
	p.wg.Wait()
}

// chainPath makes hops links with mk and relays frames both ways between
// consecutive links.
func chainPath(ctx context.Context, hops int, mk func(context.Context) (*link, error)) (*path, error) {
	p := newPath()
	links := make([]*link, hops)
	for i := range links {
		l, err := mk(ctx)
		if err != nil {
			p.close()
			return nil, err
		}
		links[i] = l
		p.closers = append(p.closers, l.close)
	}
	for i := 1; i < hops; i++ {
		p.relay(links[i-1].b, links[i].a)
		p.relay(links[i].a, links[i-1].b)
	}
	p.src, p.dst, p.start = links[0].a, links[hops-1].b, links[0].start
	return p, nil
}

// relay forwards every frame from one end to another until either fails.
func (p *path) relay(from, to conn) {
	p.wg.Go(func() {
		for {
			f, err := from.Receive(p.ctx)
			if err != nil {
				return
			}
			if to.Send(p.ctx, f) != nil {
				return
			}
		}
	})
}

// nodeEnd is a node talking to one other node. A message it receives is
// valid until the next Receive, as the raw layer's frames: then its body is
// released to the node.
type nodeEnd struct {
	n    *node.Node
	to   uuid.UUID
	last node.Delivery
}

// Send implements conn.
func (e *nodeEnd) Send(ctx context.Context, frame []byte) error { return e.n.Send(ctx, e.to, frame) }

// Receive implements conn.
func (e *nodeEnd) Receive(ctx context.Context) ([]byte, error) {
	e.last.Release()
	d, err := e.n.Receive(ctx)
	e.last = d
	return d.Body, err
}

// benchSecret is the cluster secret of the sealed mesh layer.
var benchSecret = []byte("meshbench cluster secret, 32 B..")

// meshOptions are the options of every node of the mesh layer: the defaults
// but no balancing (a hand-built line must stay a line), the window and,
// when sealed, a cluster secret.
func meshOptions(window int, sealed bool) []node.Option {
	opts := []node.Option{
		node.WithMinConnections(0),
		node.WithReliability(reliability.Config{Window: window}),
	}
	if sealed {
		opts = append(opts, node.WithClusterSecrets(benchSecret))
	}
	return opts
}

// addNodes starts count nodes of kind name with opts on the path, which
// counts and closes them, and returns them with their transports.
func (ts *transports) addNodes(ctx context.Context, p *path, name string, count int, opts []node.Option) ([]*node.Node, []transport.Transport, error) {
	nodes := make([]*node.Node, count)
	trs := make([]transport.Transport, count)
	for i := range nodes {
		tr, err := ts.listen(ctx, name)
		if err != nil {
			return nil, nil, err
		}
		nd, err := node.New(tr, opts...)
		if err != nil {
			_ = tr.Close()
			return nil, nil, fmt.Errorf("meshbench: node: %w", err)
		}
		nodes[i], trs[i] = nd, tr
		p.closers = append(p.closers, func() { _ = nd.Close() })
		p.wg.Go(func() {
			for e := range nd.Events() {
				if e.Kind == node.DeliveryFailed {
					p.failed.Add(1)
				}
			}
		})
	}
	p.nodes = append(p.nodes, nodes...)
	return nodes, trs, nil
}

// connect links node i to node j of nodes.
func connect(ctx context.Context, nodes []*node.Node, i, j int) error {
	if err := nodes[i].Connect(ctx, nodes[j].Addrs()[0]); err != nil {
		return fmt.Errorf("meshbench: connect node %d to node %d: %w", i, j, err)
	}
	return nil
}

// meshPath makes a line of hops+1 nodes of kind name with window (0: the
// default), sealed or not, and waits until the ends route to each other.
func (ts *transports) meshPath(ctx context.Context, name string, hops, window int, sealed bool) (*path, error) {
	p := newPath()
	nodes, _, err := ts.addNodes(ctx, p, name, hops+1, meshOptions(window, sealed))
	if err != nil {
		p.close()
		return nil, err
	}
	p.start = time.Now()
	for i := range hops {
		if err := connect(ctx, nodes, i, i+1); err != nil {
			p.close()
			return nil, err
		}
	}
	first, last := nodes[0], nodes[hops]
	if err := waitRoutes(ctx, first, last, hops); err != nil {
		p.close()
		return nil, err
	}
	p.src, p.dst = &nodeEnd{n: first, to: last.ID()}, &nodeEnd{n: last, to: first.ID()}
	return p, nil
}

// waitRoutes waits until a routes to b and b to a, each at hops hops.
func waitRoutes(ctx context.Context, a, b *node.Node, hops int) error {
	return waitFor(ctx, fmt.Sprintf("routes between the ends of %d hops", hops), func() bool {
		return distance(a, b.ID()) == hops && distance(b, a.ID()) == hops
	})
}

// distance is how many hops n counts to id, or -1.
func distance(n *node.Node, id uuid.UUID) int {
	for _, ni := range n.Topology().Nodes {
		if ni.ID == id {
			return ni.Distance
		}
	}
	return -1
}

// nextHop is n's next hop towards id, or uuid.Nil.
func nextHop(n *node.Node, id uuid.UUID) uuid.UUID {
	for _, ni := range n.Topology().Nodes {
		if ni.ID == id && ni.Distance > 0 {
			return ni.NextHop
		}
	}
	return uuid.Nil
}

// errTimeout is wrapped by waitFor when ctx ends before the condition holds.
var errTimeout = errors.New("meshbench: timed out")

// waitFor polls cond every 2 ms until it holds or ctx ends.
func waitFor(ctx context.Context, what string, cond func() bool) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w waiting for %s: %w", errTimeout, what, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// counters sums what the path's nodes counted.
func (p *path) counters() (retransmits, dropped uint64) {
	for _, n := range p.nodes {
		s := n.Stats()
		retransmits += s.Retransmits
		dropped += s.DroppedForward
	}
	return retransmits, dropped
}
