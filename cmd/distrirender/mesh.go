package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/render"
	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/libp2p"
	"github.com/distrirender/distrirender/transport/memory"
	"github.com/distrirender/distrirender/transport/quic"
)

// Transport names for --transport.
const (
	transportQUIC   = "quic"
	transportLibp2p = "libp2p"
	transportMemory = "memory"
)

// meshFlags are the flags every command has.
type meshFlags struct {
	transport string
	listen    string
	join      string
	slots     int
	verbose   bool
	fs        *flag.FlagSet
}

func (m *meshFlags) register(fs *flag.FlagSet, listenHelp string) {
	m.fs = fs
	fs.StringVar(&m.transport, "transport", transportQUIC, "`KIND` of transport: quic, libp2p, or memory (memory only for the embedded mesh)")
	fs.StringVar(&m.listen, "listen", "", listenHelp)
	fs.StringVar(&m.join, "join", "", "`ADDR` of a node of the cluster to join (quic: HOST:PORT; libp2p: a multiaddr ending in /p2p/ID)")
	fs.IntVar(&m.slots, "slots", 0, fmt.Sprintf("tiles each worker renders at once (default GOMAXPROCS, %d here; at most %d)", runtime.GOMAXPROCS(0), render.MaxSlots))
	fs.BoolVar(&m.verbose, "v", false, "log what the nodes and the job protocol do")
}

func (m *meshFlags) validate() error {
	switch m.transport {
	case transportQUIC, transportLibp2p, transportMemory:
	default:
		return usagef("--transport %q: want quic, libp2p or memory", m.transport)
	}
	if m.slots < 0 || m.slots > render.MaxSlots {
		return usagef("--slots %d: want 0 (GOMAXPROCS) to %d", m.slots, render.MaxSlots)
	}
	if m.join != "" && m.transport == transportQUIC && strings.HasPrefix(m.join, "/") {
		return usagef("--join %q is a multiaddr: use --transport libp2p, or a HOST:PORT", m.join)
	}
	return nil
}

// set reports whether the flag was given on the command line.
func (m *meshFlags) set(name string) bool {
	found := false
	m.fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// clusterListen returns the listen address of a cluster node: --listen, or
// every interface on a port the system picks.
func (m *meshFlags) clusterListen() string {
	if m.listen != "" {
		return m.listen
	}
	if m.transport == transportLibp2p {
		return "/ip4/0.0.0.0/udp/0/quic-v1"
	}
	return "0.0.0.0:0"
}

// newLogger logs warnings to w, or everything with verbose.
func newLogger(w io.Writer, verbose bool, level slog.Level) *slog.Logger {
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// newTransport opens a transport of the given kind. name is the node's
// address on the memory network mem.
func newTransport(kind, listen string, mem *memory.Network, name string, log *slog.Logger) (transport.Transport, error) {
	switch kind {
	case transportQUIC:
		return quic.Listen(listen, quic.Config{Logger: log})
	case transportLibp2p:
		var addrs []string
		if listen != "" {
			addrs = []string{listen}
		}
		return libp2p.New(libp2p.Config{ListenAddrs: addrs, Logger: log})
	case transportMemory:
		if mem == nil {
			return nil, usagef("the memory transport exists only inside one process: use it for the embedded mesh")
		}
		return mem.Listen(name)
	}
	return nil, usagef("unknown transport %q", kind)
}

// newNode makes a node on a new transport; the node owns the transport.
func newNode(kind, listen string, mem *memory.Network, name string, log *slog.Logger) (*node.Node, error) {
	tr, err := newTransport(kind, listen, mem, name, log)
	if err != nil {
		return nil, fmt.Errorf("listen %s on %s: %w", kind, listen, err)
	}
	n, err := node.New(tr, node.WithLogger(log))
	if err != nil {
		tr.Close()
		return nil, err
	}
	return n, nil
}

// join connects n to addr, retrying with back-off until it succeeds, ctx ends
// or patience runs out (zero: no limit).
func join(ctx context.Context, n *node.Node, addr string, patience time.Duration, log *slog.Logger) error {
	if patience > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, patience)
		defer cancel()
	}
	backoff := 250 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := n.Connect(actx, addr)
		cancel()
		if err == nil || errors.Is(err, node.ErrDuplicateEdge) {
			return nil
		}
		if errors.Is(err, node.ErrClosed) {
			return err
		}
		log.Info("joining failed; retrying", "addr", addr, "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("could not join %s: %w", addr, err)
			}
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// stayJoined rejoins addr whenever n has no neighbour left, until ctx ends.
func stayJoined(ctx context.Context, n *node.Node, addr string, log *slog.Logger) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if len(n.Neighbors()) == 0 {
				log.Warn("no neighbour left; joining again", "addr", addr)
				if err := join(ctx, n, addr, 0, log); err != nil {
					return
				}
			}
		}
	}
}

func short(s string) string { return s[:8] }
