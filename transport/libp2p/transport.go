package libp2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	golibp2p "github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	msmux "github.com/multiformats/go-multistream"

	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/internal/edgeset"
)

// ProtocolID is the libp2p protocol of a mesh edge: one stream of it per edge.
const ProtocolID protocol.ID = "/distrirender/mesh/1.0.0"

// DefaultListenAddrs are the addresses a transport's own host listens on when
// Config.ListenAddrs is empty: QUIC and TCP on loopback, on ports the system
// picks. A host that other machines should reach needs explicit addresses,
// such as /ip4/0.0.0.0/udp/4242/quic-v1.
var DefaultListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/0"}

// DefaultLinger is how long a closed edge waits for the peer to close its
// side before the stream is freed, unless Config.Linger says otherwise. A
// live peer answers within a round trip (the node above closes its side as
// soon as it reads the end of the edge); the second is for a slow or dead one.
const DefaultLinger = time.Second

// DefaultMDNSService is the mDNS service name under which transports announce
// themselves and look for each other unless Config.MDNSService says otherwise.
// It differs from libp2p's own "_p2p._udp" so that a mesh does not try to
// connect to every libp2p program on the LAN.
const DefaultMDNSService = "_distrirender._udp"

// negotiationTimeout bounds the protocol negotiation of a Dial whose context
// has no earlier deadline, as libp2p's own host does for its streams.
const negotiationTimeout = 10 * time.Second

// discoveredBuffer is the capacity of the Discovered channel.
const discoveredBuffer = 256

// acceptBacklog is the number of inbound edges that wait for Accept; the
// stream handler of a further edge waits for room.
const acceptBacklog = 128

// ErrBadAddress is wrapped (together with transport.ErrUnreachable) by Dial
// errors for an address that is not a multiaddr ending in /p2p/<peer ID>.
var ErrBadAddress = errors.New("libp2p: not a multiaddr with a /p2p/ peer ID")

// Config configures a Transport. The zero value is a usable configuration:
// a new host on loopback QUIC and TCP, transport.DefaultMaxFrame, no mDNS.
type Config struct {
	// ListenAddrs are the multiaddrs the transport's own host listens on;
	// empty means DefaultListenAddrs (loopback only). Ignored with Host.
	ListenAddrs []string
	// Host, if not nil, is used instead of a host of the transport's own. The
	// transport sets its stream handler on it and removes it on Close, but
	// never closes the host; New fails if the host handles ProtocolID
	// already. ListenAddrs and PrivateKey are then ignored.
	Host host.Host
	// PrivateKey is the identity of the transport's own host, and so its peer
	// ID; nil means a fresh Ed25519 key. Ignored with Host.
	PrivateKey crypto.PrivKey
	// MaxFrame is the largest frame Send accepts and Receive allows; zero
	// means transport.DefaultMaxFrame. Both ends of an edge should agree: a
	// receiver ends an edge on which a longer frame is announced.
	MaxFrame int
	// Linger bounds how long a closed edge waits for the peer to close its
	// side (see the package documentation); zero means DefaultLinger.
	Linger time.Duration
	// Logger receives the transport's logs; nil discards them.
	Logger *slog.Logger
	// MDNS runs libp2p's mDNS discovery on the host and reports the peers it
	// finds on Discovered.
	MDNS bool
	// MDNSService is the mDNS service name; empty means DefaultMDNSService.
	// Only transports with the same name find each other.
	MDNSService string
}

var _ transport.Transport = (*Transport)(nil)

