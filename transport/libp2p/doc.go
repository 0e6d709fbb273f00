// Package libp2p is a mesh transport on a libp2p host: every edge is one
// libp2p stream of the protocol /distrirender/mesh/1.0.0 (ProtocolID), and
// the frames of the edge travel on it length-prefixed.
//
// By default New makes its own host, listening on loopback QUIC and TCP
// (Config.ListenAddrs) with libp2p's own security (TLS 1.3 or Noise) and
// stream multiplexing (QUIC's own streams, yamux over TCP). The host runs no
// relay, no hole punching, no NAT port mapping and no AutoNAT probing, and
// knows no bootstrap peers: it talks only to the addresses it is asked to
// dial and to the peers that dial it. Config.Host lets an application bring
// a host of its own instead; the transport then only adds its stream handler.
//
// # Addresses and identities
//
// Addresses are multiaddr strings that end in the peer ID of the host, such
// as
//
//	/ip4/127.0.0.1/udp/41234/quic-v1/p2p/12D3KooW...
//
// Transport.Addrs returns every listen address of the host in that form, and
// Dial needs one. The peer ID authenticates the link: libp2p's handshake
// proves that the other side holds the key of that ID, so an edge can only
// reach the host its address names. It does not replace the mesh identity:
// the node on top keeps its UUID as its mesh address, and the peer ID only
// names the link. Config.PrivateKey keeps the peer ID (and so the addresses)
// stable across restarts; by default every host gets a fresh Ed25519 key.
//
// Dial fails at once, with an error wrapping transport.ErrUnreachable and
// ErrBadAddress, for a string that is not a multiaddr with a /p2p/ peer ID
// (for example "127.0.0.1:4242", an address of another transport): a node that
// holds several transports tries each in turn, and the wrong kind must not
// cost it time.
//
// # Framing
//
// After libp2p's multistream-select has agreed on ProtocolID, the stream
// carries frames in both directions, each as
//
//	length  u32, big-endian: the number of bytes that follow, 0 to MaxFrame
//	frame   length bytes
//
// and nothing else: no version byte of its own (the protocol ID versions the
// stream, and the mesh frames carry their version) and no padding. A receiver
// reads the length first and ends the edge, without allocating, if it is over
// its MaxFrame. A sender writes the prefix and the frame with one Write, so
// that a small frame costs one multiplexer frame (or QUIC STREAM frame) and
// concurrent Sends on one edge never interleave.
//
// # Closing
//
// Edge.Close ends this side's writing with a FIN after every frame sent
// before it, so the peer receives those frames and then sees the edge closed.
// The stream's read side stays open for up to Config.Linger, discarding what
// arrives, until the peer closes its side too; only then, or when the linger
// runs out, is the stream freed. Transport.Close closes every edge the same
// way and waits for their lingers (all at once, so at most one Linger) before
// it closes its own host, so that a goodbye written just before Close is not
// cut off with the connection. With Config.Host the host stays up: Close
// removes the stream handler, closes the edges and frees their streams at
// once, since the connection that carries their last frames outlives it.
//
// # Discovery
//
// With Config.MDNS the transport runs go-libp2p's mDNS service
// (p2p/discovery/mdns) under Config.MDNSService and reports every peer it
// finds, as one dialable address, on Transport.Discovered. AutoConnect feeds
// those addresses to a node's Connect. mDNS sends multicast on every up
// interface that has the MULTICAST flag; Linux's loopback has not that flag by
// default, so hosts that listen on loopback only find each other through the
// multicast loopback of another interface, or in a network namespace whose
// lo has multicast turned on.
package libp2p
