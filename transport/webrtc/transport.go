package webrtc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/internal/edgeset"
	"github.com/distrirender/distrirender/transport/webrtc/internal/bpack"
)

// The serializations of a peerjs DataConnection that the transport speaks.
const (
	// SerializationBinary is peerjs's default serialization: every message
	// is a BinaryPack value, and a value over ChunkSize bytes is sent in
	// chunks. Frames travel as binary values. peerjs's "binary-utf8" and
	// "default" are the same serialization and are accepted as it.
	SerializationBinary = "binary"
	// SerializationRaw sends every frame as one data-channel message, as it
	// is. A frame is then limited by the message size the peer accepts too
	// (see MaxMessage).
	SerializationRaw = "raw"
)

// ChunkSize is the largest message the transport sends on a "binary" edge:
// a packed frame longer than this travels in pieces of this many bytes,
// each in a chunk map, as peerjs sends them (its chunkedMTU).
const ChunkSize = bpack.ChunkSize

// MaxMessage is the largest data-channel message the transport accepts: it
// advertises it in its SDP (a=max-message-size), so compliant peers send no
// larger one. It bounds frames on a "raw" edge from a peer; "binary" edges
// chunk frames into much smaller messages.
const MaxMessage = 64 << 10

// DefaultLinger is how long a closed edge waits for the peer to close its
// side before the connection is freed, unless Config.Linger says otherwise.
// A live peer answers within a round trip once it has read what was sent
// before the close; the second is for a slow or dead one.
const DefaultLinger = time.Second

// DefaultHandshakeTimeout bounds setting up an edge (signalling, ICE, DTLS,
// SCTP and the data channel) when Config.HandshakeTimeout is zero: for a
// Dial whose context has no earlier deadline, and for every incoming one. On
// loopback it takes a few milliseconds (some tens under the race detector).
const DefaultHandshakeTimeout = 10 * time.Second

// sendBuffer is how much an edge lets the data channel buffer (sent but not
// yet acknowledged by SCTP) before Send waits; Send resumes once half of it
// has drained. It is pion's SCTP receive window, so one window's worth is in
// flight while the next is queued.
const sendBuffer = 1 << 20

// receiveQueue is the number of frames an edge reads ahead of Receive. The
// SCTP receive window (1 MiB) buffers the rest, and then the peer waits.
const receiveQueue = 16

// Limits on incoming connections: at most maxPending are being negotiated
// or waiting for Accept, acceptBacklog of them waiting for Accept. An OFFER
// beyond that is ignored; its sender's dial times out.
const (
	acceptBacklog = 32
	maxPending    = 64
)

// maxEarlyCandidates bounds the ICE candidates of one connection kept while
// the description they belong to is not set yet.
const maxEarlyCandidates = 64

// Errors of the WebRTC transport, wrapped with %w together with the
// transport package's errors where both apply.
var (
	// ErrBadAddress is wrapped (with transport.ErrUnreachable) by Dial errors
	// for an address that is not a PeerJS peer ID (see ValidID).
	ErrBadAddress = errors.New("webrtc: not a PeerJS peer ID")
	// ErrIDTaken is wrapped by New's error when the signalling server has
	// the ID registered to another client.
	ErrIDTaken = errors.New("webrtc: peer ID taken")
	// ErrProtocol is wrapped (with transport.ErrClosed) by Receive errors
	// for messages the edge cannot read: malformed BinaryPack or chunks.
	ErrProtocol = errors.New("webrtc: protocol violation")
)

