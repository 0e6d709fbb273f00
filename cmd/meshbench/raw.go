package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"time"

	golibp2p "github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/pion/datachannel"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	quicgo "github.com/quic-go/quic-go"
)

// The raw layer is each transport's bare library with the framing the
// project's transports use, written here and not through this project's
// code: it is the baseline the edge and mesh layers are divided by.
//
//   - memory: two buffered Go channels (1024 frames, the memory transport's
//     default queue), each frame copied, as transport.Edge's contract needs;
//   - QUIC and libp2p: one stream, each frame a 4-byte big-endian length and
//     the bytes, written through a bufio.Writer flushed per frame and read
//     through a bufio.Reader into a buffer reused from frame to frame;
//   - WebRTC: one ordered, reliable pion data channel (detached), one
//     message per frame, Send waiting while 1 MiB is buffered until half of
//     it is sent (the transport's back-pressure thresholds).

// rawProto is the libp2p protocol and QUIC ALPN of the raw layer.
const rawProto = "/meshbench/raw/1"

// rawMaxFrame bounds a frame the raw layer reads: the largest size a run may
// ask for.
const rawMaxFrame = 1 << 20

// rawChanLen is the capacity of a raw memory channel: the memory transport's
// default queue per edge direction.
const rawChanLen = 1024

// errRawClosed is returned by raw ends once their link is closed.
var errRawClosed = errors.New("meshbench: raw link closed")

// chanEnd is one end of a pair of Go channels.
type chanEnd struct {
	out  chan<- []byte
	in   <-chan []byte
	done <-chan struct{}
}

