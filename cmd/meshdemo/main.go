// Command meshdemo builds a mesh of nodes in one process on the in-memory
// transport, sends unicast and broadcast traffic across several hops over
// lossy links, and prints the topology and what arrived.
//
//	go run ./cmd/meshdemo [-nodes 8] [-messages 2000] [-loss 0.05] [-seed 1]
//	go run ./cmd/meshdemo --version
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/ops"
	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/reliability"
	"github.com/distrirender/distrirender/routing"
	"github.com/distrirender/distrirender/transport/memory"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs the demo with the command line args and returns the exit
// status: 0 when it ran (or -h, --version), 2 for a bad command line, 1 when
// the demo failed.
func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && ops.IsVersionFlag(args[0]) {
		ops.PrintVersion(stdout, "meshdemo")
		return 0
	}
	err := run(args, stdout, stderr)
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "meshdemo:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "meshdemo:", err)
		return 1
	}
}

// usageError is a mistake on the command line.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func run(args []string, out, stderr io.Writer) error {
	fs := flag.NewFlagSet("meshdemo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	size := fs.Int("nodes", 8, "nodes in the mesh (3 to 200)")
	count := fs.Int("messages", 2000, "unicast messages to send across the mesh")
	bcasts := fs.Int("broadcasts", 50, "broadcasts to send")
	loss := fs.Float64("loss", 0.05, "frame loss probability on every link, 0 to 0.5")
	seed := fs.Int64("seed", 1, "seed for the network's faults")
	verbose := fs.Bool("v", false, "log what the nodes do")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	switch {
	case fs.NArg() > 0:
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	case *size < 3 || *size > 200:
		return usageError{fmt.Errorf("-nodes %d: want 3 to 200", *size)}
	case *count < 0 || *bcasts < 0:
		return usageError{errors.New("-messages and -broadcasts must not be negative")}
	case *loss < 0 || *loss > 0.5:
		return usageError{fmt.Errorf("-loss %v: want 0 to 0.5", *loss)}
	}
	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	// 200 nodes take under a minute on two cores; their keepalives and
	// link-state refreshes are most of the work.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	net := memory.NewNetwork(memory.Config{Seed: *seed})
	defer net.Close()
	nodes := make([]*node.Node, *size)
	names := map[uuid.UUID]string{}
	for i := range nodes {
		tr, err := net.Listen(fmt.Sprintf("n%d", i))
		if err != nil {
			return err
		}
		nodes[i], err = node.New(tr,
			node.WithLogger(logger.With("name", fmt.Sprintf("n%d", i))),
			node.WithKeepalive(100*time.Millisecond, 20),
			node.WithReliability(reliability.Config{MinRTO: 10 * time.Millisecond, MaxRTO: 500 * time.Millisecond, MaxRetries: 30}),
			node.WithRouting(routing.Config{RefreshInterval: time.Second}),
			// A sparse mesh, so that messages cross several hops: each
			// node keeps 2 to 4 neighbours, balancing dialling the farthest.
			node.WithMinConnections(demoMinConnections),
			node.WithMaxConnections(demoMaxConnections),
		)
		if err != nil {
			return err
		}
		defer nodes[i].Close()
		names[nodes[i].ID()] = fmt.Sprintf("n%d", i)
	}
	// Each node joins the mesh through one node already in it, as a real
	// cluster grows; full nodes redirect it, and balancing adds the
	// long-range edges. (The demo used to wire a ring with chords by hand
	// while balancing was on: a node whose slots balancing had filled
	// refused the demo's own Connect with ErrFull, so "-nodes 150" failed.)
	rng := rand.New(rand.NewPCG(uint64(*seed), 0))
	for i := 1; i < len(nodes); i++ {
		j := rng.IntN(i)
		if err := nodes[i].Connect(ctx, fmt.Sprintf("n%d", j)); err != nil && !errors.Is(err, node.ErrDuplicateEdge) {
			return fmt.Errorf("n%d joining through n%d: %w", i, j, err)
		}
	}
	joined := time.Now()
	cctx, ccancel := context.WithTimeout(ctx, convergeTimeout)
	err := waitConverged(cctx, nodes)
	ccancel()
	took := time.Since(joined)
	if err != nil {
		return err
	}
	for i := range nodes {
		for j := i + 1; j < len(nodes); j++ {
			net.SetFaults(fmt.Sprintf("n%d", i), fmt.Sprintf("n%d", j), memory.Faults{Loss: *loss, Reorder: *loss, Jitter: time.Millisecond})
		}
	}
	tp := nodes[0].Topology()
	fmt.Fprintf(out, "mesh of %d nodes on the in-memory network: %.0f%% loss and reordering on every link (seed %d)\n", *size, *loss*100, *seed)
	fmt.Fprintf(out, "topology as n0 sees it once every node's view is complete and true (after %v; diameter %d hops):\n",
		took.Round(time.Millisecond), tp.Diameter())
	byName := slices.Clone(tp.Nodes)
	slices.SortFunc(byName, func(a, b routing.NodeInfo) int { return strings.Compare(names[a.ID], names[b.ID]) })
	for _, ni := range byName {
		var nb []string
		for _, id := range ni.Neighbors {
			nb = append(nb, names[id])
		}
		slices.Sort(nb)
		hop := "-"
		if ni.NextHop != uuid.Nil {
			hop = names[ni.NextHop]
		}
		fmt.Fprintf(out, "  %-4s %s  distance %d via %-4s neighbours %s\n", names[ni.ID], ni.ID.String()[:8], ni.Distance, hop, strings.Join(nb, " "))
	}

	// Unicast from n0 to the node farthest from it.
	far := tp.Nodes[0]
	for _, ni := range tp.Nodes {
		if ni.Distance > far.Distance {
			far = ni
		}
	}
	dst := nodes[0]
	for _, nd := range nodes {
		if nd.ID() == far.ID {
			dst = nd
		}
	}
	start := time.Now()
	go func() {
		for i := range *count {
			b := make([]byte, 64)
			binary.BigEndian.PutUint64(b, uint64(i))
			if nodes[0].Send(ctx, far.ID, b) != nil {
				return
			}
		}
	}()
	inOrder := true
	for i := range *count {
		d, err := dst.Receive(ctx)
		if err != nil {
			return fmt.Errorf("after %d of %d messages: %w", i, *count, err)
		}
		if binary.BigEndian.Uint64(d.Body) != uint64(i) {
			inOrder = false
		}
	}
	el := time.Since(start)
	fmt.Fprintf(out, "unicast n0 -> %s (%d hops): %d messages delivered, in order: %v, in %v (%.0f msg/s)\n",
		names[far.ID], far.Distance, *count, inOrder, el.Round(time.Millisecond), float64(*count)/el.Seconds())

	// Broadcasts from the last node: everyone else gets each one once.
	src := nodes[len(nodes)-1]
	start = time.Now()
	go func() {
		for i := range *bcasts {
			b := make([]byte, 32)
			binary.BigEndian.PutUint64(b, uint64(i))
			if src.Broadcast(ctx, b) != nil {
				return
			}
		}
	}()
	for i, nd := range nodes[:len(nodes)-1] {
		for k := range *bcasts {
			d, err := nd.Receive(ctx)
			if err != nil {
				return fmt.Errorf("n%d got %d of %d broadcasts: %w", i, k, *bcasts, err)
			}
			if !d.Broadcast || d.From != src.ID() || binary.BigEndian.Uint64(d.Body) != uint64(k) {
				return fmt.Errorf("n%d: unexpected delivery %+v", i, d)
			}
		}
	}
	fmt.Fprintf(out, "broadcast from %s: %d messages, each delivered exactly once to all %d other nodes, in %v\n",
		names[src.ID()], *bcasts, len(nodes)-1, time.Since(start).Round(time.Millisecond))

	var fwd, retx uint64
	for _, nd := range nodes {
		s := nd.Stats()
		fwd, retx = fwd+s.Forwarded, retx+s.Retransmits
	}
	ns := net.Stats()
	fmt.Fprintf(out, "network: %d frames sent, %d lost; nodes forwarded %d frames and retransmitted %d messages end to end\n",
		ns.Sent, ns.Lost, fwd, retx)
	return nil
}

