package meshapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/routing"
)

// Node is what the API needs of a mesh node; *node.Node implements it.
type Node interface {
	ID() uuid.UUID
	Name() string
	Epoch() uint64
	Addrs() []string
	Neighbors() []uuid.UUID
	Stats() node.Stats
	Topology() routing.Topology
	Send(ctx context.Context, to uuid.UUID, body []byte) error
	Broadcast(ctx context.Context, body []byte) error
	Receive(ctx context.Context) (node.Delivery, error)
	Events() <-chan node.Event
	Connect(ctx context.Context, addr string) error
}

var _ Node = (*node.Node)(nil)

var (
	errBothBodies = errors.New("give body or body_base64, not both")
	errNoBody     = errors.New("body or body_base64 is required")
	errBadBase64  = errors.New("body_base64 is not valid standard base64")
)

// Options configure a Server. Zero fields take their defaults.
type Options struct {
	// Logger receives request and stream diagnostics. Default: discard.
	Logger *slog.Logger
	// MaxBody is the largest message body accepted by send and broadcast,
	// in bytes. It should equal the node's own limit (node.WithMaxBody).
	// Default message.DefaultMaxBody (1 MiB). Request bodies may be up to
	// 6×MaxBody+4 KiB, room for the worst case of JSON string escaping.
	MaxBody int
	// StreamBuffer is how many messages and events wait for each /v1/recv
	// stream before further ones are dropped for it. Default 256: at 1 KiB
	// messages that is a quarter MiB per stream, and it absorbs a burst of a
	// full reliability window from 25 senders.
	StreamBuffer int
	// MaxStreams bounds the concurrent /v1/recv streams; more get 503.
	// Default 64.
	MaxStreams int
	// SendTimeout bounds how long send and broadcast wait for room in the
	// node's outbound window and backlog before answering 503. Default 10s.
	SendTimeout time.Duration
	// ConnectTimeout bounds POST /v1/connect. Default 15s.
	ConnectTimeout time.Duration
	// Heartbeat is the interval of SSE comment lines on an idle stream, so
	// that proxies keep it open and a vanished client is noticed. Default 15s.
	Heartbeat time.Duration
	// LiveInterval is how often GET /v1/live sends a snapshot when nothing
	// changes, for the page's message rates. Default 1s.
	LiveInterval time.Duration
	// WriteTimeout bounds each write to a stream (a client that does not
	// read for that long is disconnected) and the reading of a request
	// body. Default 10s.
	WriteTimeout time.Duration
	// AllowedHosts are host names, besides IP addresses and localhost, that
	// requests may name in their Host header; "*" allows any. Default none:
	// a name could be an attacker's, rebound to this machine's address.
	AllowedHosts []string
	// OnEvent, if set, is called by Run for every node event before it is
	// fanned out (the daemon logs them here). It must not block.
	OnEvent func(node.Event)
	// CheckAddr, if set, checks the address of POST /v1/connect before the
	// node dials it: an error answers 400 with it (a malformed address is
	// the client's mistake, not a failure of the node it names).
	CheckAddr func(addr string) error
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxBody <= 0 {
		o.MaxBody = message.DefaultMaxBody
	}
	if o.StreamBuffer <= 0 {
		o.StreamBuffer = 256
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = 64
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = 10 * time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 15 * time.Second
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 15 * time.Second
	}
	if o.LiveInterval <= 0 {
		o.LiveInterval = time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	return o
}

// Server serves the API for one node. It implements http.Handler; Run must
// be running for /v1/recv streams to receive anything.
type Server struct {
	n   Node
	opt Options
	log *slog.Logger
	mux *http.ServeMux
	hub *hub
	// routes are the patterns registered, for Routes.
	routes []string

	received     atomic.Uint64
	unsubscribed atomic.Uint64
}

// New makes a Server for n.
func New(n Node, opt Options) *Server {
	opt = opt.withDefaults()
	s := &Server{n: n, opt: opt, log: opt.Logger, mux: http.NewServeMux(), hub: newHub(opt.MaxStreams, opt.StreamBuffer)}
	s.Handle("GET /v1/status", http.HandlerFunc(s.status))
	s.Handle("GET /v1/topology", http.HandlerFunc(s.topology))
	s.Handle("POST /v1/send", http.HandlerFunc(s.send))
	s.Handle("POST /v1/broadcast", http.HandlerFunc(s.broadcast))
	s.Handle("GET /v1/recv", http.HandlerFunc(s.recv))
	s.Handle("POST /v1/connect", http.HandlerFunc(s.connect))
	s.Handle("GET /v1/live", http.HandlerFunc(s.live))
	s.Handle("GET /ui/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ui/" {
			writeError(w, http.StatusNotFound, "no such page: "+r.URL.Path)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(topologyPage)
	}))
	s.Handle("GET /v1/openapi.json", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	}))
	return s
}

