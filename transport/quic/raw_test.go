package quic_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/quic"
)

// rawDial connects to addr with quic-go directly, from a loopback socket,
// offering the given ALPN, so a test can speak the wire format by hand.
func rawDial(t *testing.T, addr, alpn string) (*quicgo.Conn, error) {
	t.Helper()
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	qt := &quicgo.Transport{Conn: udp}
	t.Cleanup(func() {
		_ = qt.Close()
		_ = udp.Close()
	})
	raddr, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return qt.Dial(ctx, raddr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpn}}, nil)
}

// noAccept checks that tr accepts no edge for a little while.
func noAccept(t *testing.T, tr *quic.Transport) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if e, err := tr.Accept(ctx); err == nil {
		_ = e.Close()
		t.Fatal("accepted an edge that broke the protocol")
	}
}

func TestWrongALPN(t *testing.T) {
	tr := listen(t, quic.Config{})
	conn, err := rawDial(t, tr.Addrs()[0], "h3")
	if err == nil {
		_ = conn.CloseWithError(0, "")
		t.Fatal("handshake with a foreign ALPN succeeded")
	}
	t.Logf("foreign ALPN: %v", err)
	noAccept(t, tr)
}

func TestBadPreamble(t *testing.T) {
	tr := listen(t, quic.Config{})
	conn, err := rawDial(t, tr.Addrs()[0], quic.ALPN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte{0x7f, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	noAccept(t, tr)
	select {
	case <-conn.Context().Done():
		var appErr *quicgo.ApplicationError
		if err := context.Cause(conn.Context()); !errors.As(err, &appErr) || appErr.ErrorCode != 0x1 || !appErr.Remote {
			t.Fatalf("connection closed with %v, want application error 0x1 from the peer", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the acceptor kept a connection with a bad preamble open")
	}
}

// TestHugeLength sends a length prefix of 4 GiB - 1: the receiver refuses it
// without trying to allocate it.
func TestHugeLength(t *testing.T) {
	tr := listen(t, quic.Config{})
	conn, err := rawDial(t, tr.Addrs()[0], quic.ALPN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Preamble, a 2-byte frame, then a frame "of 4 GiB - 1".
	if _, err := st.Write([]byte{quic.Version, 0, 0, 0, 2, 'h', 'i', 0xff, 0xff, 0xff, 0xff, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	e, err := tr.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if f, err := e.Receive(ctx); err != nil || string(f) != "hi" {
		t.Fatalf("Receive = %q, %v", f, err)
	}
	if _, err := e.Receive(ctx); !errors.Is(err, transport.ErrFrameTooLarge) || !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Receive of a 4 GiB frame: %v, want ErrFrameTooLarge and ErrClosed", err)
	}
	select {
	case <-conn.Context().Done():
		var appErr *quicgo.ApplicationError
		if err := context.Cause(conn.Context()); !errors.As(err, &appErr) || appErr.ErrorCode != 0x2 {
			t.Fatalf("connection closed with %v, want application error 0x2", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("connection still open after an oversized frame")
	}
}

// TestAcceptorWritesFirst checks that the acceptor may send before the
// dialler sends its first frame (the dialler's preamble opened the stream).
func TestAcceptorWritesFirst(t *testing.T) {
	a, b := listen(t, quic.Config{}), listen(t, quic.Config{})
	ab, ba := dial(t, a, b)
	ctx := ctxT(t)
	if err := ba.Send(ctx, []byte("welcome")); err != nil {
		t.Fatal(err)
	}
	if f, err := ab.Receive(ctx); err != nil || string(f) != "welcome" {
		t.Fatalf("Receive = %q, %v", f, err)
	}
}

// TestIdleTimeout crashes one side: the other notices by the QUIC idle
// timeout, with an error wrapping transport.ErrClosed.
func TestIdleTimeout(t *testing.T) {
	cfg := quic.Config{IdleTimeout: 300 * time.Millisecond}
	a, b := listen(t, cfg), listen(t, cfg)
	ab, ba := dial(t, a, b)
	b.Crash()
	start := time.Now()
	_, err := ab.Receive(ctxT(t))
	if !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Receive from a crashed peer: %v, want ErrClosed", err)
	}
	var idle *quicgo.IdleTimeoutError
	if !errors.As(err, &idle) {
		t.Fatalf("Receive from a crashed peer: %v, want an idle timeout", err)
	}
	t.Logf("noticed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if _, err := ba.Receive(ctxT(t)); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Receive on the crashed side: %v, want ErrClosed", err)
	}
}
