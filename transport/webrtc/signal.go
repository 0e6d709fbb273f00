package webrtc

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// The message types of the PeerJS PeerServer protocol.
const (
	typeOpen      = "OPEN"      // server: the id is registered
	typeOffer     = "OFFER"     // peer to peer: an SDP offer that opens a connection
	typeAnswer    = "ANSWER"    // peer to peer: the SDP answer
	typeCandidate = "CANDIDATE" // peer to peer: one trickled ICE candidate
	typeLeave     = "LEAVE"     // the peer named by src is gone
	typeExpire    = "EXPIRE"    // server: a message to src was never picked up
	typeHeartbeat = "HEARTBEAT" // client: still here
	typeIDTaken   = "ID-TAKEN"  // server: another client holds the id
	typeError     = "ERROR"     // server: refused (bad key, bad parameters, full)
)

// message is one signalling message, a JSON object on the WebSocket. The
// server sets src to the sender's id when it forwards a message to dst.
type message struct {
	Type    string          `json:"type"`
	Src     string          `json:"src,omitempty"`
	Dst     string          `json:"dst,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// payload is the payload of OFFER, ANSWER, CANDIDATE, ERROR and ID-TAKEN,
// with the field names peerjs uses.
type payload struct {
	SDP           *sessionDescription `json:"sdp,omitempty"`           // OFFER, ANSWER
	Type          string              `json:"type,omitempty"`          // "data" (or "media")
	ConnectionID  string              `json:"connectionId,omitempty"`  // OFFER, ANSWER, CANDIDATE
	Label         string              `json:"label,omitempty"`         // OFFER: the data channel's label
	Reliable      *bool               `json:"reliable,omitempty"`      // OFFER: ordered channel
	Serialization string              `json:"serialization,omitempty"` // OFFER
	Metadata      json.RawMessage     `json:"metadata,omitempty"`      // OFFER: the application's, passed through
	Candidate     *candidate          `json:"candidate,omitempty"`     // CANDIDATE
	Msg           string              `json:"msg,omitempty"`           // ERROR, ID-TAKEN
}

// sessionDescription is RTCSessionDescriptionInit.
type sessionDescription struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
}

// candidate is RTCIceCandidateInit.
type candidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// The data connection types of an OFFER's payload.
const (
	connData  = "data"
	connMedia = "media"
)

// DefaultKey is the PeerServer API key peerjs uses by default, and the one
// Config.Key and SignalConfig.Key default to.
const DefaultKey = "peerjs"

// maxIDLen bounds a peer ID (the PeerServer sets no limit; UUIDs have 36).
const maxIDLen = 128

// ValidID reports whether id is a PeerJS peer ID: 1 to 128 letters and
// digits, with single spaces, underscores or hyphens between them (the
// syntax peerjs enforces, /^[A-Za-z0-9]+(?:[ _-][A-Za-z0-9]+)*$/, plus a
// length limit).
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > maxIDLen {
		return false
	}
	sep := true // a separator may not come first, nor follow another
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			sep = false
		case (c == ' ' || c == '_' || c == '-') && !sep:
			sep = true
		default:
			return false
		}
	}
	return !sep // nor come last
}

// maxSignalMessage bounds a signalling message, in either direction. An SDP
// is a few KiB; the rest is the application's OFFER metadata.
const maxSignalMessage = 256 << 10

// signalWriteTimeout bounds one write to the signalling WebSocket.
const signalWriteTimeout = 10 * time.Second

// DefaultHeartbeat is how often the transport tells the PeerServer it is
// still there, unless Config.Heartbeat says otherwise: peerjs's pingInterval.
// The PeerServer drops a client it has not heard from for 90 s (npm peer's
// alive_timeout; SignalConfig.AliveTimeout).
const DefaultHeartbeat = 5 * time.Second

// Back-off between attempts to reconnect to the signalling server.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// errSignalDown is wrapped by errors for a message that cannot be sent
// because the signalling connection is down.
var errSignalDown = errors.New("not connected to the signalling server")

// signal is the transport's connection to the PeerServer: a WebSocket that it
// keeps open, reconnecting with the same id and token when it breaks. It
// passes every message it reads to handle, on its reading goroutine.
type signal struct {
	wsURL     string // ws(s)://host:port/path/peerjs?key=...&id=...&token=...
	log       *slog.Logger
	dialer    *websocket.Dialer
	heartbeat time.Duration
	handle    func(message)

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	conn *websocket.Conn // nil while disconnected

	wmu sync.Mutex // held while writing to the connection
}

// serverURLs returns the base HTTP URL of a PeerServer (ending in "/") and
// the matching WebSocket URL, from an http, https, ws or wss URL.
func serverURLs(server string) (httpBase, wsBase *url.URL, err error) {
	u, err := url.Parse(server)
	if err != nil {
		return nil, nil, fmt.Errorf("webrtc: signalling server URL %q: %w", server, err)
	}
	if u.Host == "" {
		return nil, nil, fmt.Errorf("webrtc: signalling server URL %q has no host", server)
	}
	h, w := *u, *u
	switch u.Scheme {
	case "http", "ws":
		h.Scheme, w.Scheme = "http", "ws"
	case "https", "wss":
		h.Scheme, w.Scheme = "https", "wss"
	default:
		return nil, nil, fmt.Errorf("webrtc: signalling server URL %q: scheme is not http, https, ws or wss", server)
	}
	if !strings.HasSuffix(h.Path, "/") {
		h.Path += "/"
	}
	w.Path = h.Path
	h.RawQuery, w.RawQuery, h.Fragment, w.Fragment = "", "", "", ""
	return &h, &w, nil
}

// fetchID asks the PeerServer for a fresh peer ID: GET {path}{key}/id.
func fetchID(ctx context.Context, client *http.Client, base *url.URL, key string) (string, error) {
	u := base.JoinPath(url.PathEscape(key), "id")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIDLen+1))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	id := strings.TrimSpace(string(body))
	if !ValidID(id) {
		return "", fmt.Errorf("GET %s: %q is not a peer ID", u, body)
	}
	return id, nil
}

// randomToken returns a fresh token for the PeerServer: the secret that lets
// a client reclaim its id after its WebSocket broke.
func randomToken() string {
	return strings.ToLower(crand.Text())
}

// connectSignal opens the signalling connection and waits for the server to
// register the id (OPEN). It fails with an error wrapping ErrIDTaken if the
// server says the id is taken, and with the server's message for ERROR.
// Once it has returned, the connection stays up (reconnecting as needed)
// until close.
func connectSignal(ctx context.Context, s *signal) error {
	conn, err := s.dial(ctx)
	if err != nil {
		return err
	}
	// Wait for OPEN, but no longer than ctx allows.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		_ = conn.SetReadDeadline(time.Now().Add(3 * s.heartbeat))
		m, err := readMessage(conn)
		if err != nil {
			_ = conn.Close()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("webrtc: waiting for OPEN from the signalling server: %w", err)
		}
		switch m.Type {
		case typeOpen:
		case typeIDTaken:
			_ = conn.Close()
			return fmt.Errorf("webrtc: signalling server: %w", ErrIDTaken)
		case typeError:
			_ = conn.Close()
			return fmt.Errorf("webrtc: signalling server refused: %s", serverMsg(m))
		default:
			continue // not for a client that is only now registered
		}
		break
	}
	if !stop() {
		_ = conn.Close()
		return ctx.Err()
	}
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
	s.wg.Add(1)
	go s.run(conn)
	return nil
}

func (s *signal) dial(ctx context.Context) (*websocket.Conn, error) {
	conn, resp, err := s.dialer.DialContext(ctx, s.wsURL, nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if resp != nil {
			err = fmt.Errorf("%w (HTTP %s)", err, resp.Status)
		}
		return nil, fmt.Errorf("webrtc: connecting to the signalling server: %w", err)
	}
	conn.SetReadLimit(maxSignalMessage)
	return conn, nil
}

// serverMsg returns the msg of an ERROR or ID-TAKEN payload.
func serverMsg(m message) string {
	var p payload
	if json.Unmarshal(m.Payload, &p) != nil || p.Msg == "" {
		return "(no message)"
	}
	return p.Msg
}

func readMessage(conn *websocket.Conn) (message, error) {
	for {
		typ, data, err := conn.ReadMessage()
		if err != nil {
			return message{}, err
		}
		if typ != websocket.TextMessage && typ != websocket.BinaryMessage {
			continue
		}
		var m message
		if err := json.Unmarshal(data, &m); err != nil || m.Type == "" {
			continue // peerjs ignores what it cannot parse too
		}
		return m, nil
	}
}

// run reads the connection until it breaks, then reconnects, until close.
func (s *signal) run(conn *websocket.Conn) {
	defer s.wg.Done()
	backoff := minBackoff
	for {
		start := time.Now()
		s.read(conn)
		s.mu.Lock()
		if s.conn == conn {
			s.conn = nil
		}
		s.mu.Unlock()
		_ = conn.Close()
		if time.Since(start) > 2*maxBackoff {
			backoff = minBackoff // it was up a while: try again soon
		}
		if conn = s.reconnect(&backoff); conn == nil {
			return
		}
	}
}

// read passes the messages of conn to handle until conn breaks, sending
// heartbeats meanwhile.
func (s *signal) read(conn *websocket.Conn) {
	stop := make(chan struct{})
	beat := make(chan struct{})
	go func() {
		defer close(beat)
		s.beat(conn, stop)
	}()
	defer func() {
		close(stop)
		<-beat
	}()
	// Anything from the server, a pong included, shows it is alive.
	alive := func() { _ = conn.SetReadDeadline(time.Now().Add(3 * s.heartbeat)) }
	conn.SetPongHandler(func(string) error { alive(); return nil })
	for {
		alive()
		m, err := readMessage(conn)
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Info("signalling connection lost", "err", err)
			}
			return
		}
		switch m.Type {
		case typeOpen, typeHeartbeat:
		case typeIDTaken, typeError:
			// After a reconnect: the server will not have us (back).
			s.log.Warn("signalling server refused the reconnection", "type", m.Type, "msg", serverMsg(m))
			return
		default:
			s.handle(m)
		}
	}
}

// beat sends a HEARTBEAT message, which the PeerServer expects, and a
// WebSocket ping, whose pong shows that the server is alive, every heartbeat.
func (s *signal) beat(conn *websocket.Conn, stop <-chan struct{}) {
	tick := time.NewTicker(s.heartbeat)
	defer tick.Stop()
	hb, _ := json.Marshal(message{Type: typeHeartbeat})
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if s.write(conn, hb) != nil {
			return
		}
		_ = conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(signalWriteTimeout))
	}
}

// reconnect dials the server until it answers or close is called, waiting
// longer between attempts each time. It returns nil after close.
func (s *signal) reconnect(backoff *time.Duration) *websocket.Conn {
	for {
		wait := *backoff/2 + rand.N(*backoff/2+1)
		*backoff = min(2**backoff, maxBackoff)
		select {
		case <-s.ctx.Done():
			return nil
		case <-time.After(wait):
		}
		ctx, cancel := context.WithTimeout(s.ctx, signalWriteTimeout)
		conn, err := s.dial(ctx)
		cancel()
		if err != nil {
			s.log.Debug("reconnecting to the signalling server", "err", err, "retry", *backoff)
			continue
		}
		// The server re-registers the id under the same token, with an OPEN
		// or (npm peer, if it has not yet noticed that the old connection
		// broke) without one; either way the connection is usable.
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			_ = conn.Close()
			return nil
		}
		s.conn = conn
		s.mu.Unlock()
		s.log.Info("signalling connection restored")
		return conn
	}
}

// send sends m on the current connection. It fails, with an error wrapping
// errSignalDown, while the connection is down.
func (s *signal) send(m message) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	if conn == nil {
		return fmt.Errorf("webrtc: sending %s to %s: %w", m.Type, m.Dst, errSignalDown)
	}
	if err := s.write(conn, data); err != nil {
		return fmt.Errorf("webrtc: sending %s to %s: %w: %w", m.Type, m.Dst, errSignalDown, err)
	}
	return nil
}

func (s *signal) write(conn *websocket.Conn, data []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(signalWriteTimeout))
	err := conn.WriteMessage(websocket.TextMessage, data)
	if err != nil {
		_ = conn.Close() // the reader notices and reconnects
	}
	return err
}

// up reports whether the signalling connection is up.
func (s *signal) up() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn != nil
}

// close closes the connection and stops reconnecting, and returns when the
// reading goroutine has ended.
func (s *signal) close() {
	s.mu.Lock()
	s.cancel()
	conn := s.conn
	s.conn = nil
	s.mu.Unlock()
	if conn != nil {
		// WriteControl may run alongside a write in progress.
		_ = conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		_ = conn.Close()
	}
	s.wg.Wait()
}
