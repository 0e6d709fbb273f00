package webrtc_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/distrirender/distrirender/transport/webrtc"
)

// rawClient is a PeerServer client that speaks the protocol by hand.
type rawClient struct {
	t    testing.TB
	conn *websocket.Conn
}

// msg is a signalling message as the tests read and write it.
type msg struct {
	Type    string         `json:"type"`
	Src     string         `json:"src,omitempty"`
	Dst     string         `json:"dst,omitempty"`
	Payload map[string]any `json:"payload,omitempty"`
}

// dialRaw opens the signalling WebSocket of the server at base with the
// given query.
func dialRaw(t testing.TB, base string, q url.Values) *rawClient {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Scheme = "ws"
	u.Path += "peerjs"
	u.RawQuery = q.Encode()
	conn, _, err := websocket.DefaultDialer.Dial(u.String(), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &rawClient{t: t, conn: conn}
}

// register opens a client with the default key and waits for OPEN.
func register(t testing.TB, base, id string) *rawClient {
	t.Helper()
	c := dialRaw(t, base, url.Values{"key": {"peerjs"}, "id": {id}, "token": {"tok-" + id}})
	if m := c.read(); m.Type != "OPEN" {
		t.Fatalf("%s: first message %+v, want OPEN", id, m)
	}
	return c
}

func (c *rawClient) send(m any) {
	c.t.Helper()
	if err := c.conn.WriteJSON(m); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next message, failing the test after 5 s.
func (c *rawClient) read() msg {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var m msg
	if err := c.conn.ReadJSON(&m); err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

// closed waits for the server to close the connection.
func (c *rawClient) closed() {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := c.conn.ReadMessage(); err != nil {
			if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
				c.t.Fatal("the server did not close the connection")
			}
			return
		}
	}
}

func get(t testing.TB, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestSignalServerHTTP(t *testing.T) {
	base := signalServer(t, webrtc.SignalConfig{Key: "k", AllowDiscovery: true})
	if code, body := get(t, base); code != 200 || !strings.Contains(body, "PeerJS") {
		t.Errorf("GET / = %d %q", code, body)
	}
	code, id := get(t, base+"k/id")
	if code != 200 || !webrtc.ValidID(id) || len(id) != 36 {
		t.Errorf("GET /k/id = %d %q, want a UUID", code, id)
	}
	if code, _ := get(t, base+"other/id"); code != http.StatusUnauthorized {
		t.Errorf("GET /other/id = %d, want 401", code)
	}
	if code, _ := get(t, base+"k/nothing"); code != http.StatusNotFound {
		t.Errorf("GET /k/nothing = %d, want 404", code)
	}
	dialRaw(t, base, url.Values{"key": {"k"}, "id": {"p1"}, "token": {"t"}}).read()
	code, body := get(t, base+"k/peers")
	var peers []string
	if code != 200 || json.Unmarshal([]byte(body), &peers) != nil || !slices.Equal(peers, []string{"p1"}) {
		t.Errorf("GET /k/peers = %d %q, want [\"p1\"]", code, body)
	}

	closed := signalServer(t, webrtc.SignalConfig{})
	if code, _ := get(t, closed+"peerjs/peers"); code != http.StatusUnauthorized {
		t.Errorf("GET /peerjs/peers without discovery = %d, want 401", code)
	}
}

// TestSignalServerRefusals checks the ERROR and ID-TAKEN answers, as npm
// peer gives them.
func TestSignalServerRefusals(t *testing.T) {
	base := signalServer(t, webrtc.SignalConfig{ConcurrentLimit: 2})
	for _, c := range []struct {
		name string
		q    url.Values
		want msg
	}{
		{"no token", url.Values{"key": {"peerjs"}, "id": {"a"}}, msg{Type: "ERROR", Payload: map[string]any{"msg": "No id, token, or key supplied to websocket server"}}},
		{"bad key", url.Values{"key": {"nope"}, "id": {"a"}, "token": {"t"}}, msg{Type: "ERROR", Payload: map[string]any{"msg": "Invalid key provided"}}},
		{"bad id", url.Values{"key": {"peerjs"}, "id": {"a/b"}, "token": {"t"}}, msg{Type: "ERROR", Payload: map[string]any{"msg": "Invalid id provided"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := dialRaw(t, base, c.q)
			if got := cl.read(); got.Type != c.want.Type || got.Payload["msg"] != c.want.Payload["msg"] {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
			cl.closed()
		})
	}
	register(t, base, "a")
	taken := dialRaw(t, base, url.Values{"key": {"peerjs"}, "id": {"a"}, "token": {"other"}})
	if m := taken.read(); m.Type != "ID-TAKEN" {
		t.Errorf("same ID, other token: got %+v, want ID-TAKEN", m)
	}
	taken.closed()
	register(t, base, "b")
	full := dialRaw(t, base, url.Values{"key": {"peerjs"}, "id": {"c"}, "token": {"t"}})
	if m := full.read(); m.Type != "ERROR" || m.Payload["msg"] != "Server has reached its concurrent user limit" {
		t.Errorf("third client with a limit of 2: got %+v", m)
	}
}

// TestSignalServerForwarding checks that messages reach their dst with src
// set, that messages for an absent peer are held for it, and that their
// senders get EXPIRE if it does not come.
func TestSignalServerForwarding(t *testing.T) {
	base := signalServer(t, webrtc.SignalConfig{ExpireTimeout: 200 * time.Millisecond})
	a, b := register(t, base, "a"), register(t, base, "b")
	offer := map[string]any{"type": "data", "connectionId": "dc_1", "sdp": map[string]any{"type": "offer", "sdp": "v=0"}}
	a.send(msg{Type: "OFFER", Src: "forged", Dst: "b", Payload: offer})
	if m := b.read(); m.Type != "OFFER" || m.Src != "a" || m.Dst != "b" || m.Payload["connectionId"] != "dc_1" {
		t.Fatalf("b got %+v, want the OFFER from a", m)
	}
	a.send(msg{Type: "HEARTBEAT"})
	a.send(map[string]any{"type": "UNKNOWN", "dst": "b"})
	b.send(msg{Type: "ANSWER", Dst: "a", Payload: map[string]any{"connectionId": "dc_1"}})
	if m := a.read(); m.Type != "ANSWER" || m.Src != "b" {
		t.Fatalf("a got %+v, want the ANSWER from b", m)
	}

	// Held for c, who connects in time.
	a.send(msg{Type: "CANDIDATE", Dst: "c", Payload: map[string]any{"connectionId": "dc_2"}})
	c := register(t, base, "c")
	if m := c.read(); m.Type != "CANDIDATE" || m.Src != "a" {
		t.Fatalf("c got %+v, want the CANDIDATE a sent before it connected", m)
	}
	// Held for d, who does not come: EXPIRE, once per sender.
	a.send(msg{Type: "OFFER", Dst: "d", Payload: offer})
	a.send(msg{Type: "CANDIDATE", Dst: "d", Payload: offer})
	if m := a.read(); m.Type != "EXPIRE" || m.Src != "d" || m.Dst != "a" {
		t.Fatalf("a got %+v, want EXPIRE from d", m)
	}
	a.send(msg{Type: "LEAVE", Dst: "b"})
	if m := b.read(); m.Type != "LEAVE" || m.Src != "a" {
		t.Fatalf("b got %+v, want LEAVE from a", m)
	}
	// a gets no second EXPIRE (it would have been sent with the first):
	// the next message is this one.
	c.send(msg{Type: "ANSWER", Dst: "a", Payload: map[string]any{"connectionId": "dc_2"}})
	if m := a.read(); m.Type != "ANSWER" || m.Src != "c" {
		t.Fatalf("a got %+v", m)
	}
}

// TestSignalServerReconnect registers a client again under the same token:
// the new connection replaces the old.
func TestSignalServerReconnect(t *testing.T) {
	base := signalServer(t, webrtc.SignalConfig{})
	old := register(t, base, "a")
	again := register(t, base, "a")
	old.closed()
	b := register(t, base, "b")
	b.send(msg{Type: "OFFER", Dst: "a", Payload: map[string]any{"connectionId": "x"}})
	if m := again.read(); m.Type != "OFFER" || m.Src != "b" {
		t.Fatalf("got %+v on the new connection", m)
	}
}

// TestSignalServerClose disconnects clients and refuses new ones.
func TestSignalServerClose(t *testing.T) {
	s, err := webrtc.NewSignalServer(webrtc.SignalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	defer ts.Close()
	a := register(t, ts.URL+"/", "a")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	a.closed()
	if code, _ := get(t, ts.URL+"/peerjs"); code != http.StatusBadRequest {
		t.Errorf("GET /peerjs without upgrade = %d", code)
	}
	_ = s.Close()
}