// Transport is a mesh transport on a libp2p host. It implements
// transport.Transport and is safe for concurrent use.
type Transport struct {
	h        host.Host
	ownHost  bool
	maxFrame int
	linger   time.Duration
	log      *slog.Logger
	bufs     sync.Pool // write buffers of the edges' Sends (getBuf)

	edges *edgeset.Set[*Edge] // open edges, the accept queue; closed when Close starts

	// cut, when cancelled, ends every linger at once.
	cut     context.Context
	cutStop context.CancelFunc
	lingers sync.WaitGroup // edges in their linger

	mdns *discovery // nil without Config.MDNS

	mu    sync.Mutex      // held around edges.Track and edges.Untrack: peers agrees with edges
	peers map[peer.ID]int // tracked edges per peer, for the connection manager
	tag   string          // our tag in the connection manager

	closeOnce sync.Once
	closeErr  error
}

// New returns a transport listening on cfg.ListenAddrs, or on cfg.Host, and
// ready to Dial and Accept.
func New(cfg Config) (*Transport, error) {
	if cfg.MaxFrame < 0 {
		return nil, fmt.Errorf("libp2p: negative MaxFrame %d", cfg.MaxFrame)
	}
	if cfg.Linger < 0 {
		return nil, fmt.Errorf("libp2p: negative Linger %v", cfg.Linger)
	}
	t := &Transport{
		h:        cfg.Host,
		maxFrame: cfg.MaxFrame,
		linger:   cfg.Linger,
		log:      cfg.Logger,
		edges:    edgeset.New[*Edge](acceptBacklog),
		peers:    make(map[peer.ID]int),
	}
	if t.maxFrame == 0 {
		t.maxFrame = transport.DefaultMaxFrame
	}
	if t.linger == 0 {
		t.linger = DefaultLinger
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.h == nil {
		h, err := newHost(cfg)
		if err != nil {
			return nil, err
		}
		t.h, t.ownHost = h, true
	}
	t.log = t.log.With("peer", shortID(t.h.ID()))
	t.tag = fmt.Sprintf("distrirender-mesh-%p", t)
	if !t.ownHost && slices.Contains(t.h.Mux().Protocols(), ProtocolID) {
		return nil, fmt.Errorf("libp2p: the host already handles %s (another transport on it?)", ProtocolID)
	}
	t.cut, t.cutStop = context.WithCancel(context.Background())
	t.h.SetStreamHandler(ProtocolID, t.handle)
	if cfg.MDNS {
		d, err := startDiscovery(t, cfg.MDNSService)
		if err != nil {
			_ = t.Close()
			return nil, err
		}
		t.mdns = d
	}
	return t, nil
}

// newHost makes the transport's own host: QUIC and TCP only, libp2p's
// default security and muxers, and nothing that would reach beyond the
// addresses the mesh dials.
func newHost(cfg Config) (host.Host, error) {
	listen := cfg.ListenAddrs
	if len(listen) == 0 {
		listen = DefaultListenAddrs
	}
	opts := []golibp2p.Option{
		golibp2p.ListenAddrStrings(listen...),
		golibp2p.Transport(libp2pquic.NewTransport),
		golibp2p.Transport(tcp.NewTCPTransport),
		golibp2p.DisableRelay(),
		// Reachability is not probed: no AutoNAT dials through other peers.
		golibp2p.ForceReachabilityPrivate(),
		// No global Prometheus registrations from a library.
		golibp2p.DisableMetrics(),
		golibp2p.UserAgent("distrirender"),
		// Not set, so off: NATPortMap (UPnP, NAT-PMP), EnableHolePunching,
		// EnableAutoRelay, EnableRelayService, EnableNATService.
	}
	if cfg.PrivateKey != nil {
		opts = append(opts, golibp2p.Identity(cfg.PrivateKey))
	}
	h, err := golibp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("libp2p: making the host on %q: %w", listen, err)
	}
	return h, nil
}

// Host returns the libp2p host the transport runs on.
func (t *Transport) Host() host.Host { return t.h }

// MaxFrame returns the largest frame its edges' Send accepts.
func (t *Transport) MaxFrame() int { return t.maxFrame }