// Send implements conn: the frame is copied, so the caller may reuse it.
// Like Receive, it tries the channel alone before it waits on the others.
func (c *chanEnd) Send(ctx context.Context, frame []byte) error {
	b := make([]byte, len(frame))
	copy(b, frame)
	select {
	case c.out <- b:
		return nil
	default:
	}
	select {
	case c.out <- b:
		return nil
	case <-c.done:
		return errRawClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Receive implements conn.
func (c *chanEnd) Receive(ctx context.Context) ([]byte, error) {
	select {
	case b := <-c.in:
		return b, nil
	default:
	}
	select {
	case b := <-c.in:
		return b, nil
	case <-c.done:
		return nil, errRawClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// rawChanLink makes a link of two Go channels.
func rawChanLink(context.Context) (*link, error) {
	ab, ba := make(chan []byte, rawChanLen), make(chan []byte, rawChanLen)
	done := make(chan struct{})
	var once sync.Once
	return &link{
		a:     &chanEnd{out: ab, in: ba, done: done},
		b:     &chanEnd{out: ba, in: ab, done: done},
		close: func() { once.Do(func() { close(done) }) },
		start: time.Now(),
	}, nil
}

// streamEnd frames a byte stream with 4-byte length prefixes.
type streamEnd struct {
	s    io.ReadWriteCloser
	bw   *bufio.Writer
	br   *bufio.Reader
	whdr [4]byte
	rhdr [4]byte
	buf  []byte
}

func newStreamEnd(s io.ReadWriteCloser) *streamEnd {
	return &streamEnd{s: s, bw: bufio.NewWriter(s), br: bufio.NewReader(s)}
}

// Send implements conn; ctx is not watched (closing the link ends a
// blocked write).
func (e *streamEnd) Send(_ context.Context, frame []byte) error {
	binary.BigEndian.PutUint32(e.whdr[:], uint32(len(frame)))
	if _, err := e.bw.Write(e.whdr[:]); err != nil {
		return err
	}
	if _, err := e.bw.Write(frame); err != nil {
		return err
	}
	return e.bw.Flush()
}

// Receive implements conn. The frame is valid until the next Receive.
func (e *streamEnd) Receive(context.Context) ([]byte, error) {
	if _, err := io.ReadFull(e.br, e.rhdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(e.rhdr[:]))
	if n > rawMaxFrame {
		return nil, fmt.Errorf("meshbench: raw frame of %d bytes", n)
	}
	if cap(e.buf) < n {
		e.buf = make([]byte, n)
	}
	if _, err := io.ReadFull(e.br, e.buf[:n]); err != nil {
		return nil, err
	}
	return e.buf[:n], nil
}

// selfSigned makes a TLS configuration with a fresh self-signed Ed25519
// certificate, for the raw QUIC listener.
func selfSigned() (*tls.Config, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("meshbench: key: %w", err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, fmt.Errorf("meshbench: certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}}, NextProtos: []string{rawProto}}, nil
}

// loopbackUDP opens a UDP socket on 127.0.0.1 at a port the system picks.
func loopbackUDP() (*net.UDPConn, error) {
	return net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
}

// rawQUICLink makes a link of one quic-go connection with one stream,
// between two quic-go Transports on loopback. The dialler writes one byte
// first, so that the acceptor sees the stream.
func rawQUICLink(ctx context.Context) (*link, error) {
	srvTLS, err := selfSigned()
	if err != nil {
		return nil, err
	}
	var closers []func()
	fail := func(err error) (*link, error) {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		return nil, err
	}
	var qts [2]*quicgo.Transport
	for i := range qts {
		udp, err := loopbackUDP()
		if err != nil {
			return fail(fmt.Errorf("meshbench: raw QUIC socket: %w", err))
		}
		qts[i] = &quicgo.Transport{Conn: udp}
		qt := qts[i]
		closers = append(closers, func() { _ = qt.Close(); _ = udp.Close() })
	}
	ln, err := qts[1].Listen(srvTLS, &quicgo.Config{})
	if err != nil {
		return fail(fmt.Errorf("meshbench: raw QUIC listen: %w", err))
	}
	closers = append(closers, func() { _ = ln.Close() })
	start := time.Now()
	conn, err := qts[0].Dial(ctx, ln.Addr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{rawProto}}, &quicgo.Config{})
	if err != nil {
		return fail(fmt.Errorf("meshbench: raw QUIC dial: %w", err))
	}
	closers = append(closers, func() { _ = conn.CloseWithError(0, "") })
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return fail(fmt.Errorf("meshbench: raw QUIC stream: %w", err))
	}
	if _, err := st.Write([]byte{1}); err != nil {
		return fail(fmt.Errorf("meshbench: raw QUIC stream: %w", err))
	}
	sconn, err := ln.Accept(ctx)
	if err != nil {
		return fail(fmt.Errorf("meshbench: raw QUIC accept: %w", err))
	}
	closers = append(closers, func() { _ = sconn.CloseWithError(0, "") })
	sst, err := sconn.AcceptStream(ctx)
	if err != nil {
		return fail(fmt.Errorf("meshbench: raw QUIC accept stream: %w", err))
	}
	var one [1]byte
	if _, err := io.ReadFull(sst, one[:]); err != nil {
		return fail(fmt.Errorf("meshbench: raw QUIC accept stream: %w", err))
	}
	return &link{a: newStreamEnd(st), b: newStreamEnd(sst), close: closeAll(closers), start: start}, nil
}

// closeAll returns a function that runs closers once, last first.
func closeAll(closers []func()) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		})
	}
}

// rawHost makes a bare libp2p host listening on listen (one loopback
// multiaddr), with libp2p's default security and muxers over QUIC and TCP,
// and nothing that reaches beyond loopback.
func rawHost(listen string) (host.Host, error) {
	h, err := golibp2p.New(
		golibp2p.ListenAddrStrings(listen),
		golibp2p.Transport(libp2pquic.NewTransport),
		golibp2p.Transport(tcp.NewTCPTransport),
		golibp2p.DisableRelay(),
		golibp2p.ForceReachabilityPrivate(),
		golibp2p.DisableMetrics(),
	)
	if err != nil {
		return nil, fmt.Errorf("meshbench: raw libp2p host on %s: %w", listen, err)
	}
	return h, nil
}

