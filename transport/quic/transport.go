package quic

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/internal/edgeset"
)

// ALPN is the application protocol negotiated in the TLS handshake.
const ALPN = "distrirender-mesh/1"

// Version is the preamble byte the dialler writes first on an edge's stream:
// the version of the framing that follows.
const Version byte = 0x01

// Linger bounds how long a closed edge keeps its connection open for the
// peer to read the frames sent before the close (see the package
// documentation). A peer that reads them ends the wait as soon as it has:
// on loopback one edge moves about 250 MB/s (BenchmarkEdge, 64 KiB frames),
// so even a full 6 MiB stream window drains in some 25 ms, and a second
// leaves a wide margin for a busy machine. Linger only runs out for a peer
// that is not reading, or is gone. Edge.Close lingers in the background;
// Transport.Close waits up to Linger for its edges.
const Linger = time.Second

// DefaultIdleTimeout is the QUIC idle timeout when Config.IdleTimeout is zero.
// A mesh node notices a dead neighbour sooner by its own keepalives (3 s by
// default); the idle timeout only reclaims connections nobody watches.
const DefaultIdleTimeout = 30 * time.Second

// handshakeTimeout bounds the QUIC handshake (without a packet from the peer
// for this long a dial fails; quic-go also aborts one that takes twice as
// long) and the wait for the dialler's preamble. quic-go's default; a LAN
// handshake takes a millisecond, so five seconds covers several lost packets.
const handshakeTimeout = 5 * time.Second

// Limits on connections waiting to become edges: acceptBacklog edges wait
// for Accept, and at most maxPending connections are between the handshake
// and Accept (reading the preamble or waiting in the backlog). A connection
// beyond that is closed with application error 0x3.
const (
	acceptBacklog = 32
	maxPending    = 128
)

// Application error codes sent in CONNECTION_CLOSE.
const (
	codeClosed        quicgo.ApplicationErrorCode = 0x0
	codeProtocol      quicgo.ApplicationErrorCode = 0x1
	codeFrameTooLarge quicgo.ApplicationErrorCode = 0x2
	codeBusy          quicgo.ApplicationErrorCode = 0x3
)

// Config configures a Transport. The zero value is a usable configuration.
type Config struct {
	// TLS is used for both sides of every edge: its certificates when
	// accepting, its verification settings when dialling (RootCAs,
	// ServerName, InsecureSkipVerify...) and for client certificates
	// (ClientAuth, ClientCAs). NextProtos and MinVersion are overridden (ALPN,
	// TLS 1.3). Without certificates (Certificates, GetCertificate and
	// GetConfigForClient all unset) the transport generates a self-signed one
	// to accept with. When dialling a name, an empty ServerName is set to it;
	// when dialling an IP address, to the address.
	//
	// nil: generate a self-signed certificate and accept any peer
	// certificate. Nothing is authenticated; see the package documentation.
	TLS *tls.Config
	// MaxFrame is the largest frame Send accepts and Receive allows the peer
	// to send. Zero means transport.DefaultMaxFrame.
	MaxFrame int
	// IdleTimeout closes a connection that received nothing for this long.
	// Zero means DefaultIdleTimeout (30 s). QUIC keepalives are sent at half
	// of it, so an idle edge between live peers stays up.
	IdleTimeout time.Duration
	// Logger receives the transport's diagnostics. nil discards them.
	Logger *slog.Logger
}

var _ transport.Transport = (*Transport)(nil)

// Transport is a QUIC endpoint: one UDP socket that accepts edges and dials
// them. It implements transport.Transport and is safe for concurrent use.
type Transport struct {
	maxFrame  int
	log       *slog.Logger
	udp       *net.UDPConn
	qt        *quicgo.Transport
	ln        *quicgo.Listener
	clientTLS *tls.Config
	dialConf  *quicgo.Config
	local     netip.AddrPort
	fam       family

	edges     *edgeset.Set[*Edge] // open edges, the accept queue; closed when Close starts
	pending   chan struct{}       // semaphore: connections between handshake and Accept
	closeDone chan struct{}       // closed when Close has finished
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup // accept loop, preamble readers, lingering edges
}

