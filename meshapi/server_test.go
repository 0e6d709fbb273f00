package meshapi

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/reliability"
	"github.com/distrirender/distrirender/routing"
	"github.com/distrirender/distrirender/transport/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testMaxBody is the body limit of the test nodes and APIs: small, so the
// 413 cases need no megabytes.
const testMaxBody = 1024

// apiNode is a node on the memory transport with its API served by httptest.
type apiNode struct {
	n    *node.Node
	addr string // memory transport address
	srv  *Server
	ts   *httptest.Server
	cl   *Client
}

// line builds nodes n0 - n1 - ... on one memory network, named as their
// addresses, each with its API and pump running; everything is closed at
// the end of the test.
func line(t *testing.T, size int, opt Options) []*apiNode {
	t.Helper()
	return namedLine(t, size, opt, func(i int) string { return fmt.Sprintf("n%d", i) })
}

// namedLine is line with node i named name(i) ("": no name).
func namedLine(t *testing.T, size int, opt Options, name func(i int) string) []*apiNode {
	t.Helper()
	net := memory.NewNetwork(memory.Config{Seed: 1})
	hc := &http.Client{Transport: &http.Transport{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var nodes []*apiNode
	t.Cleanup(func() {
		for _, a := range nodes {
			a.srv.CloseStreams()
			a.ts.Close()
			a.n.Close()
		}
		cancel()
		wg.Wait()
		hc.CloseIdleConnections()
		net.Close()
	})
	for i := range size {
		addr := fmt.Sprintf("n%d", i)
		tr, err := net.Listen(addr)
		if err != nil {
			t.Fatal(err)
		}
		n, err := node.New(tr,
			node.WithName(name(i)),
			node.WithKeepalive(50*time.Millisecond, 4),
			node.WithMaxBody(testMaxBody),
			node.WithMinConnections(0),
			node.WithReliability(reliability.Config{MinRTO: 10 * time.Millisecond, MaxRTO: 200 * time.Millisecond, MaxRetries: 5}),
		)
		if err != nil {
			t.Fatal(err)
		}
		o := opt
		o.MaxBody = testMaxBody
		srv := New(n, o)
		a := &apiNode{n: n, addr: addr, srv: srv, ts: httptest.NewServer(srv)}
		a.cl = &Client{BaseURL: a.ts.URL, HTTP: hc}
		nodes = append(nodes, a)
		wg.Go(func() { srv.Run(ctx) })
		if i > 0 {
			if err := n.Connect(ctx, nodes[i-1].addr); err != nil {
				t.Fatal(err)
			}
		}
	}
	meshtest.WaitFor(t, 5*time.Second, "every node to see every other", func() bool {
		for _, a := range nodes {
			reach := 0
			for _, ni := range a.n.Topology().Nodes {
				if ni.Distance >= 0 {
					reach++
				}
			}
			if reach != size {
				return false
			}
		}
		return true
	})
	return nodes
}

func TestRequests(t *testing.T) {
	nodes := line(t, 3, Options{SendTimeout: time.Second, ConnectTimeout: time.Second, CheckAddr: func(addr string) error {
		if strings.Contains(addr, " ") {
			return errors.New("no spaces in addresses")
		}
		return nil
	}})
	a, c := nodes[0], nodes[2]
	big := strings.Repeat("x", testMaxBody+1)
	cases := []struct {
		name, method, path, ctype, body string
		code                            int
		want                            string // substring of the answer
	}{
		{"status", "GET", "/v1/status", "", "", 200, `"id": "` + a.n.ID().String()},
		{"status name", "GET", "/v1/status", "", "", 200, `"name": "n0"`},
		{"topology names", "GET", "/v1/topology", "", "", 200, `"name": "n2"`},
		{"status HEAD", "HEAD", "/v1/status", "", "", 200, ""},
		{"topology", "GET", "/v1/topology", "", "", 200, `"diameter": 2`},
		{"send text", "POST", "/v1/send", "application/json", `{"to":"` + c.n.ID().String() + `","body":"hi"}`, 202, `"reachable": true`},
		{"send base64", "POST", "/v1/send", "application/json; charset=utf-8", `{"to":"` + c.n.ID().String() + `","body_base64":"AP8="}`, 202, `"accepted": true`},
		{"send empty body", "POST", "/v1/send", "application/json", `{"to":"` + c.n.ID().String() + `","body":""}`, 202, `"accepted": true`},
		{"send by name", "POST", "/v1/send", "", `{"to":"n2","body":"x"}`, 202, `"to": "` + c.n.ID().String()},
		{"send by prefix", "POST", "/v1/send", "", `{"to":"` + c.n.ID().String()[:8] + `","body":"x"}`, 202, `"to": "` + c.n.ID().String()},
		{"send by prefix with hyphen", "POST", "/v1/send", "", `{"to":"` + strings.ToUpper(c.n.ID().String()[:13]) + `","body":"x"}`, 202, `"to": "` + c.n.ID().String()},
		{"send to unknown name", "POST", "/v1/send", "", `{"to":"nosuch","body":"x"}`, 400, `\"nosuch\" is neither a UUID`},
		{"send to short prefix", "POST", "/v1/send", "", `{"to":"` + c.n.ID().String()[:3] + `","body":"x"}`, 400, "at least 4 hex digits"},
		{"send to own name", "POST", "/v1/send", "", `{"to":"n0","body":"x"}`, 400, "this node"},
		{"send to unknown node", "POST", "/v1/send", "application/json", `{"to":"` + uuid.NewString() + `","body":"x"}`, 202, `"reachable": false`},
		{"broadcast", "POST", "/v1/broadcast", "application/json", `{"body":"all"}`, 202, `"nodes": 2`},
		{"send no to", "POST", "/v1/send", "", `{"body":"x"}`, 400, "to is required"},
		{"send bad to", "POST", "/v1/send", "", `{"to":"zzz","body":"x"}`, 400, "neither a UUID"},
		{"send nil to", "POST", "/v1/send", "", `{"to":"00000000-0000-0000-0000-000000000000","body":"x"}`, 400, "nil UUID"},
		{"send to self", "POST", "/v1/send", "", `{"to":"` + a.n.ID().String() + `","body":"x"}`, 400, "this node"},
		{"send no body", "POST", "/v1/send", "", `{"to":"` + c.n.ID().String() + `"}`, 400, "body or body_base64 is required"},
		{"send both bodies", "POST", "/v1/send", "", `{"to":"` + c.n.ID().String() + `","body":"x","body_base64":"eA=="}`, 400, "not both"},
		{"send bad base64", "POST", "/v1/send", "", `{"to":"` + c.n.ID().String() + `","body_base64":"!!"}`, 400, "base64"},
		{"send unknown field", "POST", "/v1/send", "", `{"to":"` + c.n.ID().String() + `","body":"x","ttl":3}`, 400, "unknown field"},
		{"send malformed", "POST", "/v1/send", "", `{"to":`, 400, "invalid JSON"},
		{"send empty request", "POST", "/v1/send", "", ``, 400, "empty request body"},
		{"send trailing data", "POST", "/v1/send", "", `{"to":"` + c.n.ID().String() + `","body":"x"} {}`, 400, "data after"},
		{"send wrong type", "POST", "/v1/send", "", `{"to":5,"body":"x"}`, 400, "invalid JSON"},
		{"send text/plain", "POST", "/v1/send", "text/plain", `{"to":"` + c.n.ID().String() + `","body":"x"}`, 415, "application/json"},
		{"send without Content-Type", "POST", "/v1/send", "none", `{"to":"` + c.n.ID().String() + `","body":"x"}`, 415, "application/json"},
		{"send form", "POST", "/v1/send", "application/x-www-form-urlencoded", `{"to":"` + c.n.ID().String() + `","body":"x"}`, 415, "application/json"},
		{"send body too large", "POST", "/v1/send", "", `{"to":"` + c.n.ID().String() + `","body":"` + big + `"}`, 413, "over the limit"},
		{"send request too large", "POST", "/v1/send", "", `{"to":"` + c.n.ID().String() + `","body":"` + strings.Repeat("y", 7*testMaxBody+4096) + `"}`, 413, "request body over"},
		{"broadcast with to", "POST", "/v1/broadcast", "", `{"to":"` + c.n.ID().String() + `","body":"x"}`, 400, "unknown field"},
		{"broadcast too large", "POST", "/v1/broadcast", "", `{"body":"` + big + `"}`, 413, "over the limit"},
		{"recv bad events", "GET", "/v1/recv?events=maybe", "", "", 400, "boolean"},
		{"connect no addr", "POST", "/v1/connect", "", `{}`, 400, "addr is required"},
		{"connect bad addr", "POST", "/v1/connect", "", `{"addr":"` + strings.Repeat("a", 256) + `"}`, 400, "at most 255 bytes"},
		{"connect unreachable", "POST", "/v1/connect", "", `{"addr":"nowhere:1"}`, 502, "unreachable"},
		{"connect malformed addr", "POST", "/v1/connect", "", `{"addr":"no where"}`, 400, "no spaces in addresses"},
		{"status wrong method", "POST", "/v1/status", "", "", 405, "not allowed"},
		{"send wrong method", "GET", "/v1/send", "", "", 405, "not allowed"},
		{"unknown path", "GET", "/v1/nope", "", "", 404, "no such endpoint"},
		{"root", "GET", "/", "", "", 404, "no such endpoint"},
		{"unknown version", "GET", "/v2/status", "", "", 404, "no such endpoint"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, a.ts.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.ctype == "none":
			case tc.ctype != "":
				req.Header.Set("Content-Type", tc.ctype)
			case tc.method == "POST":
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := a.cl.HTTP.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.code, b)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if !strings.Contains(string(b), tc.want) {
				t.Errorf("body %s does not contain %q", b, tc.want)
			}
			if tc.code >= 400 {
				var e Error
				if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
					t.Errorf("error body %s is not {\"error\": ...}: %v", b, err)
				}
			}
			if tc.code == 405 && resp.Header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
}

// TestBrowserRequests checks the defences against web pages: DNS
// rebinding (a foreign Host) and cross-origin requests.
func TestBrowserRequests(t *testing.T) {
	f := newFake()
	srv := New(f, Options{AllowedHosts: []string{"mesh.example"}})
	cases := []struct {
		host, origin string
		code         int
	}{
		{"127.0.0.1:7070", "", 200},
		{"[::1]:7070", "", 200},
		{"localhost:7070", "", 200},
		{"LOCALHOST.:7070", "", 200},
		{"node.localhost:7070", "", 200},
		{"10.0.0.5:7070", "", 200},
		{"mesh.example:7070", "", 200},
		{"127.0.0.1:7070", "http://127.0.0.1:7070", 200},
		{"attacker.example:7070", "", 403},
		{"attacker.example:7070", "http://attacker.example:7070", 403},
		{"127.0.0.1:7070", "http://attacker.example", 403},
		{"127.0.0.1:7070", "null", 403},
	}
	for _, tc := range cases {
		req := localReq("GET", "/v1/status", nil)
		req.Host = tc.host
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != tc.code {
			t.Errorf("Host %q Origin %q: %d %s, want %d", tc.host, tc.origin, rec.Code, rec.Body, tc.code)
		}
	}
	any := New(f, Options{AllowedHosts: []string{"*"}})
	req := localReq("GET", "/v1/status", nil)
	req.Host = "whatever.example"
	rec := httptest.NewRecorder()
	any.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf(`AllowedHosts "*": %d`, rec.Code)
	}
}

func TestConnect(t *testing.T) {
	nodes := line(t, 3, Options{})
	a, c := nodes[0], nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := a.cl.Connect(ctx, c.addr)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Connected || len(r.Neighbors) != 2 {
		t.Fatalf("connect: %+v", r)
	}
	_, err = a.cl.Connect(ctx, c.addr)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Fatalf("second connect: %v, want 409", err)
	}
}

