package main

import (
	"context"
	"log/slog"
	"net"
	"slices"

	pionwebrtc "github.com/pion/webrtc/v4"

	"github.com/distrirender/distrirender/internal/rtcsetup"
	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/quic"
	"github.com/distrirender/distrirender/transport/webrtc"
)

// listenSpec says which transport the daemon opens, and where.
type listenSpec struct {
	transport string            // transportQUIC or transportWebRTC
	addr      string            // quic: the HOST:PORT to listen on; webrtc: the peer ID
	signal    string            // webrtc: the signalling server's URL
	key       string            // webrtc: the signalling server's API key ("": the default)
	ice       func(net.IP) bool // webrtc: the addresses ICE may use
	servers   []pionwebrtc.ICEServer
}

// listenFunc opens the node's transport. The daemon uses listenTransport;
// in-process tests substitute the memory transport.
type listenFunc func(ctx context.Context, s listenSpec, log *slog.Logger) (transport.Transport, error)

// listenTransport opens the daemon's transport: QUIC on one UDP socket, with
// the transport's defaults (TLS 1.3 with a fresh self-signed certificate, see
// the quic package on what that does and does not protect), or WebRTC data
// channels (DTLS, equally unauthenticated), registered as peer s.addr on the
// PeerJS server s.signal, which it waits for until ctx ends.
func listenTransport(ctx context.Context, s listenSpec, log *slog.Logger) (transport.Transport, error) {
	if s.transport != transportWebRTC {
		return quic.Listen(s.addr, quic.Config{Logger: log})
	}
	tlog := log
	if !log.Enabled(ctx, slog.LevelDebug) {
		tlog = slog.New(rtcsetup.QuietPion(log.Handler()))
	}
	// A daemon waits for its signalling server as it waits for its seeds.
	return rtcsetup.Open(ctx, webrtc.Config{Server: s.signal, Key: s.key, ID: s.addr, IPFilter: s.ice, ICEServers: s.servers, Logger: tlog}, 0, log)
}

// advertising overrides the addresses a transport reports, and so the ones
// the node advertises in its handshake and link state (--advertise).
type advertising struct {
	transport.Transport
	addrs []string
}

func (a *advertising) Addrs() []string { return slices.Clone(a.addrs) }