// Addrs returns every address the host listens on (its interface addresses,
// for a host listening on an unspecified address such as 0.0.0.0), each
// followed by /p2p/ and the host's peer ID.
func (t *Transport) Addrs() []string {
	addrs, err := t.h.Network().InterfaceListenAddresses()
	if err != nil || len(addrs) == 0 {
		addrs = t.h.Addrs()
	}
	return p2pAddrs(t.h.ID(), addrs)
}

// p2pAddrs appends /p2p/<id> to each address, without duplicates.
func p2pAddrs(id peer.ID, addrs []ma.Multiaddr) []string {
	suffix := ma.StringCast("/p2p/" + id.String())
	out := make([]string, 0, len(addrs))
	seen := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		if _, last := ma.SplitLast(a); last != nil && last.Protocol().Code == ma.P_P2P {
			a, _ = ma.SplitLast(a)
		}
		s := a.Encapsulate(suffix).String()
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// ParseAddr parses a transport address: a multiaddr that ends in /p2p/ and a
// peer ID. Its error wraps ErrBadAddress.
func ParseAddr(addr string) (peer.AddrInfo, error) {
	if len(addr) == 0 || addr[0] != '/' {
		return peer.AddrInfo{}, fmt.Errorf("%w: %q", ErrBadAddress, addr)
	}
	m, err := ma.NewMultiaddr(addr)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("%w: %q: %w", ErrBadAddress, addr, err)
	}
	info, err := peer.AddrInfoFromP2pAddr(m)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("%w: %q: %w", ErrBadAddress, addr, err)
	}
	return *info, nil
}

// Dial opens an edge to the transport at addr: it connects to the peer (or
// reuses a connection to it), opens a stream and agrees on ProtocolID with
// the other side before it returns, so the other side's Accept has the edge
// and a peer that does not run the mesh protocol fails the Dial.
//
// An address of just /p2p/<peer ID> dials the peer at the addresses the host
// knows for it already (from mDNS, say).
//
// Errors wrap transport.ErrUnreachable, together with ErrBadAddress for an
// address that is not a multiaddr ending in /p2p/<peer ID>; they wrap
// transport.ErrClosed once the transport is closed, and they are ctx's error
// if ctx ends first. Dial ignores libp2p's dial back-off for the peer: the
// node above has its own.
func (t *Transport) Dial(ctx context.Context, addr string) (transport.Edge, error) {
	if t.edges.Closed() {
		return nil, t.errClosed("Dial")
	}
	info, err := ParseAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("libp2p: dial: %w: %w", transport.ErrUnreachable, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if info.ID == t.h.ID() {
		return nil, fmt.Errorf("libp2p: dial %s: %w: that is this host", addr, transport.ErrUnreachable)
	}
	s, err := t.openStream(ctx, info)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		if t.edges.Closed() {
			return nil, t.errClosed("Dial")
		}
		return nil, fmt.Errorf("libp2p: dial %s: %w: %w", addr, transport.ErrUnreachable, err)
	}
	e := newEdge(t, s)
	if !t.track(e) {
		_ = s.Reset()
		return nil, t.errClosed("Dial")
	}
	t.log.Debug("edge dialled", "remote", e.remote)
	return e, nil
}

// openStream connects to the peer, opens a stream and negotiates ProtocolID
// on it, all within ctx.
func (t *Transport) openStream(ctx context.Context, info peer.AddrInfo) (network.Stream, error) {
	t.h.Peerstore().AddAddrs(info.ID, info.Addrs, peerstore.TempAddrTTL)
	dctx := network.WithForceDirectDial(ctx, "distrirender mesh edge")
	if err := t.h.Connect(dctx, info); err != nil {
		return nil, err
	}
	s, err := t.h.Network().NewStream(network.WithNoDial(ctx, "just connected"), info.ID)
	if err != nil {
		return nil, err
	}
	// Negotiate in full rather than lazily (as host.NewStream would for a
	// peer that identify says speaks the protocol): the other side hands the
	// stream to Accept only once it has seen the protocol, and the dialer
	// learns now whether the peer runs the mesh at all.
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	_ = s.SetDeadline(time.Now().Add(negotiationTimeout))
	err = msmux.SelectProtoOrFail(ProtocolID, s)
	if !stop() {
		return nil, ctx.Err()
	}
	if err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("negotiating %s: %w", ProtocolID, err)
	}
	_ = s.SetDeadline(time.Time{})
	if err := s.SetProtocol(ProtocolID); err != nil {
		_ = s.Reset()
		return nil, err
	}
	return s, nil
}