func TestStatusAndTopology(t *testing.T) {
	nodes := line(t, 3, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b := nodes[1]
	st, err := b.cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ID != b.n.ID() || st.Epoch != b.n.Epoch() || len(st.Neighbors) != 2 || st.Known != 3 || st.Reachable != 3 {
		t.Errorf("status %+v", st)
	}
	if len(st.Addrs) != 1 || st.Addrs[0] != "n1" || st.Stats.NeighborsUp != 2 {
		t.Errorf("status addrs %v, stats %+v", st.Addrs, st.Stats)
	}
	tp, err := nodes[0].cl.Topology(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tp.Self != nodes[0].n.ID() || len(tp.Nodes) != 3 || tp.Diameter != 2 {
		t.Fatalf("topology %+v", tp)
	}
	for _, ni := range tp.Nodes {
		switch ni.ID {
		case nodes[0].n.ID():
			if ni.Distance != 0 || ni.NextHop != nil {
				t.Errorf("self %+v", ni)
			}
		case nodes[2].n.ID():
			if ni.Distance != 2 || ni.NextHop == nil || *ni.NextHop != b.n.ID() || ni.Addrs[0] != "n2" {
				t.Errorf("far node %+v", ni)
			}
		}
	}
}

// stream collects the events of one /v1/recv stream.
type stream struct {
	ch   chan StreamEvent
	done chan error
}

func openStream(t *testing.T, ctx context.Context, cl *Client, events bool) *stream {
	t.Helper()
	s := &stream{ch: make(chan StreamEvent, 100), done: make(chan error, 1)}
	go func() {
		s.done <- cl.Stream(ctx, events, func(ev StreamEvent) error {
			s.ch <- ev
			return nil
		})
	}()
	if ev := s.next(t, "ready"); ev.Type != "ready" {
		t.Fatalf("first event %s", ev.Type)
	}
	return s
}

// next returns the next event of type typ, skipping others; "" takes any.
func (s *stream) next(t *testing.T, typ string) StreamEvent {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-s.ch:
			if typ == "" || ev.Type == typ {
				return ev
			}
		case err := <-s.done:
			t.Fatalf("stream ended waiting for %q: %v", typ, err)
		case <-deadline:
			t.Fatalf("no %q event within 5s", typ)
		}
	}
}