// Config configures a Transport. Server is required; the zero value of
// every other field is a usable default.
type Config struct {
	// Server is the URL of the PeerServer: http://host:port/path/ (ws://,
	// https:// and wss:// work too; an empty path is "/"). Every transport
	// of a mesh uses the same server, and Key.
	Server string
	// Key is the PeerServer's API key; empty means DefaultKey ("peerjs").
	Key string
	// ID is this transport's PeerJS peer ID, which is its address; empty
	// asks the server for a fresh one (GET {path}{key}/id), as peerjs does.
	ID string
	// Serialization is what Dial asks for: SerializationBinary (the
	// default, as in peerjs) or SerializationRaw. Accepted edges use
	// whatever the dialling peer asked for.
	Serialization string
	// MaxFrame is the largest frame Send accepts and Receive allows the peer
	// to send. Zero means transport.DefaultMaxFrame. On a "raw" edge a frame
	// is also limited by the message size the peer accepts (see the package
	// documentation).
	MaxFrame int
	// ICEServers are the STUN and TURN servers ICE may use. None by default:
	// edges use host candidates only, which suits a LAN (or loopback).
	ICEServers []webrtc.ICEServer
	// IPFilter chooses the addresses ICE uses: the local ones it gathers
	// host candidates on, and the peer's candidates it tries (others are
	// ignored, as are a browser's mDNS .local candidates: the peer's checks
	// still reach the transport from them). nil means Loopback: only
	// 127.0.0.0/8 and ::1, so that by default nothing leaves the machine.
	// Use func(net.IP) bool { return true } for every address.
	IPFilter func(net.IP) bool
	// NetworkTypes are the kinds of candidates ICE gathers; empty means UDP
	// over IPv4 and IPv6.
	NetworkTypes []webrtc.NetworkType
	// Linger bounds how long a closed edge waits for the peer to close its
	// side (see the package documentation); zero means DefaultLinger.
	Linger time.Duration
	// HandshakeTimeout bounds setting up one edge; zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// Heartbeat is the interval of heartbeats to the signalling server;
	// zero means DefaultHeartbeat. Three intervals without a word from the
	// server count as a lost connection.
	Heartbeat time.Duration
	// HTTPClient fetches the ID when ID is empty; nil means a client of the
	// transport's own.
	HTTPClient *http.Client
	// Logger receives the transport's logs, and pion's (one level lower, see
	// the package documentation); nil discards them.
	Logger *slog.Logger
}

// Loopback reports whether ip is a loopback address: the default
// Config.IPFilter.
func Loopback(ip net.IP) bool { return ip.IsLoopback() }

var _ transport.Transport = (*Transport)(nil)

// Transport is a mesh transport over WebRTC data channels, signalled through
// a PeerJS PeerServer. It implements transport.Transport and is safe for
// concurrent use.
type Transport struct {
	id        string
	key       string
	ser       string
	maxFrame  int
	linger    time.Duration
	handshake time.Duration
	log       *slog.Logger
	api       *webrtc.API
	pcConf    webrtc.Configuration
	ipFilter  func(net.IP) bool
	sig       *signal

	edges   *edgeset.Set[*Edge] // open edges, the accept queue; closed when Close starts
	pending chan struct{}       // semaphore: incoming connections before Accept
	// cut, when cancelled, ends negotiations and lingers at once.
	cut     context.Context
	cutStop context.CancelFunc
	wg      sync.WaitGroup // answering, reading and closing goroutines
	lingers sync.WaitGroup

	// mu guards conns, and is held around edges.Track, edges.Untrack and
	// edges.Close, so that whatever finds edges open under mu (tracking an
	// edge, registering a conn, a wg.Add) is done before Close takes its
	// snapshot, all of it, or not at all.
	mu    sync.Mutex
	conns map[connKey]*conn // every peer connection, until it is closed

	closeOnce sync.Once
}

// connKey names a peer connection: the remote peer and peerjs's connectionId.
type connKey struct{ peer, id string }