// handle is the stream handler of ProtocolID: it queues an inbound edge for
// Accept. It runs on a goroutine of the host and returns once the edge is
// queued or the transport closes.
func (t *Transport) handle(s network.Stream) {
	e := newEdge(t, s)
	if !t.track(e) {
		_ = s.Reset()
		return
	}
	t.log.Debug("edge accepted", "remote", e.remote)
	select {
	case t.edges.Queue() <- e:
	case <-t.edges.Done():
		_ = e.Close()
	}
}

// Accept waits for the next edge dialled to this transport. It returns an
// error wrapping transport.ErrClosed once the transport is closed, and ctx's
// error if ctx ends first.
func (t *Transport) Accept(ctx context.Context) (transport.Edge, error) {
	return t.edges.Accept(ctx, t.errClosed)
}

// Close stops accepting, closes every edge of the transport (each peer
// receives the frames sent before and then sees the edge closed) and stops
// mDNS. With a host of its own it waits for the edges' lingers, at most
// Config.Linger, and closes the host; with Config.Host it removes its stream
// handler and frees its streams at once, and leaves the host running. When
// Close returns, no goroutine of the transport is left. Close is idempotent;
// it returns the host's error from closing, if any.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		edges, _ := t.edges.Close()

		t.h.RemoveStreamHandler(ProtocolID)
		if t.mdns != nil {
			t.mdns.close()
		}
		if !t.ownHost {
			t.cutStop() // the host stays up and delivers what was sent
		}
		// Every edge that was ever tracked is in edges or closed already, so
		// each linger has started (lingers.Add in Edge.Close) before the Wait:
		// an Edge.Close racing with this one holds up e.Close below until it
		// has.
		for _, e := range edges {
			_ = e.Close()
		}
		t.lingers.Wait()
		t.cutStop()
		if t.ownHost {
			t.closeErr = t.h.Close()
		}
	})
	return t.closeErr
}

func (t *Transport) errClosed(op string) error {
	return fmt.Errorf("libp2p: %s on %s: %w", op, shortID(t.h.ID()), transport.ErrClosed)
}

// track records e as one of t's edges, or reports false if t is closed.
// While a peer has edges, its connections are protected from the host's
// connection manager: the mesh chooses its neighbours itself.
func (t *Transport) track(e *Edge) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.edges.Track(e) {
		return false
	}
	t.peers[e.peer]++
	if t.peers[e.peer] == 1 {
		t.h.ConnManager().Protect(e.peer, t.tag)
	}
	return true
}

func (t *Transport) untrack(e *Edge) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.edges.Untrack(e) {
		return
	}
	t.peers[e.peer]--
	if t.peers[e.peer] == 0 {
		delete(t.peers, e.peer)
		t.h.ConnManager().Unprotect(e.peer, t.tag)
	}
}

// connectedTo reports whether an open edge of t leads to peer p.
func (t *Transport) connectedTo(p peer.ID) bool {
	return slices.ContainsFunc(t.edges.Tracked(), func(e *Edge) bool {
		return e.peer == p && !e.isClosed()
	})
}

// shortID is a peer ID abbreviated for logs and errors.
func shortID(id peer.ID) string {
	s := id.String()
	if len(s) > 12 {
		return "…" + s[len(s)-8:]
	}
	return s
}