// Routes returns the patterns the server serves ("GET /v1/status"), in the
// order they were registered, those added by Handle included.
func (s *Server) Routes() []string { return slices.Clone(s.routes) }

// Handle adds a route to the API, such as the daemon's /metrics, behind the
// same Host and Origin checks and the same JSON 404 and 405 answers. It
// must be called before the server serves; pattern is an http.ServeMux
// pattern with a method ("GET /metrics").
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
	s.routes = append(s.routes, pattern)
}

// ServeHTTP routes a request. Requests that match no route get a JSON 404,
// requests with a method the path does not take a JSON 405 with Allow.
//
// Because the API is unauthenticated, it also refuses what a web page in a
// browser on the same machine could send it: a Host that is neither an IP
// address, localhost nor in Options.AllowedHosts (DNS rebinding) and a
// cross-origin Origin get 403; a POST must say Content-Type:
// application/json, which browsers do not send cross-origin without a CORS
// preflight that this API never grants.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.hostAllowed(r.Host) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("Host %q is not allowed (DNS rebinding protection): use an IP address or localhost, or allow the name (meshnode run --api-allow-host)", r.Host))
		return
	}
	if o := r.Header.Get("Origin"); o != "" {
		if u, err := url.Parse(o); err != nil || u.Host != r.Host {
			writeError(w, http.StatusForbidden, "cross-origin requests are refused")
			return
		}
	}
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		h.ServeHTTP(w, r)
		return
	}
	// The mux's own answer (404, 405 with Allow, or a redirect) is text;
	// capture its status and headers and answer in JSON.
	c := &capture{h: http.Header{}}
	h.ServeHTTP(c, r)
	for _, k := range []string{"Allow", "Location"} {
		if v := c.h.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	switch c.code {
	case http.StatusMethodNotAllowed:
		writeError(w, c.code, fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path))
	case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		writeError(w, c.code, "see "+c.h.Get("Location"))
	default:
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	}
}

// hostAllowed reports whether a request's Host may be served: an IP
// address, localhost (or a name under .localhost), or a name in
// Options.AllowedHosts ("*" allows every name).
func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	for _, a := range s.opt.AllowedHosts {
		if a == "*" || strings.EqualFold(a, host) {
			return true
		}
	}
	return false
}

// capture is a ResponseWriter that keeps the status and headers and throws
// the body away.
type capture struct {
	h    http.Header
	code int
}

func (c *capture) Header() http.Header { return c.h }
func (c *capture) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}
func (c *capture) Write(b []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	return len(b), nil
}

// Run takes every delivered message from the node (it must be the only
// caller of Receive) and every event from its Events channel, and fans them
// out to the open streams. It returns when ctx ends or the node is closed
// and drained.
func (s *Server) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			d, err := s.n.Receive(ctx)
			if err != nil {
				return
			}
			s.received.Add(1)
			if s.hub.publish(sseItem{event: "message", data: mustJSON(messageOf(d))}, false) == 0 {
				s.unsubscribed.Add(1)
			}
		}
	})
	wg.Go(func() {
		evs := s.n.Events()
		for {
			select {
			case e, ok := <-evs:
				if !ok {
					return
				}
				if s.opt.OnEvent != nil {
					s.opt.OnEvent(e)
				}
				s.hub.publish(sseItem{event: e.Kind.String(), data: mustJSON(eventOf(e))}, true)
			case <-ctx.Done():
				return
			}
		}
	})
	wg.Wait()
}

// CloseStreams ends every open /v1/recv stream and refuses new ones with
// 503. Register it with http.Server.RegisterOnShutdown: Shutdown does not
// end streaming handlers by itself.
func (s *Server) CloseStreams() { s.hub.close() }