// New connects to the PeerServer at cfg.Server, registers cfg.ID (or an ID
// the server hands out), and returns a transport that dials and accepts
// edges. It fails with an error wrapping ErrIDTaken if another client holds
// the ID. ctx bounds the connection to the server only.
func New(ctx context.Context, cfg Config) (*Transport, error) {
	if cfg.MaxFrame < 0 || cfg.MaxFrame > 1<<31-1 {
		return nil, fmt.Errorf("webrtc: MaxFrame %d out of range", cfg.MaxFrame)
	}
	if cfg.Linger < 0 || cfg.HandshakeTimeout < 0 || cfg.Heartbeat < 0 {
		return nil, errors.New("webrtc: negative Linger, HandshakeTimeout or Heartbeat")
	}
	switch cfg.Serialization {
	case "":
		cfg.Serialization = SerializationBinary
	case SerializationBinary, SerializationRaw:
	default:
		return nil, fmt.Errorf("webrtc: unknown Serialization %q", cfg.Serialization)
	}
	if cfg.ID != "" && !ValidID(cfg.ID) {
		return nil, fmt.Errorf("webrtc: ID %q: %w", cfg.ID, ErrBadAddress)
	}
	httpBase, wsBase, err := serverURLs(cfg.Server)
	if err != nil {
		return nil, err
	}
	t := &Transport{
		id:        cfg.ID,
		key:       cfg.Key,
		ser:       cfg.Serialization,
		maxFrame:  cfg.MaxFrame,
		linger:    cfg.Linger,
		handshake: cfg.HandshakeTimeout,
		log:       cfg.Logger,
		edges:     edgeset.New[*Edge](acceptBacklog),
		pending:   make(chan struct{}, maxPending),
		conns:     make(map[connKey]*conn),
		pcConf:    webrtc.Configuration{ICEServers: cfg.ICEServers},
		ipFilter:  cfg.IPFilter,
	}
	if t.ipFilter == nil {
		t.ipFilter = Loopback
	}
	if t.key == "" {
		t.key = DefaultKey
	}
	if t.maxFrame == 0 {
		t.maxFrame = transport.DefaultMaxFrame
	}
	if t.linger == 0 {
		t.linger = DefaultLinger
	}
	if t.handshake == 0 {
		t.handshake = DefaultHandshakeTimeout
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	heartbeat := cfg.Heartbeat
	if heartbeat == 0 {
		heartbeat = DefaultHeartbeat
	}
	if t.id == "" {
		client := cfg.HTTPClient
		if client == nil {
			client = &http.Client{Timeout: signalWriteTimeout}
		}
		if t.id, err = fetchID(ctx, client, httpBase, t.key); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("webrtc: asking the signalling server for an ID: %w", err)
		}
	}
	t.log = t.log.With("peer", t.id)
	t.api = newAPI(cfg, t.ipFilter, t.log)

	q := url.Values{"key": {t.key}, "id": {t.id}, "token": {randomToken()}}
	wsURL := *wsBase
	wsURL.Path += "peerjs"
	wsURL.RawQuery = q.Encode()
	t.sig = &signal{
		wsURL:     wsURL.String(),
		log:       t.log,
		dialer:    &websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: signalWriteTimeout},
		heartbeat: heartbeat,
		handle:    t.handle,
	}
	t.sig.ctx, t.sig.cancel = context.WithCancel(context.Background())
	t.cut, t.cutStop = context.WithCancel(context.Background())
	if err := connectSignal(ctx, t.sig); err != nil {
		t.sig.cancel()
		t.cutStop()
		return nil, err
	}
	t.log.Debug("registered with the signalling server", "server", httpBase.String())
	return t, nil
}

// newAPI returns the pion API every peer connection of a transport is made
// with: data channels only (no codecs, no interceptors), detached, host
// candidates on the addresses the filter lets through, no mDNS.
func newAPI(cfg Config, ipFilter func(net.IP) bool, log *slog.Logger) *webrtc.API {
	var se webrtc.SettingEngine
	se.DetachDataChannels()
	se.LoggerFactory = pionLogs{log}
	se.SetIPFilter(ipFilter)
	se.SetIncludeLoopbackCandidate(true) // the filter decides
	types := cfg.NetworkTypes
	if len(types) == 0 {
		types = []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	}
	se.SetNetworkTypes(types)
	// No multicast DNS: host candidates carry their IPs, and the transport
	// sends no mDNS queries for a peer's .local candidates (a browser's
	// checks reach it all the same, as peer-reflexive candidates).
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetSCTPMaxMessageSize(MaxMessage)
	if n, err := newBufferedNet(); err == nil {
		se.SetNet(n)
	}
	if len(cfg.ICEServers) == 0 {
		// With host candidates only, a peer-reflexive candidate is a host
		// candidate whose CANDIDATE message is still on its way through the
		// signalling server (the peer's connectivity check came first):
		// nothing better is coming, so do not wait pion's default second
		// before nominating it.
		se.SetPrflxAcceptanceMinWait(0)
	}
	return webrtc.NewAPI(
		webrtc.WithSettingEngine(se),
		webrtc.WithMediaEngine(&webrtc.MediaEngine{}),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}),
	)
}

