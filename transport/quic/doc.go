// Package quic is the mesh transport over QUIC (RFC 9000) with TLS 1.3, built
// on github.com/quic-go/quic-go. It is the default for LAN clusters.
//
// A Transport owns one UDP socket, used both to accept edges and to dial
// them, so a peer on a LAN without NAT sees a node at a single address.
// Addresses are "host:port" (an IPv6 host in brackets).
//
//	a, _ := quic.Listen("127.0.0.1:0", quic.Config{})
//	b, _ := quic.Listen("127.0.0.1:0", quic.Config{})
//	e, _ := a.Dial(ctx, b.Addrs()[0])
//
// # Wire format
//
// Every edge is one QUIC version 1 connection carrying one bidirectional
// stream:
//
//   - The TLS handshake negotiates the ALPN protocol "distrirender-mesh/1"
//     (ALPN); a peer that does not offer it is refused by TLS.
//   - The dialler opens the connection's first client-initiated
//     bidirectional stream (stream ID 0) and writes one preamble byte, the
//     framing version 0x01 (Version). The acceptor writes no preamble. An
//     acceptor that reads any other byte, or no byte within 5 seconds of the
//     handshake, closes the connection with application error 0x1.
//   - After that, each direction of the stream is a sequence of frames. A
//     frame is a 4-byte big-endian unsigned length L followed by L bytes of
//     payload, one transport.Edge Send each. 0 <= L <= MaxFrame, where
//     MaxFrame is the receiver's Config.MaxFrame (transport.DefaultMaxFrame by
//     default). A receiver that reads a length over its limit closes the
//     connection with application error 0x2 before allocating anything for
//     the frame.
//   - The acceptor allows the peer one bidirectional stream and no
//     unidirectional ones; the dialler allows the peer none. Datagrams are not
//     used.
//
// Closing an edge is graceful. The closing side finishes its send direction
// (QUIC FIN) after the last frame it sent, so the peer reads every frame, then
// the end of the stream: its Receive then fails with an error wrapping
// transport.ErrClosed and it closes the connection with application error
// 0x0. Meanwhile the closing side reads and discards what the peer still
// sends, until it sees the peer's FIN or the connection close, or for at most
// Linger; then it closes the connection with application error 0x0 itself.
// An abrupt failure (peer crashed, link cut) is noticed by the QUIC idle
// timeout (Config.IdleTimeout), or earlier by the mesh node's keepalives.
//
// Application error codes in CONNECTION_CLOSE:
//
//	0x0  edge closed
//	0x1  protocol violation (bad preamble)
//	0x2  frame over the receiver's MaxFrame
//	0x3  busy: the acceptor has too many connections waiting for Accept
//
// # Security
//
// This transport authenticates nothing by itself; the node layer does, in
// a cluster with a secret (docs/SECURITY.md). With a nil Config.TLS, each
// Transport generates a fresh self-signed ECDSA P-256 certificate, and when
// dialling it accepts any certificate the peer presents: the link is
// encrypted, but neither side knows who is on the other end, and an active
// attacker on the path can sit in the middle. Set Config.TLS to use your own
// certificates and to verify peers (RootCAs for servers, ClientAuth and
// ClientCAs for clients): mutual TLS with a cluster CA.
//
// Above 32 new connection attempts a second (after a burst of 64), clients
// must prove their source address with a Retry first (RFC 9000 §8.1.2), so
// that Initial packets from spoofed addresses cost the transport no state.
//
// # Flow control and buffers
//
// Send blocks while QUIC flow control (a stream window of 512 KiB growing to
// 6 MiB, quic-go's defaults) has no room; it copies frames of up to 4 KiB into
// one write together with their length and writes larger ones in place, and
// keeps no reference to the caller's slice once it returns. Receive allocates
// exactly one slice per frame, the one it returns.
package quic
