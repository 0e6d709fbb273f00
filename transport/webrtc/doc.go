// Package webrtc is the mesh transport over WebRTC data channels, built on
// github.com/pion/webrtc/v4 and signalled the way peerjs does it: through a
// PeerJS PeerServer. Either the npm peer server or this package's own
// SignalServer will do, and a browser running peerjs can open an edge to a
// Go node as it would open a DataConnection to another browser.
//
//	srv, _ := webrtc.NewSignalServer(webrtc.SignalConfig{})
//	go http.ListenAndServe("127.0.0.1:9000", srv)
//	a, _ := webrtc.New(ctx, webrtc.Config{Server: "http://127.0.0.1:9000/", ID: "alice"})
//	b, _ := webrtc.New(ctx, webrtc.Config{Server: "http://127.0.0.1:9000/", ID: "bob"})
//	e, _ := a.Dial(ctx, "bob")
//
// # Addresses
//
// An address is a PeerJS peer ID, such as "bob" or
// "3f1c9a1e-5d0b-4c1a-9b7e-0c2f4d6a8e10": letters and digits, with single
// spaces, underscores or hyphens between them, at most 128 bytes (ValidID).
// It names a peer on the transport's signalling server, so every transport of
// a mesh uses the same server (Config.Server and Config.Key); Addrs returns
// the one ID, given in Config.ID or handed out by the server. Dial fails at
// once, with an error wrapping transport.ErrUnreachable and ErrBadAddress,
// for a string that is not a peer ID ("127.0.0.1:4242", "/ip4/..."): a node
// that holds several transports tries each in turn.
//
// # Signalling
//
// The transport is a PeerServer client as peerjs 1.x is one: it registers
// over the WebSocket {path}peerjs?key=K&id=ID&token=T and waits for OPEN
// (ID-TAKEN fails New with ErrIDTaken), sends HEARTBEAT every 5 s, and
// reconnects with the same ID and token if the WebSocket breaks. Every
// message is a JSON object {type, src, dst, payload}; the server fills in
// src. An edge is set up as a peerjs DataConnection is:
//
//	dialler -> OFFER     {sdp: {type: "offer", sdp}, type: "data", connectionId: "dc_...",
//	                      label: connectionId, reliable: true, serialization: "binary"}
//	        <- ANSWER    {sdp: {type: "answer", sdp}, type: "data", connectionId}
//	        <-> CANDIDATE {candidate: {candidate, sdpMid, sdpMLineIndex, usernameFragment},
//	                      type: "data", connectionId}
//
// Both sides trickle their ICE candidates after their description. The
// dialler creates the one data channel (ordered, reliable) before its
// offer, and Dial returns when the channel is open. An EXPIRE from the
// server (the peer is not connected to it) or a LEAVE fails a Dial with
// transport.ErrUnreachable. The acceptor takes OFFERs of type "data" with
// the serializations below; it ignores media and other serializations (the
// peer's connection then never opens), and OFFERs beyond 64 pending.
//
// SignalServer is a PeerServer in Go, an http.Handler, so that a mesh needs
// no Node.js: it serves GET /{key}/id, the WebSocket and the message
// forwarding and expiry of npm peer 1.0.
//
// # Framing and frame size
//
// One edge is one RTCPeerConnection carrying one data channel. The dialler
// chooses the serialization (Config.Serialization):
//
//   - "binary" (the default, and peerjs's; "binary-utf8" and "default" are
//     taken as it): every data-channel message is a BinaryPack value. A frame
//     is sent as a raw value (a header of 1, 3 or 5 bytes, then the frame).
//     A packed frame longer than ChunkSize (16300 bytes, peerjs's chunkedMTU)
//     is sent in pieces of ChunkSize bytes, each in the chunk map peerjs uses,
//     {"__peerData": id, "n": i, "data": piece, "total": count}, some 40
//     bytes of header; the receiver puts the pieces back together. So frames
//     up to MaxFrame (transport.DefaultMaxFrame by default) travel on any
//     "binary" edge, and no message exceeds 16 KiB, which every browser
//     carries. A received string is taken as a frame of its UTF-8 bytes;
//     other values (numbers, objects) are logged and dropped;
//     {"__peerData": {"type": "close"}} closes the edge, as in peerjs.
//   - "raw": every frame is one data-channel message, as it is, binary. A
//     frame is then limited by MaxFrame and by the message size the peer
//     advertises (a=max-message-size): MaxMessage (64 KiB) for this
//     transport, 256 KiB in Chromium's offers, 65535 bytes for a peer that
//     advertises none, as Chromium's answers. Edge.MaxFrame tells the limit
//     of an edge. A received text message is a frame of its bytes.
//
// The transport advertises a=max-message-size:65536 (MaxMessage) and reads
// messages of at most that size, so a peer's SCTP messages never grow past
// 64 KiB, far below the SCTP receive buffer (1 MiB) that must hold a whole
// message. Send over an edge's limit fails with transport.ErrFrameTooLarge
// and the edge stays usable; a received frame over MaxFrame ends the edge
// with an error wrapping transport.ErrFrameTooLarge.
//
// A browser's data channel is unordered unless peerjs's connect is given
// reliable: true; frames on an unordered edge may arrive out of order (the
// mesh above copes). Edges this transport dials are ordered.
//
// # Flow control and closing
//
// Send waits while 1 MiB is buffered on the data channel and not yet
// acknowledged, until half of it has been. Each edge reads up to 16 frames
// ahead of Receive; then the SCTP window fills and the sender waits.
//
// Edge.Close resets the data channel's outgoing stream after every message
// sent before it, so the peer reads those and then sees the edge closed;
// the peer resets its stream in turn and the peer connection is closed, or
// after Config.Linger if the peer does not answer. A peer connection that
// fails (ICE failed: pion's defaults, some 30 s without a packet) ends its
// edge.
//
// # ICE
//
// By default ICE gathers host candidates only, over UDP, on loopback
// addresses only (Config.IPFilter, Config.NetworkTypes), with no STUN or
// TURN server (Config.ICEServers) and no multicast DNS: nothing leaves the
// machine until Config says so. IPFilter applies to the peer's candidates
// too, and a browser's mDNS (.local) candidates are ignored: a browser's
// connectivity checks still arrive from them, and ICE answers them as
// peer-reflexive candidates, which it nominates at once when no ICE server
// is configured (pion waits a second by default). For a LAN, let IPFilter
// pass the LAN's addresses. The transport asks for 4 MiB UDP socket
// buffers: with the system's default, a busy receiver drops packets and
// SCTP's throughput falls several-fold.
//
// # Security
//
// DTLS encrypts every edge, but nothing is authenticated: each peer
// connection has a fresh self-signed certificate whose fingerprint travels
// in the SDP, so the signalling server, which carries the SDP and hands out
// IDs first come first served, could sit in the middle of any edge. Run
// the PeerServer where the mesh trusts it (over https/wss off the LAN), as
// with peerjs.
//
// # Logging
//
// Config.Logger receives the transport's logs and pion's, the latter tagged
// pion=<subsystem> ("ice", "sctp", "pc"...) and one level lower than pion
// logs them: pion's errors mostly concern one connection, which the
// transport handles and reports itself, so they arrive as warnings, pion's
// warnings as Info, its Info and Debug as Debug; Trace is dropped.
//
// # Browsers
//
// A page with peerjs 1.5 reaches a Go node with
//
//	const peer = new Peer({host: "127.0.0.1", port: 9000, path: "/", key: "peerjs",
//	                       config: {iceServers: []}});
//	const conn = peer.connect("bob", {serialization: "raw", reliable: true});
//	conn.on("open", () => conn.send(new Uint8Array([1, 2, 3])));
//
// with serialization "raw" (frames of up to 64 KiB) or "binary" (peerjs's
// default, frames of any size); either way the page sends Uint8Arrays or
// ArrayBuffers and receives ArrayBuffers. The Go node can dial a browser
// too; its "binary" edges are what peerjs expects by default.
package webrtc