// ID returns the transport's PeerJS peer ID.
func (t *Transport) ID() string { return t.id }

// MaxFrame returns the largest frame its edges' Send accepts.
func (t *Transport) MaxFrame() int { return t.maxFrame }

// Addrs returns the transport's one address: its peer ID.
func (t *Transport) Addrs() []string { return []string{t.id} }

// Dial opens an edge to the peer whose ID is addr: it sends an OFFER through
// the signalling server, trickles ICE candidates, and returns once the data
// channel is open, so the other side's Accept has the edge.
//
// Errors wrap transport.ErrUnreachable: with ErrBadAddress for an address
// that is not a peer ID, and when the peer is not connected to the
// signalling server (EXPIRE or LEAVE from the server), or the signalling
// connection is down, or the connection fails. They wrap transport.ErrClosed
// once the transport is closed, and are ctx's error if ctx ends first. A
// dial with no answer lasts until ctx ends, or Config.HandshakeTimeout.
func (t *Transport) Dial(ctx context.Context, addr string) (transport.Edge, error) {
	if t.edges.Closed() {
		return nil, t.errClosed("Dial")
	}
	if !ValidID(addr) {
		return nil, fmt.Errorf("webrtc: dial %q: %w: %w", addr, transport.ErrUnreachable, ErrBadAddress)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if addr == t.id {
		return nil, fmt.Errorf("webrtc: dial %s: %w: that is this transport", addr, transport.ErrUnreachable)
	}
	if !t.sig.up() {
		return nil, fmt.Errorf("webrtc: dial %s: %w: %w", addr, transport.ErrUnreachable, errSignalDown)
	}
	c, err := t.newConn(connKey{peer: addr, id: "dc_" + randomToken()}, true, t.ser)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, t.handshake)
	defer cancel()
	e, err := c.dial(hctx)
	if err != nil {
		c.abandon()
		switch {
		case t.edges.Closed():
			return nil, t.errClosed("Dial")
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case hctx.Err() != nil:
			return nil, fmt.Errorf("webrtc: dial %s: %w: no connection within %v", addr, transport.ErrUnreachable, t.handshake)
		}
		return nil, err
	}
	return e, nil
}

// handle dispatches a message from the signalling server. It runs on the
// signalling connection's reading goroutine, so it does nothing slow: an
// OFFER starts a goroutine of its own.
func (t *Transport) handle(m message) {
	if m.Src == "" {
		return
	}
	switch m.Type {
	case typeExpire, typeLeave:
		// The peer is not (or no more) at the server: connections still
		// being set up with it will not be.
		why := "is not connected to the signalling server"
		if m.Type == typeLeave {
			why = "left the signalling server"
		}
		for _, c := range t.connsOf(m.Src) {
			c.fail(fmt.Errorf("webrtc: peer %s %s: %w", m.Src, why, transport.ErrUnreachable))
		}
		return
	case typeOffer, typeAnswer, typeCandidate:
	default:
		return
	}
	var p payload
	if err := json.Unmarshal(m.Payload, &p); err != nil || p.ConnectionID == "" || len(p.ConnectionID) > maxIDLen {
		t.log.Debug("ignoring a malformed signalling message", "type", m.Type, "from", m.Src)
		return
	}
	key := connKey{peer: m.Src, id: p.ConnectionID}
	if m.Type == typeOffer {
		t.offered(key, p)
		return
	}
	t.mu.Lock()
	c := t.conns[key]
	t.mu.Unlock()
	if c == nil {
		return // a connection given up on, or never ours
	}
	switch m.Type {
	case typeAnswer:
		if p.SDP == nil || p.SDP.Type != "answer" {
			c.fail(fmt.Errorf("webrtc: dial %s: %w: %w: ANSWER without an answer", m.Src, transport.ErrUnreachable, ErrProtocol))
			return
		}
		c.answered(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: p.SDP.SDP})
	case typeCandidate:
		if p.Candidate != nil {
			c.remoteCandidate(webrtc.ICECandidateInit{
				Candidate:        p.Candidate.Candidate,
				SDPMid:           p.Candidate.SDPMid,
				SDPMLineIndex:    p.Candidate.SDPMLineIndex,
				UsernameFragment: p.Candidate.UsernameFragment,
			})
		}
	}
}

