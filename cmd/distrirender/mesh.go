package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"time"

	pionwebrtc "github.com/pion/webrtc/v4"

	"github.com/distrirender/distrirender/internal/rtcsetup"
	"github.com/distrirender/distrirender/internal/secretfile"
	"github.com/distrirender/distrirender/meshapi"
	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/render"
	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/libp2p"
	"github.com/distrirender/distrirender/transport/memory"
	"github.com/distrirender/distrirender/transport/quic"
	"github.com/distrirender/distrirender/transport/webrtc"
)

// Transport names for --transport.
const (
	transportQUIC   = "quic"
	transportLibp2p = "libp2p"
	transportWebRTC = "webrtc"
	transportMemory = "memory"
)

// webrtcFlags are the flags only --transport webrtc takes.
var webrtcFlags = []string{"signal", "serve-signal", "peer-id", "ice-net", "signal-key", "stun", "turn", "turn-user", "turn-password"}

// meshFlags are the flags every command has.
type meshFlags struct {
	transport   string
	listen      string
	join        string
	signal      string
	serveSignal string
	peerID      string
	iceNet      string
	signalKey   string
	stun, turn  string
	turnUser    string
	turnPass    string
	iceServers  []pionwebrtc.ICEServer // --stun and --turn, parsed
	ice         func(net.IP) bool      // --ice-net, parsed
	name        string                 // --name: the node's human name
	secretFile  string                 // --secret-file: the cluster's secrets
	slots       int
	verbose     bool
	fs          *flag.FlagSet
}

func (m *meshFlags) register(fs *flag.FlagSet, listenHelp string) {
	m.fs = fs
	fs.StringVar(&m.transport, "transport", transportQUIC, "`KIND` of transport: quic, libp2p, webrtc, or memory (memory only for the embedded mesh)")
	fs.StringVar(&m.listen, "listen", "", listenHelp)
	fs.StringVar(&m.join, "join", "", "`ADDR` of a node of the cluster to join (quic: HOST:PORT; libp2p: a multiaddr ending in /p2p/ID; webrtc: the node's peer ID)")
	fs.StringVar(&m.signal, "signal", "", "webrtc cluster: `URL` of the PeerJS signalling server every node of the cluster uses, http://HOST:PORT/ (default: the one --serve-signal serves)")
	fs.StringVar(&m.serveSignal, "serve-signal", "", "webrtc cluster: serve the cluster's PeerJS signalling server in this process, on TCP `HOST:PORT` (e.g. 0.0.0.0:9000); give it to one node, the others --signal http://ITS-ADDRESS:PORT/")
	fs.StringVar(&m.peerID, "peer-id", "", "webrtc cluster: this node's `ID` on the signalling server, which other nodes --join: letters and digits, with - or _ between (default: one the server hands out)")
	fs.StringVar(&m.iceNet, "ice-net", "", "webrtc cluster: the networks whose addresses the data channels may use, `CIDR[,...]`, e.g. 192.168.1.0/24 (default: every address but link-local ones)")
	fs.StringVar(&m.signalKey, "signal-key", "", "webrtc cluster: the PeerJS server's API `KEY`, the same for every node and the --serve-signal server (default \"peerjs\")")
	fs.StringVar(&m.stun, "stun", "", "webrtc cluster: STUN servers for NAT traversal, `URL[,...]`, e.g. stun:stun.example.org:3478 (default: none)")
	fs.StringVar(&m.turn, "turn", "", "webrtc cluster: TURN relays, `URL[,...]`, e.g. turn:turn.example.org:3478?transport=udp, with --turn-user and --turn-password")
	fs.StringVar(&m.turnUser, "turn-user", "", "webrtc cluster: the `NAME` to give the --turn servers")
	fs.StringVar(&m.turnPass, "turn-password", "", "webrtc cluster: the `SECRET` to give the --turn servers")
	fs.StringVar(&m.name, "name", "", "cluster: this node's human `NAME`, advertised to the mesh and shown in the coordinator's report and by meshnode (at most 64 bytes, no control characters)")
	fs.StringVar(&m.secretFile, "secret-file", "", "cluster: `PATH` of the cluster's secrets, one per line (the first proves this node, all are accepted); only nodes holding one join (docs/SECURITY.md)")
	fs.IntVar(&m.slots, "slots", 0, fmt.Sprintf("tiles each worker renders at once (default GOMAXPROCS, %d here; at most %d)", runtime.GOMAXPROCS(0), render.MaxSlots))
	fs.BoolVar(&m.verbose, "v", false, "log what the nodes and the job protocol do")
}

