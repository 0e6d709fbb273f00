package webrtc

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
)

// Defaults of SignalConfig, those of the npm peer server where it has them.
const (
	// DefaultExpireTimeout is how long the server holds messages for a
	// peer that is not connected before it answers their senders with
	// EXPIRE (npm peer: expire_timeout).
	DefaultExpireTimeout = 5 * time.Second
	// DefaultAliveTimeout is how long the server keeps a client it hears
	// nothing from (npm peer: alive_timeout). Clients send a heartbeat every
	// 5 s.
	DefaultAliveTimeout = 90 * time.Second
	// DefaultConcurrentLimit is the number of clients the server registers
	// at most (npm peer: concurrent_limit).
	DefaultConcurrentLimit = 5000
)

// Bounds on what the server holds for one client.
const (
	// clientQueue and clientQueueBytes bound the messages waiting to be
	// written to one client; a client that falls this far behind is
	// disconnected.
	clientQueue      = 256
	clientQueueBytes = 4 << 20
	// maxHeld is the number of messages held for one absent peer, and
	// maxHeldBytes the bytes held for all of them; later ones are dropped.
	maxHeld      = 64
	maxHeldBytes = 16 << 20
)

// The texts of the server's ERROR messages, as npm peer sends them.
const (
	errInvalidKey   = "Invalid key provided"
	errInvalidWS    = "No id, token, or key supplied to websocket server"
	errLimitExceed  = "Server has reached its concurrent user limit"
	errInvalidID    = "Invalid id provided"
	errIDTakenText  = "ID is taken"
	signalServerTxt = `{"name":"PeerJS Server","description":"A server side element to broker connections between PeerJS clients (distrirender, Go).","website":"https://peerjs.com/"}`
)

// SignalConfig configures a SignalServer. The zero value is a usable
// configuration.
type SignalConfig struct {
	// Key is the API key clients must give; empty means DefaultKey.
	Key string
	// ExpireTimeout: see DefaultExpireTimeout, its default.
	ExpireTimeout time.Duration
	// AliveTimeout: see DefaultAliveTimeout, its default.
	AliveTimeout time.Duration
	// ConcurrentLimit: see DefaultConcurrentLimit, its default.
	ConcurrentLimit int
	// AllowDiscovery lets GET /{key}/peers list the connected peer IDs, as
	// npm peer's allow_discovery does.
	AllowDiscovery bool
	// CheckOrigin decides whether a browser page may open the WebSocket;
	// nil allows every origin, as npm peer does.
	CheckOrigin func(*http.Request) bool
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
}

// SignalServer is a PeerJS PeerServer: an http.Handler that speaks the
// protocol of the npm peer server (version 1), for the transport and for
// browser peerjs clients alike. Mounted at the root of an HTTP server it
// serves
//
//	GET /              a JSON description of the server
//	GET /{key}/id      a fresh peer ID (a UUID), as text
//	GET /{key}/peers   the connected peer IDs, as a JSON array, if allowed
//	GET /peerjs?key=&id=&token=   the signalling WebSocket
//
// Mounted under a path, with http.StripPrefix("/myapp", s), those are under
// /myapp, and clients are configured with that path.
//
// On the WebSocket, a client that gives the right key and an ID that no
// other client holds (or the token it registered the ID with) gets OPEN. The
// server then forwards the OFFER, ANSWER, CANDIDATE, LEAVE and EXPIRE
// messages of the client to their dst, with src set to the client's ID.
// Messages for a peer that is not connected (but for LEAVE and EXPIRE) are
// held for it, up to 64 (and 16 MiB for all absent peers), and if it has
// not connected within ExpireTimeout each sender gets EXPIRE from it. HEARTBEAT, or anything else, keeps the
// client alive; a client the server does not hear from for AliveTimeout is
// dropped. A client that cannot keep up with the messages for it is
// dropped too. A dropped client, or one whose connection breaks, is
// unregistered at once, so that messages for it are held until it
// reconnects (with its token) or they expire.
//
// Close disconnects every client; the HTTP server is the caller's.
type SignalServer struct {
	key      string
	expire   time.Duration
	alive    time.Duration
	limit    int
	discover bool
	log      *slog.Logger
	upgrader websocket.Upgrader

	mu        sync.Mutex
	closed    bool
	clients   map[string]*sigClient
	held      map[string]*heldMessages // by dst
	heldBytes int
	wg        sync.WaitGroup // WebSocket handlers and writers
}

// sigClient is one connected client.
type sigClient struct {
	id, token string
	conn      *websocket.Conn
	out       chan []byte   // messages to write
	outBytes  atomic.Int64  // their size
	gone      chan struct{} // closed when the client is dropped
	goneOnce  sync.Once
}

// heldMessages are messages for a peer that is not connected.
type heldMessages struct {
	msgs  []heldMessage
	timer *time.Timer
}