// offered starts answering an OFFER, unless it is not one the transport
// takes: media, an unknown serialization, a repeated connectionId, or one
// too many at once.
func (t *Transport) offered(key connKey, p payload) {
	log := t.log.With("from", key.peer, "connectionId", key.id)
	if p.Type != connData || p.SDP == nil || p.SDP.Type != "offer" {
		log.Info("ignoring an OFFER that is not for a data connection", "type", p.Type)
		return
	}
	var ser string
	switch p.Serialization {
	case SerializationRaw:
		ser = SerializationRaw
	case SerializationBinary, "binary-utf8", "default", "":
		ser = SerializationBinary
	default:
		log.Info("ignoring an OFFER with a serialization the transport does not speak", "serialization", p.Serialization)
		return
	}
	select {
	case t.pending <- struct{}{}:
	default:
		log.Warn("ignoring an OFFER: too many incoming connections pending")
		return
	}
	c, err := t.newConn(key, false, ser)
	if err != nil {
		<-t.pending
		if !errors.Is(err, transport.ErrClosed) {
			log.Info("ignoring an OFFER", "err", err)
		}
		return
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer func() { <-t.pending }()
		t.answer(c, webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: p.SDP.SDP})
	}()
}

// answer sets up an incoming connection and queues its edge for Accept.
func (t *Transport) answer(c *conn, offer webrtc.SessionDescription) {
	ctx, cancel := context.WithTimeout(t.cut, t.handshake)
	defer cancel()
	e, err := c.accept(ctx, offer)
	if err != nil {
		c.abandon()
		if !t.edges.Closed() {
			c.log.Info("incoming connection failed", "err", err)
		}
		return
	}
	select {
	case t.edges.Queue() <- e:
		c.log.Debug("edge accepted")
	default:
		c.log.Warn("closing an incoming edge: the accept backlog is full")
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
// receives the frames sent before and then sees the edge closed), waits for
// their lingers, at most Config.Linger, closes the remaining peer
// connections and disconnects from the signalling server. When Close
// returns, no goroutine of the transport is left. Close is idempotent and
// returns nil.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		edges, _ := t.edges.Close()
		conns := make([]*conn, 0, len(t.conns))
		for _, c := range t.conns {
			conns = append(conns, c)
		}
		t.mu.Unlock()

		// Connections still being set up fail; their goroutines (Dial's,
		// answer's) close them.
		for _, c := range conns {
			c.fail(t.errClosed("Dial"))
		}
		for _, e := range edges {
			_ = e.Close()
		}
		t.lingers.Wait()
		t.cutStop()
		t.sig.close()
		t.wg.Wait()
	})
	return nil
}

func (t *Transport) errClosed(op string) error {
	return fmt.Errorf("webrtc: %s on %s: %w", op, t.id, transport.ErrClosed)
}

// track records e as one of t's edges, and counts its readLoop in t.wg, or
// reports false if t is closed.
func (t *Transport) track(e *Edge) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.edges.Track(e) {
		return false
	}
	t.wg.Add(1)
	return true
}

// goTracked runs fn on a goroutine that Close waits for, unless t is closed
// (Close then does what is needed itself).
func (t *Transport) goTracked(fn func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.edges.Closed() {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		fn()
	}()
	return true
}

// forget removes a closed connection and its edge, if any.
func (t *Transport) forget(c *conn, e *Edge) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conns[c.key] == c {
		delete(t.conns, c.key)
	}
	if e != nil {
		t.edges.Untrack(e)
	}
}

// connsOf returns the connections with peer that are still being set up.
func (t *Transport) connsOf(peer string) []*conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	var cs []*conn
	for k, c := range t.conns {
		if k.peer == peer && !c.open() {
			cs = append(cs, c)
		}
	}
	return cs
}