// Listen opens a UDP socket at addr ("host:port"; "127.0.0.1:0" picks a free
// port) and returns a Transport that accepts edges on it and dials from it.
//
// An IPv4 host (0.0.0.0 included) opens an IPv4 socket and an IPv6 host (::
// included) an IPv6-only one; an empty host (":4242") opens a dual-stack
// socket where the system supports it. Addrs reports where the transport can
// be reached.
func Listen(addr string, cfg Config) (*Transport, error) {
	if cfg.MaxFrame < 0 || cfg.MaxFrame > 1<<31-1 {
		return nil, fmt.Errorf("quic: MaxFrame %d out of range", cfg.MaxFrame)
	}
	if cfg.IdleTimeout < 0 {
		return nil, fmt.Errorf("quic: negative IdleTimeout %v", cfg.IdleTimeout)
	}
	maxFrame := cfg.MaxFrame
	if maxFrame == 0 {
		maxFrame = transport.DefaultMaxFrame
	}
	idle := cfg.IdleTimeout
	if idle == 0 {
		idle = DefaultIdleTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	serverTLS, clientTLS, err := tlsConfigs(cfg.TLS)
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("quic: listen %q: %w", addr, err)
	}
	network := listenNetwork(host)
	laddr, err := net.ResolveUDPAddr(network, addr)
	if err != nil {
		return nil, fmt.Errorf("quic: listen %q: %w", addr, err)
	}
	udp, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, fmt.Errorf("quic: listen %q: %w", addr, err)
	}
	local := udp.LocalAddr().(*net.UDPAddr).AddrPort()

	base := quicgo.Config{
		HandshakeIdleTimeout: min(handshakeTimeout, idle),
		MaxIdleTimeout:       idle,
		KeepAlivePeriod:      idle / 2,
		// The acceptor takes one bidirectional stream per connection and
		// the dialler none; neither takes unidirectional streams.
		MaxIncomingUniStreams: -1,
	}
	listenConf, dialConf := base.Clone(), base.Clone()
	listenConf.MaxIncomingStreams = 1
	dialConf.MaxIncomingStreams = -1

	// Above a rate of new connections, clients prove their source address
	// first (retry.go).
	qt := &quicgo.Transport{Conn: udp, VerifySourceAddress: newRetryPolicy(time.Now).verify}
	ln, err := qt.Listen(serverTLS, listenConf)
	if err != nil {
		_ = qt.Close()
		_ = udp.Close()
		return nil, fmt.Errorf("quic: listen %q: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		maxFrame:  maxFrame,
		log:       log.With("transport", "quic", "local", local.String()),
		udp:       udp,
		qt:        qt,
		ln:        ln,
		clientTLS: clientTLS,
		dialConf:  dialConf,
		local:     local,
		fam:       socketFamily(network, local.Addr()),
		edges:     edgeset.New[*Edge](acceptBacklog),
		pending:   make(chan struct{}, maxPending),
		closeDone: make(chan struct{}),
		ctx:       ctx,
		cancel:    cancel,
	}
	t.wg.Add(1)
	go t.acceptLoop()
	return t, nil
}

// MaxFrame returns the largest frame Send accepts and Receive allows.
func (t *Transport) MaxFrame() int { return t.maxFrame }

// Addrs returns the addresses at which other transports can dial this one,
// as "host:port". For a socket bound to a specific address that is the
// address itself. For one bound to 0.0.0.0 or :: (or an empty host) it is
// every address of the machine's interfaces that the socket can use, at the
// time of the call, IPv4 first, leaving out loopback and link-local
// addresses unless the machine has no other, in which case the loopback
// addresses are reported.
func (t *Transport) Addrs() []string {
	var ifaddrs []net.Addr
	if t.local.Addr().IsUnspecified() {
		var err error
		ifaddrs, err = net.InterfaceAddrs()
		if err != nil {
			t.log.Warn("listing interface addresses", "err", err)
		}
	}
	out := advertised(t.local.Addr(), t.local.Port(), t.fam, ifaddrs)
	if len(out) == 0 {
		// Nothing usable found: report the socket as bound, so that at
		// least the port is known.
		out = []string{t.local.String()}
	}
	return out
}

// String returns the socket's local address.
func (t *Transport) String() string { return t.local.String() }