type heldMessage struct {
	src  string
	data []byte // the message, as it is forwarded
}

// NewSignalServer returns a PeerServer configured by cfg.
func NewSignalServer(cfg SignalConfig) (*SignalServer, error) {
	if cfg.ExpireTimeout < 0 || cfg.AliveTimeout < 0 || cfg.ConcurrentLimit < 0 {
		return nil, errors.New("webrtc: negative ExpireTimeout, AliveTimeout or ConcurrentLimit")
	}
	s := &SignalServer{
		key:      cfg.Key,
		expire:   cfg.ExpireTimeout,
		alive:    cfg.AliveTimeout,
		limit:    cfg.ConcurrentLimit,
		discover: cfg.AllowDiscovery,
		log:      cfg.Logger,
		clients:  make(map[string]*sigClient),
		held:     make(map[string]*heldMessages),
	}
	if s.key == "" {
		s.key = DefaultKey
	}
	if s.expire == 0 {
		s.expire = DefaultExpireTimeout
	}
	if s.alive == 0 {
		s.alive = DefaultAliveTimeout
	}
	if s.limit == 0 {
		s.limit = DefaultConcurrentLimit
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	check := cfg.CheckOrigin
	if check == nil {
		check = func(*http.Request) bool { return true }
	}
	s.upgrader = websocket.Upgrader{CheckOrigin: check, HandshakeTimeout: signalWriteTimeout}
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *SignalServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	if path == "/peerjs" {
		s.serveWS(w, r)
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		w.Header().Set("Access-Control-Allow-Origin", origin)
		w.Header().Add("Vary", "Origin")
	}
	if r.Method == http.MethodOptions {
		w.Header().Set("Access-Control-Allow-Methods", "GET")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if path == "" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(signalServerTxt))
		return
	}
	key, what, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if !ok || (what != "id" && what != "peers") {
		http.NotFound(w, r)
		return
	}
	if key != s.key {
		http.Error(w, errInvalidKey, http.StatusUnauthorized)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if what == "id" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(s.newID()))
		return
	}
	if !s.discover {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.Peers())
}

// newID returns a UUID that no client holds.
func (s *SignalServer) newID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if id := uuid.NewString(); s.clients[id] == nil {
			return id
		}
	}
}

// Peers returns the IDs of the connected clients.
func (s *SignalServer) Peers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.clients))
	for id := range s.clients {
		ids = append(ids, id)
	}
	return ids
}

func (s *SignalServer) serveWS(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "expected a WebSocket upgrade", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "server closed", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	defer conn.Close()
	conn.SetReadLimit(maxSignalMessage)
	q := r.URL.Query()
	id, token, key := q.Get("id"), q.Get("token"), q.Get("key")
	switch {
	case id == "" || token == "" || key == "":
		refuse(conn, typeError, errInvalidWS)
		return
	case key != s.key:
		refuse(conn, typeError, errInvalidKey)
		return
	case !ValidID(id) || len(token) > maxIDLen:
		refuse(conn, typeError, errInvalidID)
		return
	}
	c, refusal, msg := s.register(id, token, conn)
	if c == nil {
		refuse(conn, refusal, msg)
		return
	}
	s.log.Debug("client connected", "id", id)
	s.wg.Add(1)
	go s.write(c)
	s.read(c)
	s.remove(c)
	s.log.Debug("client disconnected", "id", id)
}

// refuse sends an ERROR or ID-TAKEN and closes the connection.
func refuse(conn *websocket.Conn, typ, msg string) {
	p, _ := json.Marshal(payload{Msg: msg})
	data, _ := json.Marshal(message{Type: typ, Payload: p})
	_ = conn.SetWriteDeadline(time.Now().Add(signalWriteTimeout))
	_ = conn.WriteMessage(websocket.TextMessage, data)
	_ = conn.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
}

// register makes conn the client with the ID, queues OPEN and the messages
// held for it, or says why not.
func (s *SignalServer) register(id, token string, conn *websocket.Conn) (c *sigClient, refusal, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, typeError, "server closed"
	}
	old := s.clients[id]
	switch {
	case old != nil && old.token != token:
		return nil, typeIDTaken, errIDTakenText
	case old == nil && len(s.clients) >= s.limit:
		return nil, typeError, errLimitExceed
	}
	if old != nil {
		// The same client again, on a new connection: the old one is dead.
		old.drop()
	}
	c = &sigClient{id: id, token: token, conn: conn, out: make(chan []byte, clientQueue), gone: make(chan struct{})}
	s.clients[id] = c
	open, _ := json.Marshal(message{Type: typeOpen})
	c.queue(open)
	if h := s.held[id]; h != nil {
		h.timer.Stop()
		delete(s.held, id)
		for _, m := range h.msgs {
			s.heldBytes -= len(m.data)
			c.queue(m.data)
		}
	}
	return c, "", ""
}