// rawLibp2pLink makes a link of one libp2p stream between two hosts
// listening on listen. The dialler writes one byte first, so that the
// acceptor's handler sees the stream.
func rawLibp2pLink(ctx context.Context, listen string) (*link, error) {
	var closers []func()
	fail := func(err error) (*link, error) {
		closeAll(closers)()
		return nil, err
	}
	var hs [2]host.Host
	for i := range hs {
		h, err := rawHost(listen)
		if err != nil {
			return fail(err)
		}
		hs[i] = h
		closers = append(closers, func() { _ = h.Close() })
	}
	accepted := make(chan network.Stream, 1)
	hs[1].SetStreamHandler(rawProto, func(s network.Stream) {
		select {
		case accepted <- s:
		default:
			_ = s.Reset()
		}
	})
	start := time.Now()
	if err := hs[0].Connect(ctx, peer.AddrInfo{ID: hs[1].ID(), Addrs: hs[1].Addrs()}); err != nil {
		return fail(fmt.Errorf("meshbench: raw libp2p connect: %w", err))
	}
	s, err := hs[0].NewStream(ctx, hs[1].ID(), rawProto)
	if err != nil {
		return fail(fmt.Errorf("meshbench: raw libp2p stream: %w", err))
	}
	closers = append(closers, func() { _ = s.Reset() })
	if _, err := s.Write([]byte{1}); err != nil {
		return fail(fmt.Errorf("meshbench: raw libp2p stream: %w", err))
	}
	var ss network.Stream
	select {
	case ss = <-accepted:
	case <-ctx.Done():
		return fail(fmt.Errorf("meshbench: raw libp2p accept: %w", ctx.Err()))
	}
	closers = append(closers, func() { _ = ss.Reset() })
	var one [1]byte
	if _, err := io.ReadFull(ss, one[:]); err != nil {
		return fail(fmt.Errorf("meshbench: raw libp2p accept: %w", err))
	}
	return &link{a: newStreamEnd(s), b: newStreamEnd(ss), close: closeAll(closers), start: start}, nil
}

// pionSendBuffer is how much a raw data channel buffers before Send waits,
// until half of it is sent: the WebRTC transport's thresholds.
const pionSendBuffer = 1 << 20

// pionEnd is one end of a detached pion data channel.
type pionEnd struct {
	dc   *webrtc.DataChannel
	rw   datachannel.ReadWriteCloser
	low  chan struct{}
	done <-chan struct{}
	buf  []byte
}

func newPionEnd(dc *webrtc.DataChannel, rw datachannel.ReadWriteCloser, done <-chan struct{}) *pionEnd {
	e := &pionEnd{dc: dc, rw: rw, low: make(chan struct{}, 1), done: done, buf: make([]byte, rawMaxFrame)}
	dc.SetBufferedAmountLowThreshold(pionSendBuffer / 2)
	dc.OnBufferedAmountLow(func() {
		select {
		case e.low <- struct{}{}:
		default:
		}
	})
	return e
}