// Dial opens an edge to the transport listening at addr ("host:port"; a name
// is looked up with ctx). It returns once the QUIC handshake is done and the
// edge's stream is open, before the other side calls Accept.
//
// Errors: one wrapping transport.ErrClosed if t is closed; ctx's error if ctx
// is cancelled; one wrapping transport.ErrUnreachable for an address that
// does not resolve, a handshake that fails (a TLS error such as an unknown
// certificate authority is wrapped too, for errors.As), or no answer within
// the handshake timeout (5 s, or IdleTimeout if shorter) or before ctx's
// deadline (then the error wraps context.DeadlineExceeded as well).
func (t *Transport) Dial(ctx context.Context, addr string) (transport.Edge, error) {
	if t.edges.Closed() {
		return nil, t.errClosed("Dial")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	raddr, err := resolve(ctx, addr, t.fam)
	if err != nil {
		return nil, err
	}
	tlsConf := t.clientTLS
	if host, _, _ := net.SplitHostPort(addr); tlsConf.ServerName == "" {
		if _, perr := netip.ParseAddr(host); perr != nil {
			// A name: verify the certificate against it, not the IP.
			tlsConf = tlsConf.Clone()
			tlsConf.ServerName = host
		}
	}
	// Stop the handshake when t closes, as well as when ctx ends.
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(t.ctx, cancel)
	defer stop()

	conn, err := t.qt.Dial(dctx, raddr, tlsConf, t.dialConf)
	if err != nil {
		return nil, t.dialError(ctx, addr, err)
	}
	st, err := conn.OpenStreamSync(dctx)
	if err == nil {
		// The preamble is one byte: quic-go queues it without blocking.
		_, err = st.Write([]byte{Version})
	}
	if err != nil {
		_ = conn.CloseWithError(codeClosed, "")
		return nil, t.dialError(ctx, addr, err)
	}
	e := newEdge(t, conn, st)
	if !t.edges.Track(e) {
		e.abort(codeClosed, "", "transport closed")
		return nil, t.errClosed("Dial")
	}
	t.log.Debug("dialled", "remote", e.remote)
	return e, nil
}

// dialError maps a failed handshake or stream open.
func (t *Transport) dialError(ctx context.Context, addr string, err error) error {
	switch {
	case t.edges.Closed():
		return t.errClosed("Dial")
	case errors.Is(ctx.Err(), context.Canceled):
		return ctx.Err()
	case ctx.Err() != nil:
		return fmt.Errorf("quic: dial %q: %w: no answer before the deadline: %w", addr, transport.ErrUnreachable, ctx.Err())
	}
	return fmt.Errorf("quic: dial %q: %w: %w", addr, transport.ErrUnreachable, err)
}

// Accept waits for the next edge dialled to this transport. It returns an
// error wrapping transport.ErrClosed once the transport is closed, and ctx's
// error if ctx ends first.
func (t *Transport) Accept(ctx context.Context) (transport.Edge, error) {
	return t.edges.Accept(ctx, t.errClosed)
}

// acceptLoop takes connections from the listener and starts a preamble
// reader for each, within the pending limit.
func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	for {
		conn, err := t.ln.Accept(t.ctx)
		if err != nil {
			if !t.edges.Closed() {
				t.log.Warn("accept failed; no longer accepting", "err", err)
			}
			return
		}
		select {
		case t.pending <- struct{}{}:
			t.wg.Add(1)
			go t.admit(conn)
		default:
			t.log.Warn("too many connections waiting for Accept; refusing one", "remote", conn.RemoteAddr().String())
			_ = conn.CloseWithError(codeBusy, "busy")
		}
	}
}

// admit waits for the dialler's stream and preamble, then queues the edge
// for Accept.
func (t *Transport) admit(conn *quicgo.Conn) {
	defer t.wg.Done()
	defer func() { <-t.pending }()
	deadline := time.Now().Add(handshakeTimeout)
	ctx, cancel := context.WithDeadline(t.ctx, deadline)
	defer cancel()
	st, err := conn.AcceptStream(ctx)
	if err != nil {
		t.log.Debug("no stream from dialler", "remote", conn.RemoteAddr().String(), "err", err)
		_ = conn.CloseWithError(codeProtocol, "no stream")
		return
	}
	var pre [1]byte
	_ = st.SetReadDeadline(deadline)
	kick := context.AfterFunc(ctx, func() { _ = st.SetReadDeadline(aLongTimeAgo) })
	_, err = st.Read(pre[:])
	if !kick() || err != nil {
		err = errors.Join(err, ctx.Err())
	}
	_ = st.SetReadDeadline(time.Time{})
	if err != nil || pre[0] != Version {
		t.log.Debug("bad preamble", "remote", conn.RemoteAddr().String(), "byte", pre[0], "err", err)
		_ = conn.CloseWithError(codeProtocol, "bad preamble")
		return
	}
	e := newEdge(t, conn, st)
	if !t.edges.Track(e) {
		e.abort(codeClosed, "", "transport closed")
		return
	}
	select {
	case t.edges.Queue() <- e:
		t.log.Debug("accepted", "remote", e.remote)
	case <-t.edges.Done():
		// Close closes e, which it tracks.
	case <-conn.Context().Done():
		e.abort(codeClosed, "", "peer left before Accept")
	}
}

// Close stops accepting, closes every edge of the transport and the socket.
// Edges close gracefully: Close waits up to Linger for their peers to read
// the frames already sent (see the package documentation), then tears down
// what is left. Pending Accept calls return an error wrapping
// transport.ErrClosed at once. When Close returns, every goroutine the
// transport started has ended. Close is idempotent: a second call waits for
// the first to finish and returns nil. The first returns nil, or the error
// from closing the socket.
func (t *Transport) Close() error {
	edges, first := t.edges.Close()
	if !first {
		<-t.closeDone
		return nil
	}
	defer close(t.closeDone)

	t.cancel() // stops the accept loop, preamble readers and dials
	_ = t.ln.Close()
	for _, e := range edges {
		e.shutdown()
	}
	// Every lingering edge is counted in wg by now: shutdown starts its
	// goroutine before it returns, and edges are tracked until theirs ends.
	t.wg.Wait()
	// Nothing is left to be polite to: connections that did not finish
	// their close are dropped without CONNECTION_CLOSE.
	_ = t.qt.Close()
	return t.udp.Close()
}

func (t *Transport) errClosed(op string) error {
	return fmt.Errorf("quic: %s on %s: %w", op, t.local, transport.ErrClosed)
}

// goLinger runs fn as a goroutine that Close waits for. It must be called
// while e is tracked, so that Close either sees the goroutine counted or
// has not yet taken its snapshot of the edges (see shutdown).
func (t *Transport) goLinger(fn func()) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		fn()
	}()
}