func TestRecvStream(t *testing.T) {
	nodes := line(t, 3, Options{})
	a, c := nodes[0], nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := openStream(t, ctx, c.cl, true)
	plain := openStream(t, ctx, c.cl, false)

	if _, err := a.cl.Send(ctx, c.n.ID().String(), []byte("over two hops")); err != nil {
		t.Fatal(err)
	}
	bin := []byte{0, 0xff, 0xfe}
	if _, err := a.cl.Send(ctx, c.n.ID().String(), bin); err != nil {
		t.Fatal(err)
	}
	if _, err := a.cl.Broadcast(ctx, []byte("to everyone")); err != nil {
		t.Fatal(err)
	}
	for _, st := range []*stream{s, plain} {
		var got []Message
		for range 3 {
			var m Message
			if err := json.Unmarshal(st.next(t, "message").Data, &m); err != nil {
				t.Fatal(err)
			}
			got = append(got, m)
		}
		if got[0].From != a.n.ID() || got[0].Broadcast || got[0].Body == nil || *got[0].Body != "over two hops" || got[0].Index != 0 {
			t.Errorf("first message %+v", got[0])
		}
		if got[1].BodyBase64 == nil || *got[1].BodyBase64 != base64.StdEncoding.EncodeToString(bin) || got[1].Body != nil || got[1].Index != 1 {
			t.Errorf("binary message %+v", got[1])
		}
		if !got[2].Broadcast || *got[2].Body != "to everyone" {
			t.Errorf("broadcast %+v", got[2])
		}
	}
	// Node events go only to the stream that asked for them: cut b off and
	// c sees its neighbour go down.
	nodes[1].n.Close()
	var ev Event
	if err := json.Unmarshal(s.next(t, "neighbor-down").Data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "neighbor-down" || ev.Peer == nil || *ev.Peer != nodes[1].n.ID() {
		t.Errorf("event %+v", ev)
	}
	select {
	case e := <-plain.ch:
		if e.Type != "message" {
			t.Errorf("stream without events got %q", e.Type)
		}
	default:
	}
	if st := c.srv.Stats(); st.Subscribers != 2 || st.Received != 3 {
		t.Errorf("API stats %+v", st)
	}
	// Shutting the API down ends the streams.
	c.srv.CloseStreams()
	for _, st := range []*stream{s, plain} {
		select {
		case err := <-st.done:
			if !errors.Is(err, io.EOF) {
				t.Errorf("stream ended with %v, want io.EOF", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("stream did not end after CloseStreams")
		}
	}
	if _, err := c.cl.Status(ctx); err != nil {
		t.Fatal(err)
	}
	err := c.cl.Stream(ctx, false, func(StreamEvent) error { return nil })
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Errorf("stream after CloseStreams: %v, want 503", err)
	}
}

func TestDeliveryFailedEvent(t *testing.T) {
	nodes := line(t, 2, Options{})
	a := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := openStream(t, ctx, a.cl, true)
	ghost := uuid.New()
	if _, err := a.cl.Send(ctx, ghost.String(), []byte("lost")); err != nil {
		t.Fatal(err)
	}
	var ev Event
	if err := json.Unmarshal(s.next(t, "delivery-failed").Data, &ev); err != nil {
		t.Fatal(err)
	}
	if *ev.Peer != ghost || ev.Body == nil || *ev.Body != "lost" || ev.Index == nil || ev.Error == "" {
		t.Errorf("delivery-failed %+v", ev)
	}
}

// localReq is httptest.NewRequest with a loopback Host (the default,
// example.com, is refused as a DNS rebinding risk).
func localReq(method, target string, body io.Reader) *http.Request {
	r := httptest.NewRequest(method, target, body)
	r.Host = "127.0.0.1:7070"
	return r
}

// fakeNode is a Node whose behaviour the test sets.
type fakeNode struct {
	id      uuid.UUID
	others  []routing.NodeInfo // in its Topology besides itself
	in      chan node.Delivery
	events  chan node.Event
	sendErr error
}

func newFake() *fakeNode {
	return &fakeNode{id: uuid.New(), in: make(chan node.Delivery), events: make(chan node.Event)}
}

func (f *fakeNode) ID() uuid.UUID          { return f.id }
func (f *fakeNode) Name() string           { return "" }
func (f *fakeNode) Epoch() uint64          { return 1 }
func (f *fakeNode) Addrs() []string        { return nil }
func (f *fakeNode) Neighbors() []uuid.UUID { return nil }
func (f *fakeNode) Stats() node.Stats      { return node.Stats{} }
func (f *fakeNode) Topology() routing.Topology {
	return routing.Topology{Self: f.id, Nodes: append([]routing.NodeInfo{{ID: f.id}}, f.others...)}
}
func (f *fakeNode) Connect(ctx context.Context, addr string) error        { return f.sendErr }
func (f *fakeNode) Send(ctx context.Context, _ uuid.UUID, _ []byte) error { return f.wait(ctx) }
func (f *fakeNode) Broadcast(ctx context.Context, _ []byte) error         { return f.wait(ctx) }
func (f *fakeNode) Events() <-chan node.Event                             { return f.events }
func (f *fakeNode) Receive(ctx context.Context) (node.Delivery, error) {
	select {
	case d := <-f.in:
		return d, nil
	case <-ctx.Done():
		return node.Delivery{}, ctx.Err()
	}
}

// wait returns sendErr, or blocks until ctx ends if it is nil.
func (f *fakeNode) wait(ctx context.Context) error {
	if f.sendErr != nil {
		return f.sendErr
	}
	<-ctx.Done()
	return ctx.Err()
}

func TestSendErrors(t *testing.T) {
	cases := []struct {
		err  error
		code int
	}{
		{nil, http.StatusServiceUnavailable}, // blocks past SendTimeout: window full
		{node.ErrClosed, http.StatusServiceUnavailable},
		{fmt.Errorf("wrapped: %w", node.ErrTooLarge), http.StatusRequestEntityTooLarge},
		{node.ErrSelf, http.StatusBadRequest},
		{errors.New("something else"), http.StatusInternalServerError},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.err), func(t *testing.T) {
			f := newFake()
			f.sendErr = tc.err
			srv := New(f, Options{SendTimeout: 20 * time.Millisecond})
			for _, path := range []string{"/v1/send", "/v1/broadcast"} {
				body := `{"body":"x"}`
				if path == "/v1/send" {
					body = `{"to":"` + uuid.NewString() + `","body":"x"}`
				}
				rec := httptest.NewRecorder()
				req := localReq("POST", path, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				srv.ServeHTTP(rec, req)
				if rec.Code != tc.code {
					t.Errorf("%s: %d %s, want %d", path, rec.Code, rec.Body, tc.code)
				}
				if tc.err == nil && rec.Header().Get("Retry-After") == "" {
					t.Errorf("%s: 503 for a full window without Retry-After", path)
				}
			}
		})
	}
}

// gateWriter is a ResponseWriter whose writes block until the gate opens.
type gateWriter struct {
	h       http.Header
	entered chan struct{} // receives once per Write before it blocks
	gate    chan struct{}
	mu      sync.Mutex
	buf     strings.Builder
}

func (g *gateWriter) Header() http.Header { return g.h }
func (g *gateWriter) WriteHeader(int)     {}
func (g *gateWriter) Flush()              {}
func (g *gateWriter) Write(b []byte) (int, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.Write(b)
}

// TestSlowStream checks that a stream that does not keep up loses messages
// (counted and announced with a "dropped" event) without blocking the pump.
func TestSlowStream(t *testing.T) {
	f := newFake()
	srv := New(f, Options{StreamBuffer: 2})
	ctx, cancel := context.WithCancel(context.Background())
	pumpDone := make(chan struct{})
	go func() { srv.Run(ctx); close(pumpDone) }()

	g := &gateWriter{h: http.Header{}, entered: make(chan struct{}, 1), gate: make(chan struct{})}
	reqCtx, endReq := context.WithCancel(context.Background())
	handlerDone := make(chan struct{})
	go func() {
		srv.ServeHTTP(g, localReq("GET", "/v1/recv", nil).WithContext(reqCtx))
		close(handlerDone)
	}()
	<-g.entered // the handler is stuck writing "ready"
	for i := range 10 {
		select {
		case f.in <- node.Delivery{From: f.id, Body: []byte(fmt.Sprint(i)), Index: uint32(i)}:
		case <-time.After(5 * time.Second):
			t.Fatal("the pump blocked on a slow stream")
		}
	}
	meshtest.WaitFor(t, 5*time.Second, "10 messages received", func() bool { return srv.Stats().Received == 10 })
	if st := srv.Stats(); st.StreamDropped != 8 || st.Subscribers != 1 {
		t.Fatalf("stats %+v, want 8 dropped", st)
	}
	close(g.gate)
	meshtest.WaitFor(t, 5*time.Second, "the stream to catch up", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return strings.Count(g.buf.String(), "event: message") == 2
	})
	endReq()
	<-handlerDone
	cancel()
	<-pumpDone

	var types []string
	sc := bufio.NewScanner(strings.NewReader(g.buf.String()))
	for sc.Scan() {
		if typ, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			types = append(types, typ)
		}
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok && len(types) == 2 && d != `{"count":8}` {
			t.Errorf("dropped data %s", d)
		}
	}
	if got := strings.Join(types, ","); got != "ready,dropped,message,message" {
		t.Errorf("events %s", got)
	}
	if g.h.Get("Content-Type") != "text/event-stream" {
		t.Errorf("Content-Type %q", g.h.Get("Content-Type"))
	}
}

func TestStreamLimit(t *testing.T) {
	f := newFake()
	srv := New(f, Options{MaxStreams: 1})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	cl := &Client{BaseURL: ts.URL, HTTP: hc}
	ctx, cancel := context.WithCancel(context.Background())
	s := openStream(t, ctx, cl, false)
	err := cl.Stream(ctx, false, func(StreamEvent) error { return nil })
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Errorf("second stream: %v, want 503", err)
	}
	cancel()
	<-s.done
}
