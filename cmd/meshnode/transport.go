package main

import (
	"log/slog"
	"slices"

	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/quic"
)

// listenFunc opens the node's transport at a "host:port" address. The
// daemon uses QUIC; in-process tests substitute the memory transport.
type listenFunc func(addr string, log *slog.Logger) (transport.Transport, error)

// listenQUIC is the daemon's transport: QUIC on one UDP socket, with the
// transport's defaults (TLS 1.3 with a fresh self-signed certificate, see
// the quic package on what that does and does not protect).
func listenQUIC(addr string, log *slog.Logger) (transport.Transport, error) {
	return quic.Listen(addr, quic.Config{Logger: log})
}

// advertising overrides the addresses a transport reports, and so the ones
// the node advertises in its handshake and link state (--advertise).
type advertising struct {
	transport.Transport
	addrs []string
}

func (a *advertising) Addrs() []string { return slices.Clone(a.addrs) }