// The demo's mesh: each node keeps demoMinConnections to
// demoMaxConnections neighbours, so that the mesh is sparse and a message
// crosses several hops. convergeTimeout bounds the wait for balancing to
// finish and every node to see the whole mesh as it is.
const (
	demoMinConnections = 2
	demoMaxConnections = 4
	convergeTimeout    = 30 * time.Second
)

// waitConverged waits until balancing is done and every node's link-state
// view holds every node, reachable, with exactly the neighbours that node
// has: the topology is final, and printing it is not a race with the floods
// still under way.
func waitConverged(ctx context.Context, nodes []*node.Node) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if converged(nodes) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the nodes' views of the mesh did not converge: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// converged reports whether balancing is done (every node has its minimum
// of neighbours) and every node's view of the mesh is complete and true.
func converged(nodes []*node.Node) bool {
	actual := make(map[uuid.UUID][]uuid.UUID, len(nodes))
	for _, nd := range nodes {
		actual[nd.ID()] = nd.Neighbors()
		if len(actual[nd.ID()]) < min(demoMinConnections, len(nodes)-1) {
			return false
		}
	}
	for _, nd := range nodes {
		tp := nd.Topology()
		if len(tp.Nodes) != len(nodes) {
			return false
		}
		for _, ni := range tp.Nodes {
			if ni.Distance < 0 || !slices.Equal(ni.Neighbors, actual[ni.ID]) {
				return false
			}
		}
	}
	return true
}