// Stats returns the API's counters.
func (s *Server) Stats() APIStats {
	subs, dropped := s.hub.stats()
	return APIStats{Subscribers: subs, Received: s.received.Load(), Unsubscribed: s.unsubscribed.Load(), StreamDropped: dropped}
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	tp := s.n.Topology()
	st := Status{
		ID: s.n.ID(), Name: s.n.Name(), Epoch: s.n.Epoch(), Addrs: nonNil(s.n.Addrs()), Neighbors: nonNil(s.n.Neighbors()),
		Known: len(tp.Nodes), Stats: statsOf(s.n.Stats()), API: s.Stats(),
	}
	for _, n := range tp.Nodes {
		if n.Distance >= 0 {
			st.Reachable++
		}
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) topology(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, topologyOf(s.n.Topology()))
}

func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	var req SendRequest
	if !s.decode(w, r, &req) {
		return
	}
	if req.To == "" {
		writeError(w, http.StatusBadRequest, "to is required")
		return
	}
	tp := s.n.Topology()
	to, err := ResolveNode(tp, req.To)
	if err != nil {
		writeError(w, http.StatusBadRequest, "to: "+err.Error())
		return
	}
	body, ok := s.body(w, req.Body, req.BodyBase64)
	if !ok {
		return
	}
	if to == uuid.Nil {
		writeError(w, http.StatusBadRequest, "to is the nil UUID")
		return
	}
	if to == s.n.ID() {
		writeError(w, http.StatusBadRequest, "to is this node")
		return
	}
	ni, known := tp.Node(to)
	reachable := known && ni.Distance >= 0
	ctx, cancel := context.WithTimeout(r.Context(), s.opt.SendTimeout)
	defer cancel()
	if !s.sendErr(w, r, s.n.Send(ctx, to, body)) {
		return
	}
	writeJSON(w, http.StatusAccepted, SendResponse{Accepted: true, To: &to, Reachable: &reachable})
}

func (s *Server) broadcast(w http.ResponseWriter, r *http.Request) {
	var req BroadcastRequest
	if !s.decode(w, r, &req) {
		return
	}
	body, ok := s.body(w, req.Body, req.BodyBase64)
	if !ok {
		return
	}
	nodes := 0
	for _, n := range s.n.Topology().Nodes {
		if n.Distance > 0 {
			nodes++
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opt.SendTimeout)
	defer cancel()
	if !s.sendErr(w, r, s.n.Broadcast(ctx, body)) {
		return
	}
	writeJSON(w, http.StatusAccepted, SendResponse{Accepted: true, Nodes: &nodes})
}

// decode reads a JSON request body strictly: the right content type (or
// none), a size limit, no unknown fields, nothing after the object.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return false
	}
	// The server may have no ReadTimeout (it would cut streams): bound the
	// body's arrival here.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.opt.WriteTimeout))
	limit := int64(6*s.opt.MaxBody + 4096)
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.Decode(&struct{}{}) != io.EOF {
			err = errors.New("data after the JSON object")
		}
	}
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", mbe.Limit))
			return false
		}
		if errors.Is(err, io.EOF) {
			err = errors.New("empty request body")
		}
		writeError(w, http.StatusBadRequest, "invalid JSON request: "+err.Error())
		return false
	}
	return true
}

func (s *Server) body(w http.ResponseWriter, text, b64 *string) ([]byte, bool) {
	body, err := decodeBody(text, b64)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return nil, false
	}
	if len(body) > s.opt.MaxBody {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body is %d bytes, over the limit of %d", len(body), s.opt.MaxBody))
		return nil, false
	}
	return body, true
}

// sendErr answers for a failed Send or Broadcast and reports whether err
// was nil.
func (s *Server) sendErr(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return true
	case errors.Is(err, node.ErrSelf), errors.Is(err, node.ErrNilTarget):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, node.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
	case errors.Is(err, node.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "the node is shutting down")
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
	case errors.Is(err, context.DeadlineExceeded):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("not accepted within %v: the window and backlog to the destination are full", s.opt.SendTimeout))
	default:
		s.log.Error("send failed", "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
	}
	return false
}