// read handles the client's messages until its connection ends.
func (s *SignalServer) read(c *sigClient) {
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(s.alive))
		typ, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		if typ != websocket.TextMessage && typ != websocket.BinaryMessage {
			continue
		}
		var m message
		if err := json.Unmarshal(data, &m); err != nil {
			s.log.Debug("ignoring a message that is not JSON", "from", c.id)
			continue
		}
		m.Src = c.id
		switch m.Type {
		case typeOffer, typeAnswer, typeCandidate, typeLeave, typeExpire:
			s.transmit(m)
		case typeHeartbeat:
		default:
			s.log.Debug("ignoring a message", "type", m.Type, "from", c.id)
		}
	}
}

// transmit forwards m to its dst, or holds it for a dst that is not
// connected.
func (s *SignalServer) transmit(m message) {
	data, err := json.Marshal(message{Type: m.Type, Src: m.Src, Dst: m.Dst, Payload: m.Payload})
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if m.Dst == "" || !ValidID(m.Dst) {
		if m.Dst == "" && m.Type == typeLeave {
			// The client says it is leaving.
			if c := s.clients[m.Src]; c != nil {
				s.removeLocked(c)
			}
		}
		return
	}
	if dst := s.clients[m.Dst]; dst != nil {
		if !dst.queue(data) {
			s.log.Warn("dropping a client that does not keep up", "id", dst.id)
			s.removeLocked(dst)
			s.leave(m.Dst, m.Src)
		}
		return
	}
	if m.Type == typeLeave || m.Type == typeExpire {
		return
	}
	h := s.held[m.Dst]
	if h == nil {
		if len(s.held) >= s.limit {
			return
		}
		h = &heldMessages{}
		dst := m.Dst
		h.timer = time.AfterFunc(s.expire, func() { s.expireHeld(dst, h) })
		s.held[dst] = h
	}
	if len(h.msgs) < maxHeld && s.heldBytes+len(data) <= maxHeldBytes {
		h.msgs = append(h.msgs, heldMessage{src: m.Src, data: data})
		s.heldBytes += len(data)
	}
}

// leave tells to that the peer from is gone. The caller holds s.mu.
func (s *SignalServer) leave(from, to string) {
	if c := s.clients[to]; c != nil {
		data, _ := json.Marshal(message{Type: typeLeave, Src: from, Dst: to})
		c.queue(data)
	}
}

// expireHeld answers the senders of messages held too long for dst.
func (s *SignalServer) expireHeld(dst string, h *heldMessages) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held[dst] != h {
		return // delivered, or the server closed
	}
	delete(s.held, dst)
	told := make(map[string]bool)
	for _, m := range h.msgs {
		s.heldBytes -= len(m.data)
		if told[m.src] {
			continue
		}
		told[m.src] = true
		if c := s.clients[m.src]; c != nil {
			data, _ := json.Marshal(message{Type: typeExpire, Src: dst, Dst: m.src})
			c.queue(data)
		}
	}
}

// queue queues data for the client without waiting, and reports whether
// there was room.
func (c *sigClient) queue(data []byte) bool {
	if c.outBytes.Add(int64(len(data))) > clientQueueBytes {
		c.outBytes.Add(-int64(len(data)))
		return false
	}
	select {
	case c.out <- data:
		return true
	default:
		c.outBytes.Add(-int64(len(data)))
		return false
	}
}

// write writes the client's queue until it is dropped.
func (s *SignalServer) write(c *sigClient) {
	defer s.wg.Done()
	for {
		select {
		case data := <-c.out:
			c.outBytes.Add(-int64(len(data)))
			_ = c.conn.SetWriteDeadline(time.Now().Add(signalWriteTimeout))
			if err := c.conn.WriteMessage(websocket.TextMessage, data); err != nil {
				s.remove(c)
				return
			}
		case <-c.gone:
			return
		}
	}
}

// drop ends the client's connection: its reader and writer stop.
func (c *sigClient) drop() {
	c.goneOnce.Do(func() {
		close(c.gone)
		_ = c.conn.Close()
	})
}

// remove unregisters the client, if it is still the one with its ID, and
// ends its connection. From then on, messages for its ID are held for it,
// as for any absent peer, until it connects again.
func (s *SignalServer) remove(c *sigClient) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(c)
}

// removeLocked is remove for a caller that holds s.mu.
func (s *SignalServer) removeLocked(c *sigClient) {
	if s.clients[c.id] == c {
		delete(s.clients, c.id)
	}
	c.drop()
}

// Close disconnects every client and drops the messages held, and returns
// when the server's goroutines have ended. Requests after Close are
// refused. Close is idempotent and returns nil.
func (s *SignalServer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	for _, c := range s.clients {
		c.drop()
	}
	for dst, h := range s.held {
		h.timer.Stop()
		delete(s.held, dst)
	}
	s.heldBytes = 0
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}
