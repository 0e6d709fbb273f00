package webrtc_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/transporttest"
	"github.com/distrirender/distrirender/transport/webrtc"
	pion "github.com/pion/webrtc/v4"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// signalServer starts an embedded PeerServer on loopback, closed when the
// test ends, and returns its URL.
func signalServer(t testing.TB, cfg webrtc.SignalConfig) string {
	t.Helper()
	s, err := webrtc.NewSignalServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		_ = s.Close()
		ts.Close()
	})
	return ts.URL + "/"
}

// loopback4 keeps ICE to 127.0.0.0/8.
func loopback4(cfg webrtc.Config) webrtc.Config {
	cfg.IPFilter = func(ip net.IP) bool { return ip.IsLoopback() && ip.To4() != nil }
	cfg.NetworkTypes = []pion.NetworkType{pion.NetworkTypeUDP4}
	return cfg
}

func newTransport(t testing.TB, cfg webrtc.Config) *webrtc.Transport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cfg.Logger == nil && os.Getenv("WEBRTC_DEBUG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	tr, err := webrtc.New(ctx, loopback4(cfg))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func TestConformance(t *testing.T) {
	url := signalServer(t, webrtc.SignalConfig{ExpireTimeout: time.Second})
	transporttest.Run(t, transporttest.Factory{
		New: func(t *testing.T) transport.Transport {
			return newTransport(t, webrtc.Config{Server: url})
		},
		Unreachable: "nobody-here",
	})
}

// TestConformanceRaw runs the suite on "raw" edges: one message per frame,
// up to 64 KiB, the message size the transport accepts.
func TestConformanceRaw(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	url := signalServer(t, webrtc.SignalConfig{})
	transporttest.Run(t, transporttest.Factory{
		New: func(t *testing.T) transport.Transport {
			return newTransport(t, webrtc.Config{Server: url, Serialization: webrtc.SerializationRaw, MaxFrame: webrtc.MaxMessage})
		},
	})
}

// pair returns a's edge to b and b's edge from a.
func pair(t testing.TB, a, b *webrtc.Transport) (ab, ba *webrtc.Edge) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan transport.Edge, 1)
	go func() {
		e, err := b.Accept(ctx)
		if err != nil {
			t.Errorf("Accept: %v", err)
		}
		accepted <- e
	}()
	e, err := a.Dial(ctx, b.Addrs()[0])
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	f := <-accepted
	if f == nil {
		t.FailNow()
	}
	t.Cleanup(func() { _ = f.Close() })
	return e.(*webrtc.Edge), f.(*webrtc.Edge)
}

func roundTrip(t testing.TB, from, to transport.Edge, frame []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := from.Send(ctx, frame); err != nil {
		t.Fatalf("Send(%d bytes): %v", len(frame), err)
	}
	got, err := to.Receive(ctx)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if !bytes.Equal(got, frame) {
		t.Fatalf("received %d bytes, want the %d sent", len(got), len(frame))
	}
}

// TestRawLimit checks that a "raw" edge takes frames up to the message size
// the peer accepts, even with a larger MaxFrame.
func TestRawLimit(t *testing.T) {
	url := signalServer(t, webrtc.SignalConfig{})
	a := newTransport(t, webrtc.Config{Server: url, Serialization: webrtc.SerializationRaw})
	b := newTransport(t, webrtc.Config{Server: url})
	ab, ba := pair(t, a, b)
	for _, e := range []*webrtc.Edge{ab, ba} {
		if e.Serialization() != webrtc.SerializationRaw || e.MaxFrame() != webrtc.MaxMessage {
			t.Errorf("edge %v: serialization %q, MaxFrame %d; want raw, %d", e, e.Serialization(), e.MaxFrame(), webrtc.MaxMessage)
		}
		if e.ConnectionID() != ab.ConnectionID() || !strings.HasPrefix(e.ConnectionID(), "dc_") {
			t.Errorf("connection IDs %q and %q", ab.ConnectionID(), e.ConnectionID())
		}
	}
	if ab.LocalAddr() != a.ID() || ab.RemoteAddr() != b.ID() || ba.LocalAddr() != b.ID() || ba.RemoteAddr() != a.ID() {
		t.Errorf("addresses %s-%s and %s-%s", ab.LocalAddr(), ab.RemoteAddr(), ba.LocalAddr(), ba.RemoteAddr())
	}
	roundTrip(t, ab, ba, make([]byte, webrtc.MaxMessage))
	roundTrip(t, ba, ab, []byte{})
	err := ab.Send(context.Background(), make([]byte, webrtc.MaxMessage+1))
	if !errors.Is(err, transport.ErrFrameTooLarge) {
		t.Fatalf("Send over the message size: %v, want ErrFrameTooLarge", err)
	}
	roundTrip(t, ab, ba, []byte("still fine"))
}

