// Command meshdemo builds a mesh of nodes in one process on the in-memory
// transport, sends unicast and broadcast traffic across several hops over
// lossy links, and prints the topology and what arrived.
//
//	go run ./cmd/meshdemo [-nodes 8] [-messages 2000] [-loss 0.05] [-seed 1]
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/reliability"
	"github.com/distrirender/distrirender/routing"
	"github.com/distrirender/distrirender/transport/memory"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "meshdemo:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("meshdemo", flag.ContinueOnError)
	size := fs.Int("nodes", 8, "nodes in the mesh (3 to 200)")
	count := fs.Int("messages", 2000, "unicast messages to send across the mesh")
	bcasts := fs.Int("broadcasts", 50, "broadcasts to send")
	loss := fs.Float64("loss", 0.05, "frame loss probability on every link, 0 to 0.5")
	seed := fs.Int64("seed", 1, "seed for the network's faults")
	verbose := fs.Bool("v", false, "log what the nodes do")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *size < 3 || *size > 200 || *count < 0 || *bcasts < 0 || *loss < 0 || *loss > 0.5 {
		return errors.New("flags out of range (see -h)")
	}
	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
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
		)
		if err != nil {
			return err
		}
		defer nodes[i].Close()
		names[nodes[i].ID()] = fmt.Sprintf("n%d", i)
	}
	// A ring with a few chords: several hops between most pairs, and more
	// than one way round.
	for i := range nodes {
		links := []int{(i + 1) % *size}
		if i%3 == 0 && *size > 6 {
			links = append(links, (i+*size/2)%*size)
		}
		for _, j := range links {
			if err := nodes[i].Connect(ctx, fmt.Sprintf("n%d", j)); err != nil && !errors.Is(err, node.ErrDuplicateEdge) {
				return fmt.Errorf("n%d -> n%d: %w", i, j, err)
			}
		}
	}
	if err := waitConverged(ctx, nodes); err != nil {
		return err
	}
	for i := range nodes {
		for j := i + 1; j < len(nodes); j++ {
			net.SetFaults(fmt.Sprintf("n%d", i), fmt.Sprintf("n%d", j), memory.Faults{Loss: *loss, Reorder: *loss, Jitter: time.Millisecond})
		}
	}
	tp := nodes[0].Topology()
	fmt.Fprintf(out, "mesh of %d nodes on the in-memory network: %.0f%% loss and reordering on every link (seed %d)\n", *size, *loss*100, *seed)
	fmt.Fprintf(out, "topology as n0 sees it (diameter %d hops):\n", tp.Diameter())
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

func waitConverged(ctx context.Context, nodes []*node.Node) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ok := true
		for _, nd := range nodes {
			reachable := 0
			for _, ni := range nd.Topology().Nodes {
				if ni.Distance >= 0 {
					reachable++
				}
			}
			ok = ok && reachable == len(nodes)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("routes did not converge: %w", ctx.Err())
		case <-tick.C:
		}
	}
}
