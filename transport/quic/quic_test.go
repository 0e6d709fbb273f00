package quic_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/quic"
	"github.com/distrirender/distrirender/transport/transporttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// listen opens a transport on an IPv4 loopback port, closed when the test
// ends.
func listen(t testing.TB, cfg quic.Config) *quic.Transport {
	t.Helper()
	return listenAt(t, "127.0.0.1:0", cfg)
}

func listenAt(t testing.TB, addr string, cfg quic.Config) *quic.Transport {
	t.Helper()
	tr, err := quic.Listen(addr, cfg)
	if err != nil {
		t.Fatalf("Listen(%q): %v", addr, err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// deadPort returns a loopback UDP address at which nothing listens: a port
// that was just bound and closed.
func deadPort(t testing.TB, network, addr string) string {
	t.Helper()
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	a := c.LocalAddr().String()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestConformance(t *testing.T) {
	transporttest.Run(t, transporttest.Factory{
		New: func(t *testing.T) transport.Transport {
			return listen(t, quic.Config{})
		},
		Unreachable: deadPort(t, "udp4", "127.0.0.1:0"),
	})
}

// TestConformanceSmallFrames runs the suite with a 4 KiB frame limit (the
// smallest the suite's frame sizes allow), so that every frame is copied
// into one write with its length, and frames at the limit are common.
func TestConformanceSmallFrames(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	transporttest.Run(t, transporttest.Factory{
		New: func(t *testing.T) transport.Transport {
			return listen(t, quic.Config{MaxFrame: 4096})
		},
		// Unreachable left out: TestConformance covers dialling a dead port.
	})
}

// dial connects a to b and returns both sides.
func dial(t testing.TB, a, b *quic.Transport) (ab, ba transport.Edge) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ab, err := a.Dial(ctx, b.Addrs()[0])
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = ab.Close() })
	ba, err = b.Accept(ctx)
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	t.Cleanup(func() { _ = ba.Close() })
	return ab, ba
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestIPv6Loopback(t *testing.T) {
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	_ = c.Close()
	a := listenAt(t, "[::1]:0", quic.Config{})
	b := listenAt(t, "[::1]:0", quic.Config{})
	if got := b.Addrs(); len(got) != 1 || got[0][:5] != "[::1]" {
		t.Fatalf("Addrs() = %q, want one [::1]:port", got)
	}
	ab, ba := dial(t, a, b)
	ctx := ctxT(t)
	if err := ab.Send(ctx, []byte("over v6")); err != nil {
		t.Fatal(err)
	}
	if f, err := ba.Receive(ctx); err != nil || string(f) != "over v6" {
		t.Fatalf("Receive = %q, %v", f, err)
	}
	// An IPv4 address cannot be reached from an IPv6-only socket.
	if _, err := a.Dial(ctx, "127.0.0.1:1"); !errors.Is(err, transport.ErrUnreachable) {
		t.Fatalf("Dial to IPv4 from an IPv6 socket: err = %v, want ErrUnreachable", err)
	}
}

// TestCloseDeliversEverything sends a burst of frames, more than the flow
// control windows hold, and closes right after the last Send: the peer reads
// them all, then sees the close.
func TestCloseDeliversEverything(t *testing.T) {
	for _, how := range []string{"Edge.Close", "Transport.Close"} {
		t.Run(how, func(t *testing.T) {
			a, b := listen(t, quic.Config{}), listen(t, quic.Config{})
			ab, ba := dial(t, a, b)
			ctx := ctxT(t)
			const frames = 200
			errc := make(chan error, 1)
			go func() {
				frame := make([]byte, 16<<10) // 3.2 MB in all
				for i := range frames {
					frame[0] = byte(i)
					if err := ab.Send(ctx, frame); err != nil {
						errc <- fmt.Errorf("Send %d: %w", i, err)
						return
					}
				}
				if how == "Edge.Close" {
					errc <- ab.Close()
				} else {
					errc <- a.Close()
				}
			}()
			for i := range frames {
				f, err := ba.Receive(ctx)
				if err != nil {
					t.Fatalf("Receive %d: %v", i, err)
				}
				if len(f) != 16<<10 || f[0] != byte(i) {
					t.Fatalf("frame %d: %d bytes starting %d", i, len(f), f[0])
				}
			}
			if _, err := ba.Receive(ctx); !errors.Is(err, transport.ErrClosed) {
				t.Fatalf("Receive after the last frame: %v, want ErrClosed", err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if err := ba.Send(ctx, []byte("x")); !errors.Is(err, transport.ErrClosed) {
				t.Fatalf("Send after the peer closed: %v, want ErrClosed", err)
			}
		})
	}
}

// TestCloseUnblocksSend closes an edge while its Send waits for flow control
// (the peer reads nothing, so the 512 KiB initial window fills up).
func TestCloseUnblocksSend(t *testing.T) {
	a, b := listen(t, quic.Config{}), listen(t, quic.Config{})
	ab, _ := dial(t, a, b)
	ctx := ctxT(t)
	errc := make(chan error, 1)
	var sent atomic.Int64
	go func() {
		frame := make([]byte, 64<<10)
		for {
			if err := ab.Send(ctx, frame); err != nil {
				errc <- err
				return
			}
			sent.Add(1)
		}
	}()
	meshtest.WaitFor(t, 5*time.Second, "256 KiB sent", func() bool { return sent.Load() >= 4 })
	_ = ab.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, transport.ErrClosed) {
			t.Fatalf("Send: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Send did not return after Close")
	}
}

// TestSendCancelled cancels a Send blocked on flow control: it returns the
// context's error and the edge is closed, since the peer cannot parse a
// partial frame; the frames sent before still arrive.
func TestSendCancelled(t *testing.T) {
	a, b := listen(t, quic.Config{}), listen(t, quic.Config{})
	ab, ba := dial(t, a, b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const size = 256 << 10
	errc := make(chan error, 1)
	var sent atomic.Int64
	go func() {
		frame := make([]byte, size)
		for {
			if err := ab.Send(ctx, frame); err != nil {
				errc <- err
				return
			}
			sent.Add(1)
		}
	}()
	// The peer reads nothing, so the third frame at the latest blocks on the
	// 512 KiB initial window.
	meshtest.WaitFor(t, 5*time.Second, "two frames sent", func() bool { return sent.Load() >= 2 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Send: %v, want context.Canceled", err)
	}
	// If the cancelled Send had written part of its frame, the edge is
	// closed already; if not, close it now. Either way the peer gets the
	// whole frames, then the close.
	_ = ab.Close()
	rctx := ctxT(t)
	for i := int64(0); ; i++ {
		f, err := ba.Receive(rctx)
		if err != nil {
			if !errors.Is(err, transport.ErrClosed) {
				t.Fatalf("Receive %d: %v", i, err)
			}
			if i != sent.Load() {
				t.Fatalf("received %d whole frames, want the %d sent", i, sent.Load())
			}
			break
		}
		if len(f) != size {
			t.Fatalf("frame %d is %d bytes", i, len(f))
		}
	}
}

func TestOversizedFrameFromPeer(t *testing.T) {
	big := listen(t, quic.Config{MaxFrame: 1 << 20})
	small := listen(t, quic.Config{MaxFrame: 1000})
	ab, ba := dial(t, big, small)
	ctx := ctxT(t)
	if err := ab.Send(ctx, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := ab.Send(ctx, make([]byte, 1001)); err != nil {
		t.Fatal(err)
	}
	if f, err := ba.Receive(ctx); err != nil || len(f) != 1000 {
		t.Fatalf("Receive = %d bytes, %v", len(f), err)
	}
	_, err := ba.Receive(ctx)
	if !errors.Is(err, transport.ErrFrameTooLarge) || !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Receive of a frame over the limit: %v, want ErrFrameTooLarge and ErrClosed", err)
	}
	if _, err := ab.Receive(ctx); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("sender's Receive after the receiver refused: %v, want ErrClosed", err)
	}
}

func TestListenErrors(t *testing.T) {
	for _, tc := range []struct {
		addr string
		cfg  quic.Config
	}{
		{"127.0.0.1", quic.Config{}},
		{"127.0.0.1:0", quic.Config{MaxFrame: -1}},
		{"127.0.0.1:0", quic.Config{IdleTimeout: -time.Second}},
		{"127.0.0.1:99999", quic.Config{}},
	} {
		if tr, err := quic.Listen(tc.addr, tc.cfg); err == nil {
			_ = tr.Close()
			t.Errorf("Listen(%q, %+v) succeeded", tc.addr, tc.cfg)
		}
	}
}

func TestDialErrors(t *testing.T) {
	a := listen(t, quic.Config{})
	ctx := ctxT(t)
	for _, addr := range []string{"no-port", "127.0.0.1:notaport", ":1"} {
		if e, err := a.Dial(ctx, addr); !errors.Is(err, transport.ErrUnreachable) {
			if e != nil {
				_ = e.Close()
			}
			t.Errorf("Dial(%q): %v, want ErrUnreachable", addr, err)
		}
	}
	// Nothing answers: the handshake times out with the context's deadline.
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err := a.Dial(dctx, deadPort(t, "udp4", "127.0.0.1:0"))
	if !errors.Is(err, transport.ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial to a dead port: %v, want ErrUnreachable and DeadlineExceeded", err)
	}
}

// TestDialHandshakeTimeout dials a dead port without a deadline: the QUIC
// handshake timeout (IdleTimeout, when shorter than 5 s) ends the dial.
func TestDialHandshakeTimeout(t *testing.T) {
	a := listen(t, quic.Config{IdleTimeout: 300 * time.Millisecond})
	start := time.Now()
	_, err := a.Dial(context.Background(), deadPort(t, "udp4", "127.0.0.1:0"))
	if !errors.Is(err, transport.ErrUnreachable) {
		t.Fatalf("Dial to a dead port: %v, want ErrUnreachable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Dial took %v", d)
	}
}