// Send implements conn: one message per frame, after back-pressure.
func (e *pionEnd) Send(ctx context.Context, frame []byte) error {
	for e.dc.BufferedAmount() >= pionSendBuffer {
		select {
		case <-e.low:
		case <-e.done:
			return errRawClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	_, err := e.rw.Write(frame)
	return err
}

// Receive implements conn. The frame is valid until the next Receive.
func (e *pionEnd) Receive(context.Context) ([]byte, error) {
	n, err := e.rw.Read(e.buf)
	if err != nil {
		return nil, err
	}
	return e.buf[:n], nil
}

// pionUDPBuffer is the receive and send buffer of a raw peer connection's
// UDP socket: what the WebRTC transport asks for (with the system's default,
// a busy receiver drops packets and SCTP halves its rate), so that the raw
// layer is not slower for want of a socket setting.
const pionUDPBuffer = 4 << 20

// pionAPI is a pion API for data channels only, detached, with one host
// candidate: its own UDP socket on 127.0.0.1, with pionUDPBuffer buffers,
// and no mDNS. It returns the socket's mux, which the caller closes.
func pionAPI() (*webrtc.API, ice.UDPMux, error) {
	udp, err := loopbackUDP()
	if err != nil {
		return nil, nil, fmt.Errorf("meshbench: raw pion socket: %w", err)
	}
	_ = udp.SetReadBuffer(pionUDPBuffer) // best effort, as the transport does
	_ = udp.SetWriteBuffer(pionUDPBuffer)
	mux := webrtc.NewICEUDPMux(nil, udp)
	var se webrtc.SettingEngine
	se.DetachDataChannels()
	se.SetICEUDPMux(mux)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithSettingEngine(se)), mux, nil
}

// rawPionLink makes a link of one data channel between two pion peer
// connections in this process, the offer and answer handed over directly
// (with every candidate gathered: no signalling server).
func rawPionLink(ctx context.Context) (*link, error) {
	done := make(chan struct{})
	closers := []func(){func() { close(done) }}
	fail := func(err error) (*link, error) {
		closeAll(closers)()
		return nil, err
	}
	var pcs [2]*webrtc.PeerConnection
	for i := range pcs {
		api, mux, err := pionAPI()
		if err != nil {
			return fail(err)
		}
		closers = append(closers, func() { _ = mux.Close() })
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			return fail(fmt.Errorf("meshbench: raw pion peer connection: %w", err))
		}
		pcs[i] = pc
		closers = append(closers, func() { _ = pc.Close() })
	}
	type opened struct {
		dc  *webrtc.DataChannel
		rw  datachannel.ReadWriteCloser
		err error
	}
	openA, openB := make(chan opened, 1), make(chan opened, 1)
	detach := func(dc *webrtc.DataChannel, ch chan<- opened) {
		dc.OnOpen(func() {
			rw, err := dc.Detach()
			ch <- opened{dc, rw, err}
		})
	}
	pcs[1].OnDataChannel(func(dc *webrtc.DataChannel) { detach(dc, openB) })
	start := time.Now()
	dc, err := pcs[0].CreateDataChannel("meshbench", nil)
	if err != nil {
		return fail(fmt.Errorf("meshbench: raw pion data channel: %w", err))
	}
	detach(dc, openA)
	if err := negotiate(ctx, pcs[0], pcs[1]); err != nil {
		return fail(err)
	}
	var ends [2]opened
	for i, ch := range []chan opened{openA, openB} {
		select {
		case ends[i] = <-ch:
			if ends[i].err != nil {
				return fail(fmt.Errorf("meshbench: raw pion detach: %w", ends[i].err))
			}
			rw := ends[i].rw
			closers = append(closers, func() { _ = rw.Close() })
		case <-ctx.Done():
			return fail(fmt.Errorf("meshbench: raw pion data channel: %w", ctx.Err()))
		}
	}
	return &link{
		a:     newPionEnd(ends[0].dc, ends[0].rw, done),
		b:     newPionEnd(ends[1].dc, ends[1].rw, done),
		close: closeAll(closers),
		start: start,
	}, nil
}

// negotiate hands a's offer to b and b's answer to a, each with all of its
// candidates.
func negotiate(ctx context.Context, a, b *webrtc.PeerConnection) error {
	describe := func(pc *webrtc.PeerConnection, offer bool) (*webrtc.SessionDescription, error) {
		var sd webrtc.SessionDescription
		var err error
		if offer {
			sd, err = pc.CreateOffer(nil)
		} else {
			sd, err = pc.CreateAnswer(nil)
		}
		if err != nil {
			return nil, err
		}
		gathered := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(sd); err != nil {
			return nil, err
		}
		select {
		case <-gathered:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return pc.LocalDescription(), nil
	}
	offer, err := describe(a, true)
	if err != nil {
		return fmt.Errorf("meshbench: raw pion offer: %w", err)
	}
	if err := b.SetRemoteDescription(*offer); err != nil {
		return fmt.Errorf("meshbench: raw pion offer: %w", err)
	}
	answer, err := describe(b, false)
	if err != nil {
		return fmt.Errorf("meshbench: raw pion answer: %w", err)
	}
	if err := a.SetRemoteDescription(*answer); err != nil {
		return fmt.Errorf("meshbench: raw pion answer: %w", err)
	}
	return nil
}
