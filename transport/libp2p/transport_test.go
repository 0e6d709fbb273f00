package libp2p_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"

	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/libp2p"
	"github.com/distrirender/distrirender/transport/transporttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	quicOnly = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	tcpOnly  = []string{"/ip4/127.0.0.1/tcp/0"}
)

// newTransport returns a transport on loopback that is closed when the test
// ends.
func newTransport(t testing.TB, cfg libp2p.Config) *libp2p.Transport {
	t.Helper()
	tr, err := libp2p.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// nobody returns a well-formed address with a fresh peer ID at which nothing
// listens.
func nobody(t testing.TB, transportPart string) string {
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return transportPart + "/p2p/" + id.String()
}

func TestConformance(t *testing.T) {
	for _, c := range []struct {
		name   string
		listen []string
	}{{"QUIC", quicOnly}, {"TCP", tcpOnly}} {
		t.Run(c.name, func(t *testing.T) {
			transporttest.Run(t, transporttest.Factory{
				New: func(t *testing.T) transport.Transport {
					return newTransport(t, libp2p.Config{ListenAddrs: c.listen})
				},
				// Port 1 on loopback refuses at once; the peer ID is nobody's.
				Unreachable: nobody(t, "/ip4/127.0.0.1/tcp/1"),
			})
		})
	}
}

func TestAddrs(t *testing.T) {
	tr := newTransport(t, libp2p.Config{})
	addrs := tr.Addrs()
	if len(addrs) != 2 {
		t.Fatalf("Addrs() = %q, want one QUIC and one TCP address", addrs)
	}
	suffix := "/p2p/" + tr.Host().ID().String()
	var quic, tcp bool
	for _, a := range addrs {
		if !strings.HasPrefix(a, "/ip4/127.0.0.1/") || !strings.HasSuffix(a, suffix) {
			t.Errorf("address %q: want loopback, ending in %s", a, suffix)
		}
		quic = quic || strings.Contains(a, "/quic-v1/")
		tcp = tcp || strings.Contains(a, "/tcp/")
		if _, err := libp2p.ParseAddr(a); err != nil {
			t.Errorf("ParseAddr(%q): %v", a, err)
		}
	}
	if !quic || !tcp {
		t.Errorf("Addrs() = %q, want QUIC and TCP", addrs)
	}
}

// TestDialEveryAddr dials each listen address of a transport on its own and
// checks that the edge goes over that address.
func TestDialEveryAddr(t *testing.T) {
	a := newTransport(t, libp2p.Config{})
	for _, addr := range a.Addrs() {
		b := newTransport(t, libp2p.Config{}) // fresh, so no connection is reused
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e, err := b.Dial(ctx, addr)
		if err != nil {
			t.Fatalf("Dial(%q): %v", addr, err)
		}
		in, err := a.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if e.RemoteAddr() != addr {
			t.Errorf("dialled %q, edge RemoteAddr %q", addr, e.RemoteAddr())
		}
		if !strings.HasSuffix(in.RemoteAddr(), "/p2p/"+b.Host().ID().String()) {
			t.Errorf("accepted edge RemoteAddr %q does not name the dialler %s", in.RemoteAddr(), b.Host().ID())
		}
		if err := e.Send(ctx, []byte(addr)); err != nil {
			t.Fatal(err)
		}
		if f, err := in.Receive(ctx); err != nil || string(f) != addr {
			t.Fatalf("Receive = %q, %v", f, err)
		}
		_ = e.Close()
		_ = in.Close()
	}
}

// TestDialWrongKind checks that an address of another kind, or a multiaddr
// without a peer ID, fails at once with ErrUnreachable and ErrBadAddress.
func TestDialWrongKind(t *testing.T) {
	tr := newTransport(t, libp2p.Config{})
	for _, addr := range []string{
		"127.0.0.1:4242",
		"",
		"n1",
		"/ip4/127.0.0.1/tcp/4242",
		"/ip4/127.0.0.1/tcp/4242/p2p/notapeerid",
		"/dns4/example.com/tcp/",
	} {
		start := time.Now()
		e, err := tr.Dial(context.Background(), addr)
		if e != nil {
			_ = e.Close()
		}
		if !errors.Is(err, transport.ErrUnreachable) || !errors.Is(err, libp2p.ErrBadAddress) {
			t.Errorf("Dial(%q): err = %v, want ErrUnreachable and ErrBadAddress", addr, err)
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("Dial(%q) took %v to fail", addr, d)
		}
	}
	if _, err := tr.Dial(context.Background(), tr.Addrs()[0]); !errors.Is(err, transport.ErrUnreachable) {
		t.Errorf("Dial to itself: err = %v, want ErrUnreachable", err)
	}
}

// TestDialNotMesh dials a libp2p host that does not run the mesh protocol.
func TestDialNotMesh(t *testing.T) {
	a := newTransport(t, libp2p.Config{})
	b := newTransport(t, libp2p.Config{})
	addr := b.Addrs()[0]
	b.Host().RemoveStreamHandler(libp2p.ProtocolID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := a.Dial(ctx, addr)
	if err == nil {
		_ = e.Close()
		t.Fatal("Dial to a host without the mesh protocol succeeded")
	}
	if !errors.Is(err, transport.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
}

// TestFrameTooLargeFromPeer checks that a receiver with a smaller MaxFrame
// refuses a longer frame from its peer by its prefix.
func TestFrameTooLargeFromPeer(t *testing.T) {
	big := newTransport(t, libp2p.Config{ListenAddrs: tcpOnly})
	small := newTransport(t, libp2p.Config{ListenAddrs: tcpOnly, MaxFrame: 100})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := big.Dial(ctx, small.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	in, err := small.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := e.Send(ctx, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if err := e.Send(ctx, make([]byte, 101)); err != nil {
		t.Fatal(err)
	}
	if f, err := in.Receive(ctx); err != nil || len(f) != 100 {
		t.Fatalf("Receive = %d bytes, %v; want 100", len(f), err)
	}
	if _, err := in.Receive(ctx); !errors.Is(err, transport.ErrFrameTooLarge) {
		t.Fatalf("Receive of a 101-byte frame with limit 100: err = %v, want ErrFrameTooLarge", err)
	}
}

// TestLastFramesBeforeTransportClose sends frames and closes the edge and
// the whole transport at once, as a leaving node does: the peer must receive
// every frame before it sees the close.
func TestLastFramesBeforeTransportClose(t *testing.T) {
	for _, listen := range [][]string{quicOnly, tcpOnly} {
		t.Run(listen[0], func(t *testing.T) {
			for range 10 {
				a, err := libp2p.New(libp2p.Config{ListenAddrs: listen})
				if err != nil {
					t.Fatal(err)
				}
				b := newTransport(t, libp2p.Config{ListenAddrs: listen})
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				e, err := a.Dial(ctx, b.Addrs()[0])
				if err != nil {
					t.Fatal(err)
				}
				in, err := b.Accept(ctx)
				if err != nil {
					t.Fatal(err)
				}
				const frames = 50
				for i := range frames {
					if err := e.Send(ctx, make([]byte, 1000+i)); err != nil {
						t.Fatal(err)
					}
				}
				_ = e.Close()
				// The peer closes its side as soon as it has read the end,
				// like a node does; a's Close waits for that.
				got := make(chan error, 1)
				go func() {
					defer in.Close()
					for i := range frames {
						f, err := in.Receive(ctx)
						if err != nil {
							got <- err
							return
						}
						if len(f) != 1000+i {
							got <- errors.New("wrong frame")
							return
						}
					}
					_, err := in.Receive(ctx)
					if !errors.Is(err, transport.ErrClosed) {
						got <- err
						return
					}
					got <- nil
				}()
				if err := a.Close(); err != nil {
					t.Fatal(err)
				}
				if err := <-got; err != nil {
					t.Fatalf("peer: %v", err)
				}
			}
		})
	}
}

// TestOwnHost runs the transport on a host the application made: Close
// leaves the host running, with its connections, and frees our streams.
func TestOwnHost(t *testing.T) {
	hostTr := newTransport(t, libp2p.Config{}) // just for its host
	h := hostTr.Host()
	h.RemoveStreamHandler(libp2p.ProtocolID)

	a, err := libp2p.New(libp2p.Config{Host: h})
	if err != nil {
		t.Fatal(err)
	}
	if a.Host() != h {
		t.Fatal("Host() is not the host given")
	}
	b := newTransport(t, libp2p.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ab, err := a.Dial(ctx, b.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	ba, err := b.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ab.Send(ctx, []byte("last")); err != nil {
		t.Fatal(err)
	}
	if !h.ConnManager().IsProtected(b.Host().ID(), "") {
		t.Error("the connection of an edge is not protected from the connection manager")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if h.ConnManager().IsProtected(b.Host().ID(), "") {
		t.Error("the connection is still protected after the transport closed")
	}
	if f, err := ba.Receive(ctx); err != nil || string(f) != "last" {
		t.Fatalf("Receive = %q, %v; want the frame sent before Close", f, err)
	}
	if _, err := ba.Receive(ctx); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Receive after the peer's Close: %v, want ErrClosed", err)
	}
	if len(h.Network().Peers()) == 0 {
		t.Error("closing the transport closed the application's connections")
	}
	for _, c := range h.Network().Conns() {
		for _, s := range c.GetStreams() {
			if s.Protocol() == libp2p.ProtocolID {
				t.Errorf("stream %s of %s still open after Close", s.ID(), libp2p.ProtocolID)
			}
		}
	}
	// The host still works: a new transport on it dials again.
	a2, err := libp2p.New(libp2p.Config{Host: h})
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	e, err := a2.Dial(ctx, b.Addrs()[0])
	if err != nil {
		t.Fatalf("Dial on the host after the first transport closed: %v", err)
	}
	_ = e.Close()
}

// TestSendCancelled checks that a Send blocked by flow control returns when
// its context ends, and that Close interrupts a blocked Send.
func TestSendCancelled(t *testing.T) {
	for _, listen := range [][]string{quicOnly, tcpOnly} {
		t.Run(listen[0], func(t *testing.T) {
			a := newTransport(t, libp2p.Config{ListenAddrs: listen})
			b := newTransport(t, libp2p.Config{ListenAddrs: listen})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			e, err := a.Dial(ctx, b.Addrs()[0])
			if err != nil {
				t.Fatal(err)
			}
			in, err := b.Accept(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			// Nobody reads in: fill the windows until a Send blocks.
			frame := make([]byte, 64<<10)
			sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer scancel()
			var sent int
			for {
				err := e.Send(sctx, frame)
				if err != nil {
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("blocked Send: err = %v, want DeadlineExceeded", err)
					}
					break
				}
				sent++
				if sent > 10_000 {
					t.Fatal("Send never blocked")
				}
			}
			t.Logf("%d frames of 64 KiB fitted before Send blocked", sent)
			// Close while a Send is blocked.
			errc := make(chan error, 1)
			go func() { errc <- e.Send(ctx, frame) }()
			_ = e.Close()
			select {
			case err := <-errc:
				if !errors.Is(err, transport.ErrClosed) {
					t.Fatalf("Send interrupted by Close: err = %v, want ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not interrupt a blocked Send")
			}
		})
	}
}

// TestBestAddr checks which of a peer's addresses mDNS reports.
func TestBestAddr(t *testing.T) {
	cast := func(ss ...string) []ma.Multiaddr {
		var out []ma.Multiaddr
		for _, s := range ss {
			out = append(out, ma.StringCast(s))
		}
		return out
	}
	for _, c := range []struct {
		addrs []string
		want  string
	}{
		{[]string{"/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/udp/1/quic-v1"}, "/ip4/127.0.0.1/udp/1/quic-v1"},
		{[]string{"/ip4/127.0.0.1/udp/1/quic-v1", "/ip4/10.0.0.2/tcp/2"}, "/ip4/10.0.0.2/tcp/2"},
		{[]string{"/ip4/127.0.0.1/udp/1/quic-v1", "/ip4/10.0.0.2/tcp/2", "/ip4/10.0.0.2/udp/2/quic-v1"}, "/ip4/10.0.0.2/udp/2/quic-v1"},
		{[]string{"/ip4/10.0.0.2/udp/2/webrtc-direct", "/ip6/::1/udp/1/quic-v1"}, "/ip6/::1/udp/1/quic-v1"},
		{[]string{"/ip4/10.0.0.2/udp/2/webrtc-direct"}, "/ip4/10.0.0.2/udp/2/webrtc-direct"},
	} {
		if got := libp2p.BestAddr(cast(c.addrs...)); got.String() != c.want {
			t.Errorf("BestAddr(%q) = %s, want %s", c.addrs, got, c.want)
		}
	}
	if got := libp2p.BestAddr(nil); got != nil {
		t.Errorf("BestAddr(nil) = %s", got)
	}
}