func TestDialBadAddress(t *testing.T) {
	url := signalServer(t, webrtc.SignalConfig{})
	a := newTransport(t, webrtc.Config{Server: url, ID: "a"})
	// Each fails at once: a second is plenty.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, addr := range []string{"", "127.0.0.1:4242", "/ip4/127.0.0.1/udp/1/quic-v1", "a  b", "x_", "é", strings.Repeat("x", 129)} {
		_, err := a.Dial(ctx, addr)
		if !errors.Is(err, transport.ErrUnreachable) || !errors.Is(err, webrtc.ErrBadAddress) {
			t.Errorf("Dial(%q) = %v, want ErrUnreachable and ErrBadAddress", addr, err)
		}
	}
	if _, err := a.Dial(ctx, "a"); !errors.Is(err, transport.ErrUnreachable) {
		t.Errorf("Dial to itself = %v, want ErrUnreachable", err)
	}
}

func TestNewErrors(t *testing.T) {
	url := signalServer(t, webrtc.SignalConfig{})
	newTransport(t, webrtc.Config{Server: url, ID: "taken"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dead := deadServer(t)
	for _, c := range []struct {
		name string
		cfg  webrtc.Config
		want error
	}{
		{"ID taken", webrtc.Config{Server: url, ID: "taken"}, webrtc.ErrIDTaken},
		{"bad ID", webrtc.Config{Server: url, ID: "no/slash"}, webrtc.ErrBadAddress},
		{"wrong key", webrtc.Config{Server: url, ID: "k", Key: "wrong"}, nil},
		{"wrong key, no ID", webrtc.Config{Server: url, Key: "wrong"}, nil},
		{"no server", webrtc.Config{}, nil},
		{"bad scheme", webrtc.Config{Server: "ftp://127.0.0.1/"}, nil},
		{"nobody there", webrtc.Config{Server: dead, ID: "x"}, nil},
		{"bad serialization", webrtc.Config{Server: url, Serialization: "json"}, nil},
		{"bad MaxFrame", webrtc.Config{Server: url, MaxFrame: -1}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr, err := webrtc.New(ctx, c.cfg)
			if err == nil {
				_ = tr.Close()
				t.Fatal("New succeeded")
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

// deadServer returns the URL of a loopback port nothing listens on.
func deadServer(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "http://" + addr + "/"
}

// TestIDFromServer leaves Config.ID empty: the server hands one out.
func TestIDFromServer(t *testing.T) {
	url := signalServer(t, webrtc.SignalConfig{})
	a := newTransport(t, webrtc.Config{Server: url})
	b := newTransport(t, webrtc.Config{Server: url})
	if !webrtc.ValidID(a.ID()) || a.ID() == b.ID() || a.Addrs()[0] != a.ID() {
		t.Fatalf("IDs %q and %q", a.ID(), b.ID())
	}
	ab, ba := pair(t, a, b)
	roundTrip(t, ab, ba, []byte("hello"))
}

// TestSignalReconnect drops a transport's signalling connection: it
// reconnects under the same ID, and can be dialled again; its edges live
// on meanwhile.
func TestSignalReconnect(t *testing.T) {
	s, err := webrtc.NewSignalServer(webrtc.SignalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		_ = s.Close()
		ts.Close()
	})
	a := newTransport(t, webrtc.Config{Server: ts.URL, ID: "a"})
	b := newTransport(t, webrtc.Config{Server: ts.URL, ID: "b"})
	ab, ba := pair(t, a, b)
	if !s.Drop("a") {
		t.Fatal("a is not connected")
	}
	roundTrip(t, ab, ba, []byte("the edge does not need the server"))
	// An OFFER to a while it is away is held for it.
	ba2, ab2 := pair(t, b, a)
	roundTrip(t, ab2, ba2, []byte("after the reconnection"))
}

// TestJunkSignalling sends a transport every kind of bad signalling message:
// it ignores them, accepts no edge, and keeps working.
func TestJunkSignalling(t *testing.T) {
	url := signalServer(t, webrtc.SignalConfig{})
	victim := newTransport(t, webrtc.Config{Server: url, ID: "victim"})
	evil := register(t, url, "evil")
	sdp := func(typ, s string) map[string]any { return map[string]any{"type": typ, "sdp": s} }
	for _, m := range []any{
		map[string]any{"type": "OFFER", "dst": "victim", "payload": "not an object"},
		map[string]any{"type": "OFFER", "dst": "victim", "payload": map[string]any{"connectionId": 7}},
		msg{Type: "OFFER", Dst: "victim", Payload: map[string]any{"type": "data", "connectionId": "c1"}},
		msg{Type: "OFFER", Dst: "victim", Payload: map[string]any{"type": "data", "connectionId": "c2", "sdp": sdp("offer", "garbage")}},
		msg{Type: "OFFER", Dst: "victim", Payload: map[string]any{"type": "media", "connectionId": "c3", "sdp": sdp("offer", "v=0")}},
		msg{Type: "OFFER", Dst: "victim", Payload: map[string]any{"type": "data", "connectionId": "c4", "serialization": "json", "sdp": sdp("offer", "v=0")}},
		msg{Type: "OFFER", Dst: "victim", Payload: map[string]any{"type": "data", "connectionId": strings.Repeat("c", 500), "sdp": sdp("offer", "v=0")}},
		msg{Type: "OFFER", Dst: "victim", Payload: map[string]any{"type": "data", "connectionId": "c5", "sdp": sdp("answer", "v=0")}},
		msg{Type: "ANSWER", Dst: "victim", Payload: map[string]any{"connectionId": "unknown", "sdp": sdp("answer", "v=0")}},
		msg{Type: "CANDIDATE", Dst: "victim", Payload: map[string]any{"connectionId": "c2", "candidate": map[string]any{"candidate": "candidate:garbage"}}},
		msg{Type: "CANDIDATE", Dst: "victim", Payload: map[string]any{"connectionId": "c2", "candidate": "nope"}},
		msg{Type: "LEAVE", Dst: "victim"},
		msg{Type: "EXPIRE", Dst: "victim"},
		map[string]any{"type": 42, "dst": "victim"},
	} {
		evil.send(m)
	}
	// The messages are read in order: once an edge from friend arrives,
	// every one of them has been handled.
	friend := newTransport(t, webrtc.Config{Server: url})
	fv, vf := pair(t, friend, victim)
	roundTrip(t, fv, vf, []byte("hello"))
	if vf.RemoteAddr() != friend.ID() {
		t.Fatalf("accepted an edge from %s", vf.RemoteAddr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if e, err := victim.Accept(ctx); err == nil {
		_ = e.Close()
		t.Fatalf("accepted an edge from %s", e.RemoteAddr())
	}
}

// TestCloseWhileDialing closes a transport while its Dial waits for an
// answer that does not come.
func TestCloseWhileDialing(t *testing.T) {
	url := signalServer(t, webrtc.SignalConfig{})
	a := newTransport(t, webrtc.Config{Server: url, ID: "a"})
	silent := register(t, url, "silent")
	errc := make(chan error, 1)
	go func() {
		_, err := a.Dial(context.Background(), "silent")
		errc <- err
	}()
	if m := silent.read(); m.Type != "OFFER" || m.Src != "a" {
		t.Fatalf("silent got %+v, want an OFFER", m)
	}
	_ = a.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, transport.ErrClosed) {
			t.Fatalf("Dial = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Dial did not return after Close")
	}
}

// TestDialExpire dials a peer the server does not know: EXPIRE fails the
// dial with ErrUnreachable, without waiting for the context.
func TestDialExpire(t *testing.T) {
	url := signalServer(t, webrtc.SignalConfig{ExpireTimeout: 100 * time.Millisecond})
	a := newTransport(t, webrtc.Config{Server: url})
	start := time.Now()
	_, err := a.Dial(context.Background(), "nobody")
	if !errors.Is(err, transport.ErrUnreachable) {
		t.Fatalf("Dial = %v, want ErrUnreachable", err)
	}
	t.Logf("EXPIRE after %v", time.Since(start))
}

func TestValidID(t *testing.T) {
	valid := []string{"a", "node7", "a-b_c d", "3f1c9a1e-5d0b-4c1a-9b7e-0c2f4d6a8e10", strings.Repeat("x", 128)}
	invalid := []string{"", "-a", "a-", "a--b", "a _b", " a", "a/b", "é", "a.b", "a:1", strings.Repeat("x", 129)}
	for _, id := range valid {
		if !webrtc.ValidID(id) {
			t.Errorf("ValidID(%q) = false, want true", id)
		}
	}
	for _, id := range invalid {
		if webrtc.ValidID(id) {
			t.Errorf("ValidID(%q) = true, want false", id)
		}
	}
}

// TestReceiveTooLarge has a peer send a frame over the receiver's MaxFrame:
// the receiver ends the edge with ErrFrameTooLarge, and the sender sees it
// closed.
func TestReceiveTooLarge(t *testing.T) {
	url := signalServer(t, webrtc.SignalConfig{})
	small := newTransport(t, webrtc.Config{Server: url, MaxFrame: 1000})
	for _, ser := range []string{webrtc.SerializationBinary, webrtc.SerializationRaw} {
		t.Run(ser, func(t *testing.T) {
			big := newTransport(t, webrtc.Config{Server: url, Serialization: ser})
			bs, sb := pair(t, big, small)
			roundTrip(t, bs, sb, make([]byte, 1000))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := bs.Send(ctx, make([]byte, 5000)); err != nil {
				t.Fatal(err)
			}
			_, err := sb.Receive(ctx)
			if !errors.Is(err, transport.ErrFrameTooLarge) || !errors.Is(err, transport.ErrClosed) {
				t.Fatalf("Receive of a frame over the limit: %v, want ErrFrameTooLarge and ErrClosed", err)
			}
			if err := sb.Send(ctx, []byte("x")); !errors.Is(err, transport.ErrClosed) || errors.Is(err, transport.ErrFrameTooLarge) {
				t.Errorf("Send after: %v, want ErrClosed only", err)
			}
			if _, err := bs.Receive(ctx); !errors.Is(err, transport.ErrClosed) {
				t.Errorf("the sender's Receive: %v, want ErrClosed", err)
			}
		})
	}
}