func (m *meshFlags) validate() error {
	switch m.transport {
	case transportQUIC, transportLibp2p, transportWebRTC, transportMemory:
	default:
		return usagef("--transport %q: want quic, libp2p, webrtc or memory", m.transport)
	}
	if m.slots < 0 || m.slots > render.MaxSlots {
		return usagef("--slots %d: want 0 (GOMAXPROCS) to %d", m.slots, render.MaxSlots)
	}
	if err := meshapi.CheckName(m.name); err != nil {
		return usagef("--name %q: %w", m.name, err)
	}
	if m.transport != transportWebRTC {
		for _, f := range webrtcFlags {
			if m.set(f) {
				return usagef("--%s is for --transport webrtc", f)
			}
		}
	}
	switch {
	case m.join == "":
	case m.transport == transportQUIC && strings.HasPrefix(m.join, "/"):
		return usagef("--join %q is a multiaddr: use --transport libp2p, or a HOST:PORT", m.join)
	case m.transport == transportQUIC:
		if _, _, err := net.SplitHostPort(m.join); err != nil {
			return usagef("--join %q: want HOST:PORT (a PeerJS peer ID needs --transport webrtc)", m.join)
		}
	case m.transport == transportWebRTC && !webrtc.ValidID(m.join):
		return usagef("--join %q is not a PeerJS peer ID: with --transport webrtc, give the peer ID a node printed (or its --peer-id), and the server's URL as --signal", m.join)
	}
	if m.transport != transportWebRTC {
		return nil
	}
	if m.set("listen") {
		return usagef("--listen is for quic and libp2p: a webrtc node is named by --peer-id and found through the signalling server (--signal, --serve-signal)")
	}
	if m.signal != "" {
		if err := rtcsetup.CheckSignalURL(m.signal); err != nil {
			return usageError{error: err}
		}
	}
	if m.set("serve-signal") {
		if _, _, err := net.SplitHostPort(m.serveSignal); err != nil {
			return usagef("--serve-signal %q: want HOST:PORT, such as 0.0.0.0:9000", m.serveSignal)
		}
	}
	if m.set("peer-id") && !webrtc.ValidID(m.peerID) {
		return usagef("--peer-id %q: want letters and digits, with single -, _ or spaces between them (at most 128 bytes)", m.peerID)
	}
	if m.set("ice-net") {
		f, err := rtcsetup.ParseICENet(m.iceNet)
		if err != nil {
			return usageError{error: err}
		}
		m.ice = f
	}
	servers, err := rtcsetup.ICEServers(splitList(m.stun), splitList(m.turn), m.turnUser, m.turnPass)
	if err != nil {
		return usageError{error: err}
	}
	m.iceServers = servers
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
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

// nodeSpec says which transport a node gets, and where.
type nodeSpec struct {
	kind   string
	listen string          // quic, libp2p: the address to listen on
	mem    *memory.Network // memory: the network
	// name is the node's address on mem, or its webrtc peer ID ("": one
	// the signalling server hands out).
	name string
	// nodeName is the node's human name (node.WithName; "": none).
	nodeName string
	// secrets are the cluster's secrets (node.WithClusterSecrets; none:
	// an open cluster).
	secrets [][]byte
	signal  string                 // webrtc: the signalling server's URL
	key     string                 // webrtc: the signalling server's API key ("": the default)
	ice     func(net.IP) bool      // webrtc: the addresses ICE may use (nil: loopback)
	servers []pionwebrtc.ICEServer // webrtc: STUN and TURN servers
	// waitSignal has a webrtc node wait for an unreachable signalling
	// server, for at most signalPatience (0: no limit).
	waitSignal     bool
	signalPatience time.Duration
	// signalHint is the --signal URL other machines use (webrtc).
	signalHint string
}

// clusterSpec returns the spec of this process's node in a LAN cluster.
// With --serve-signal it first serves the signalling server; stop, to call
// after the node is closed, stops it.
func (m *meshFlags) clusterSpec(stderr io.Writer, log *slog.Logger) (spec nodeSpec, stop func(), err error) {
	spec = nodeSpec{kind: m.transport, listen: m.clusterListen(), nodeName: m.name}
	stop = func() {}
	if m.secretFile != "" {
		secrets, exposed, err := secretfile.Read(m.secretFile)
		if err != nil {
			return spec, stop, usagef("--secret-file: %w", err)
		}
		if exposed {
			log.Warn("the secret file may be read by other users: chmod 600 it", "path", m.secretFile)
		}
		spec.secrets = secrets
	}
	if m.transport != transportWebRTC {
		return spec, stop, nil
	}
	if m.signal == "" && m.serveSignal == "" {
		return spec, stop, usagef("a webrtc cluster needs a PeerJS signalling server: --signal URL of a running one, or --serve-signal HOST:PORT to serve one in this process")
	}
	spec = nodeSpec{kind: m.transport, nodeName: m.name, secrets: spec.secrets, name: m.peerID, signal: m.signal, key: m.signalKey, ice: m.ice, servers: m.iceServers, signalHint: m.signal, waitSignal: true}
	if spec.ice == nil {
		spec.ice = rtcsetup.ClusterICE
	}
	if m.serveSignal != "" {
		srv, err := rtcsetup.ServeKey(m.serveSignal, m.signalKey, log.With("component", "signal"))
		if err != nil {
			return spec, stop, fmt.Errorf("--serve-signal: %w", err)
		}
		fmt.Fprintf(stderr, "signalling server listening on %s: other nodes give --signal %s\n", srv.Addr, srv.PublicURL())
		if spec.signal == "" {
			spec.signal, spec.signalHint = srv.URL, srv.PublicURL()
		}
		stop = srv.Close
	}
	return spec, stop, nil
}

// newLogger logs warnings to w, or everything with verbose.
func newLogger(w io.Writer, verbose bool, level slog.Level) *slog.Logger {
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// newTransport opens the transport s says.
func newTransport(ctx context.Context, s nodeSpec, log *slog.Logger) (transport.Transport, error) {
	switch s.kind {
	case transportQUIC:
		return quic.Listen(s.listen, quic.Config{Logger: log})
	case transportLibp2p:
		var addrs []string
		if s.listen != "" {
			addrs = []string{s.listen}
		}
		return libp2p.New(libp2p.Config{ListenAddrs: addrs, Logger: log})
	case transportWebRTC:
		tlog := log
		if !log.Enabled(ctx, slog.LevelDebug) {
			tlog = slog.New(rtcsetup.QuietPion(log.Handler()))
		}
		cfg := webrtc.Config{Server: s.signal, Key: s.key, ID: s.name, IPFilter: s.ice, ICEServers: s.servers, Logger: tlog}
		if s.waitSignal {
			return rtcsetup.Open(ctx, cfg, s.signalPatience, log)
		}
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		return webrtc.New(ctx, cfg)
	case transportMemory:
		if s.mem == nil {
			return nil, usagef("the memory transport exists only inside one process: use it for the embedded mesh")
		}
		return s.mem.Listen(s.name)
	}
	return nil, usagef("unknown transport %q", s.kind)
}

// newNode makes a node on a new transport; the node owns the transport.
func newNode(ctx context.Context, s nodeSpec, log *slog.Logger) (*node.Node, error) {
	tr, err := newTransport(ctx, s, log)
	if err != nil {
		if s.kind == transportWebRTC {
			return nil, fmt.Errorf("webrtc on signalling server %s: %w", s.signal, err)
		}
		return nil, fmt.Errorf("listen %s on %s: %w", s.kind, s.listen, err)
	}
	opts := []node.Option{node.WithLogger(log)}
	if s.nodeName != "" {
		opts = append(opts, node.WithName(s.nodeName))
	}
	if len(s.secrets) > 0 {
		opts = append(opts, node.WithClusterSecrets(s.secrets...))
	}
	n, err := node.New(tr, opts...)
	if err != nil {
		tr.Close()
		return nil, err
	}
	return n, nil
}

// describe says where node n, made from s, can be reached.
func (s nodeSpec) describe(n *node.Node) string {
	if s.kind == transportWebRTC {
		return fmt.Sprintf("peer ID %s (webrtc, signalling server %s)", n.Addrs()[0], s.signal)
	}
	return strings.Join(n.Addrs(), ", ")
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
				return fmt.Errorf("could not join the cluster: no node at %s accepted within %v; is a distrirender worker running there? (last attempt: %w)", addr, patience, err)
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