func (s *Server) connect(w http.ResponseWriter, r *http.Request) {
	var req ConnectRequest
	if !s.decode(w, r, &req) {
		return
	}
	if req.Addr == "" {
		writeError(w, http.StatusBadRequest, "addr is required")
		return
	}
	if len(req.Addr) > message.MaxAddrLen || !utf8.ValidString(req.Addr) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("addr must be UTF-8 of at most %d bytes", message.MaxAddrLen))
		return
	}
	if s.opt.CheckAddr != nil {
		if err := s.opt.CheckAddr(req.Addr); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("addr %q: %v", req.Addr, err))
			return
		}
	}
	// Dialling a neighbour again would replace its edge for nothing.
	nbs := s.n.Neighbors()
	for _, ni := range s.n.Topology().Nodes {
		if slices.Contains(nbs, ni.ID) && slices.Contains(ni.Addrs, req.Addr) {
			writeError(w, http.StatusConflict, fmt.Sprintf("%s is already a neighbour (%s)", req.Addr, ni.ID))
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opt.ConnectTimeout)
	defer cancel()
	err := s.n.Connect(ctx, req.Addr)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, ConnectResponse{Connected: true, Neighbors: nonNil(s.n.Neighbors())})
	case errors.Is(err, node.ErrDuplicateEdge):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, node.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "the node is shutting down")
	case r.Context().Err() != nil:
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusGatewayTimeout, fmt.Sprintf("no connection within %v: %v", s.opt.ConnectTimeout, err))
	default:
		// Unreachable, refused, full without an entry point, handshake failed.
		writeError(w, http.StatusBadGateway, err.Error())
	}
}

func (s *Server) recv(w http.ResponseWriter, r *http.Request) {
	events := false
	if v := r.URL.Query().Get("events"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "events must be a boolean (1, true, 0, false)")
			return
		}
		events = b
	}
	ready := sseItem{event: "ready", data: mustJSON(Ready{ID: s.n.ID(), Events: events})}
	s.stream(w, r, events, true, func() sseItem { return ready }, s.opt.Heartbeat, func() sseItem { return sseItem{} })
}

// live serves GET /v1/live, the topology page's stream: a snapshot of the
// node's view (Snapshot) at once, after every event that may change it,
// and every LiveInterval; node events as they happen; no messages.
func (s *Server) live(w http.ResponseWriter, r *http.Request) {
	snap := func() sseItem { return sseItem{event: "snapshot", data: mustJSON(s.snapshot())} }
	s.stream(w, r, true, false, snap, s.opt.LiveInterval, snap)
}

// snapshot is the node's view now.
func (s *Server) snapshot() Snapshot {
	return Snapshot{Time: time.Now().UTC(), ID: s.n.ID(), Stats: statsOf(s.n.Stats()), Topology: topologyOf(s.n.Topology())}
}

// stream serves an SSE stream of the hub's items (node events if events,
// messages if messages): first(), then the items as they come, each node
// event that may change the topology followed by first() again, and tick()
// every interval (an empty item is a heartbeat comment). It ends when the
// client goes, a write fails or times out, or the hub closes.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, events, messages bool, first func() sseItem, interval time.Duration, tick func() sseItem) {
	sub, err := s.hub.subscribe(events, messages)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	defer s.hub.unsubscribe(sub)
	s.log.Debug("stream opened", "remote", r.RemoteAddr, "path", r.URL.Path, "events", events)
	defer s.log.Debug("stream closed", "remote", r.RemoteAddr)

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	write := func(it sseItem) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(s.opt.WriteTimeout))
		var err error
		if it.event == "" {
			_, err = io.WriteString(w, ": keepalive\n\n")
		} else {
			_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", it.event, it.data)
		}
		if err == nil {
			err = rc.Flush()
		}
		return err == nil
	}
	reportDrops := func() bool {
		if n := sub.dropped.Swap(0); n > 0 {
			return write(sseItem{event: "dropped", data: mustJSON(Dropped{Count: n})})
		}
		return true
	}
	if !write(first()) {
		return
	}
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		select {
		case it := <-sub.ch:
			if !reportDrops() || !write(it) {
				return
			}
			if !messages && changesTopology(it.event) && !write(first()) {
				return
			}
		case <-tk.C:
			if !reportDrops() || !write(tick()) {
				return
			}
		case <-r.Context().Done():
			return
		case <-s.hub.done:
			return
		}
	}
}

// changesTopology reports whether a node event of this SSE type may change
// the node's view of the mesh.
func changesTopology(event string) bool {
	switch event {
	case node.NeighborUp.String(), node.NeighborDown.String(), node.TopologyChanged.String(), node.Connected.String(), node.Disconnected.String():
		return true
	}
	return false
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, Error{Error: msg})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own plain structs are marshalled here.
		panic(fmt.Sprintf("meshapi: marshal %T: %v", v, err))
	}
	return b
}
