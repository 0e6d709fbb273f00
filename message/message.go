// Package message is the mesh's message model and its versioned binary codec.
//
// A message has three parts, as in the design brief:
//
//   - a UID: the sending node's UUID and an index (the per-stream sequence number
//     for data; -1 for acknowledgements; 0 for link-local control messages);
//   - a Header: the message type, flags, a hop limit, the optional target node,
//     the source's epoch and a type-specific reference number;
//   - a Body: the application's bytes for data, or an encoded control payload
//     (State, StateRequest, EdgeChange, Ack, Hello, Reject).
//
// Decoding is strict: a truncated, oversized, unknown-version or unknown-type frame
// yields a *DecodeError wrapping one of the sentinel errors (ErrTruncated,
// ErrTooLarge, ErrVersion, ErrType, ErrMalformed), and never panics. Decoding a
// valid frame allocates nothing.
// docs/PROTOCOL.md is the normative description of the wire format.
package message

import (
	"github.com/google/uuid"
)

// Version is the protocol version written in every frame's first byte.
// A decoder rejects every other version with ErrVersion.
const Version = 2

// Type is a message type.
type Type uint8

// Message types. Values are part of the wire format: never renumber.
const (
	// TypeHello opens an edge: the dialer's identity, addresses and free slots (body: Hello).
	TypeHello Type = 1
	// TypeWelcome accepts an edge: the acceptor's identity, addresses and free slots (body: Hello).
	TypeWelcome Type = 2
	// TypeReject refuses an edge, with a reason and entry points to try (body: Reject).
	TypeReject Type = 3
	// TypeKeepalive proves liveness on an idle edge (empty body).
	TypeKeepalive Type = 4
	// TypeNetworkState carries one or more link-state records (body: StateList).
	TypeNetworkState Type = 5
	// TypeNetworkStateRequest asks a neighbour for link-state records (body: StateRequest).
	TypeNetworkStateRequest Type = 6
	// TypeNewEdge announces that an origin gained a neighbour (body: EdgeChange).
	TypeNewEdge Type = 7
	// TypeDestroyEdge announces that an origin lost a neighbour (body: EdgeChange).
	TypeDestroyEdge Type = 8
	// TypeMsg is a unicast application message (body: application bytes).
	TypeMsg Type = 9
	// TypeMsgBroadcast is a broadcast application message (body: application bytes).
	// With a zero Target it is flooded; with a Target it is a repair copy routed to that node.
	TypeMsgBroadcast Type = 10
	// TypeAck acknowledges a data stream; its UID index is always -1 (body: Ack).
	TypeAck Type = 11
	// TypeGoodbye announces a graceful departure on an edge (empty body).
	TypeGoodbye Type = 12
	// TypeEntryRequest asks the mesh for a node that accepts a newcomer: it is
	// flooded (no Target); its UID index names the request (empty body).
	TypeEntryRequest Type = 13
	// TypeEntryReply answers an entry request from a node with free slots,
	// routed to the requester with the request's UID index (body: Hello).
	TypeEntryReply Type = 14
	// TypeNetworkStateDigest summarises a range of the sender's link-state
	// database, one version per record, when an edge comes up; the receiver
	// answers with network_state carrying the records the sender lacks or
	// holds older (body: Digest). Protocol version 2.
	TypeNetworkStateDigest Type = 15
	// TypeChallenge answers a hello that carries an Auth in a cluster with a
	// secret: the acceptor's nonce, key and proofs (body: Auth). The dialer
	// proves itself in a second hello; docs/SECURITY.md.
	TypeChallenge Type = 16

	typeMax = TypeChallenge
)

// String returns the type's protocol name, as in docs/PROTOCOL.md.
func (t Type) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeWelcome:
		return "welcome"
	case TypeReject:
		return "reject"
	case TypeKeepalive:
		return "keepalive"
	case TypeNetworkState:
		return "network_state"
	case TypeNetworkStateRequest:
		return "network_state_request"
	case TypeNewEdge:
		return "new_edge"
	case TypeDestroyEdge:
		return "destroy_edge"
	case TypeMsg:
		return "msg"
	case TypeMsgBroadcast:
		return "msg_broadcast"
	case TypeAck:
		return "ack"
	case TypeGoodbye:
		return "goodbye"
	case TypeEntryRequest:
		return "entry_request"
	case TypeEntryReply:
		return "entry_reply"
	case TypeNetworkStateDigest:
		return "network_state_digest"
	case TypeChallenge:
		return "challenge"
	}
	return "unknown"
}

// Valid reports whether t is a type this version knows.
func (t Type) Valid() bool { return t >= TypeHello && t <= typeMax }

// Flags are per-message bits. Unknown bits are rejected by the decoder.
type Flags uint8

const (
	// FlagBroadcastStream marks an Ack as acknowledging the source's broadcast
	// stream rather than its unicast stream.
	FlagBroadcastStream Flags = 1 << 0
	// FlagSealed marks, in a cluster with a secret, a msg, msg_broadcast or
	// ack sent to one node, whose body is then a nonce counter (8 bytes)
	// and the AEAD-sealed application body (TagSize bytes longer), or a
	// flooded msg_broadcast, whose body then ends with its origin's
	// SigSize-byte signature (docs/SECURITY.md).
	FlagSealed Flags = 1 << 1
	// FlagCongestion on a msg is set by a node that forwarded it while its
	// queue towards the next hop was crowded; on an ack it echoes that the
	// receiver saw the mark on the stream since its previous ack, and the
	// sender shrinks its window as for a loss (ECN, RFC 3168, without the
	// loss). Forwarders set it in place, so end-to-end sealing does not
	// cover it.
	FlagCongestion Flags = 1 << 2

	flagsKnown = FlagBroadcastStream | FlagSealed | FlagCongestion
)

// TagSize is the size of the AEAD tag at the end of a sealed frame's body.
const TagSize = 16

// SealOverhead is what sealing adds to a body sent to one node: the nonce
// counter and the tag.
const SealOverhead = 8 + TagSize

// AckIndex is the UID index every acknowledgement carries.
const AckIndex = -1

// UID identifies a message: the sending node and an index.
type UID struct {
	Node  uuid.UUID
	Index int32
}

// Header is what forwarding and the state machines need, besides the UID.
type Header struct {
	Type     Type
	Flags    Flags
	HopLimit uint8
	// Target is the destination node; uuid.Nil means none (link-local or flooded).
	Target uuid.UUID
	// Epoch is the source node's incarnation: larger after every restart.
	Epoch uint64
	// Ref is type-specific: for msg and msg_broadcast it is the sender's window
	// base (the lowest index it may still send); otherwise 0.
	Ref uint32
}

// Message is one decoded frame.
//
// After Decode, Body aliases the decoded buffer: copy it before the buffer is reused.
type Message struct {
	UID    UID
	Header Header
	Body   []byte
}

// State is one origin's link-state record, carried by network_state.
type State struct {
	Origin uuid.UUID
	// Epoch is the origin's incarnation; a larger epoch replaces any sequence.
	Epoch uint64
	// Seq increases with every change the origin makes within one epoch.
	Seq uint64
	// FreeSlots is how many more neighbours the origin accepts.
	FreeSlots uint16
	// Neighbors are the origin's current neighbours, sorted, without duplicates.
	Neighbors []uuid.UUID
	// Addrs are the addresses at which the origin can be dialled.
	Addrs []string
	// Name is the origin's human name, or empty: at most MaxNameLen bytes
	// of UTF-8, not unique, for people only (protocol version 2).
	Name string
	// Key and Sig sign the record in a cluster with a secret: the origin's
	// ed25519 public key (whose hash is the origin's UUID) and its
	// signature of SigningBytes. Sig is nil in an unsigned record, and
	// Key then zero.
	Key [KeySize]byte
	Sig []byte
}

// StateList is the body of network_state: one or more records.
type StateList []State

// StateRequest is the body of network_state_request: the origins whose records
// are wanted; empty means the whole database.
type StateRequest []uuid.UUID

// Digest is the body of network_state_digest: the version of every record
// the sender holds whose origin lies in [First, Last], sorted by origin. A
// large database takes several digests with adjoining ranges.
type Digest struct {
	First, Last uuid.UUID
	Entries     []DigestEntry
}

// DigestEntry is the version of one record: its origin's epoch and sequence
// number.
type DigestEntry struct {
	Origin     uuid.UUID
	Epoch, Seq uint64
}

// EdgeChange is the body of new_edge and destroy_edge: an incremental change to
// Origin's record that takes it from sequence Seq-1 to Seq.
type EdgeChange struct {
	Origin    uuid.UUID
	Epoch     uint64
	Seq       uint64
	Peer      uuid.UUID
	FreeSlots uint16
	// Sig is, in a cluster with a secret, the origin's signature of its
	// whole record as it is after the change (State.SigningBytes, with
	// the origin's key); all zero when unsigned (an array, so that
	// EdgeChange stays comparable).
	Sig [SigSize]byte
}

// Signed reports whether c carries a signature.
func (c EdgeChange) Signed() bool { return c.Sig != [SigSize]byte{} }

// Ack is the body of an acknowledgement.
type Ack struct {
	// StreamEpoch is the epoch of the data sender whose stream this acknowledges.
	StreamEpoch uint64
	// Cum is the cumulative acknowledgement: every index before Cum (in the
	// stream's modular order) has been delivered to the application.
	Cum uint32
	// SACK is a bitmap of messages received and buffered but not yet delivered:
	// bit i (LSB first within each byte) stands for index Cum+i.
	SACK []byte
}

// Hello is the body of hello and welcome.
type Hello struct {
	// Addrs are the sender's dialable addresses.
	Addrs []string
	// FreeSlots is how many more neighbours the sender accepts.
	FreeSlots uint16
	// Auth is the dialer's part of the authenticated handshake of a
	// cluster with a secret; nil in a hello of a node without one (and in
	// a welcome).
	Auth *Auth
}

// Sizes of the fields of an Auth.
const (
	// NonceSize is the size of a handshake nonce.
	NonceSize = 32
	// KeySize is the size of an ed25519 public key.
	KeySize = 32
	// MACSize is the size of an HMAC-SHA256.
	MACSize = 32
	// SigSize is the size of an ed25519 signature.
	SigSize = 64
	// MaxMACs is the most MACs one Auth carries: one per accepted cluster
	// secret of its sender.
	MaxMACs = 8
)

// Auth is a node's part of the authenticated handshake (docs/SECURITY.md):
// its fresh nonce and identity key, and once it knows the other side's
// nonce, its proofs over the transcript: HMACs keyed with cluster secrets
// and a signature by the identity key.
type Auth struct {
	Nonce [NonceSize]byte
	Key   [KeySize]byte
	// MACs are HMAC-SHA256 over the transcript, one per secret the sender
	// proves with; none before the sender knows the transcript.
	MACs [][MACSize]byte
	// Sig is the ed25519 signature of the transcript, or nil.
	Sig []byte
}

// Proved reports whether a carries proofs (a MAC and a signature).
func (a *Auth) Proved() bool { return a != nil && len(a.MACs) > 0 && len(a.Sig) == SigSize }

// RejectReason says why an edge was refused.
type RejectReason uint8

// Reject reasons.
const (
	RejectFull      RejectReason = 1 // no free connection slots
	RejectDuplicate RejectReason = 2 // an edge between the two nodes exists already
	RejectSelf      RejectReason = 3 // the dialer reached itself
	RejectClosing   RejectReason = 4 // the acceptor is shutting down
	RejectAuth      RejectReason = 5 // the cluster secret or identity was not proved
)

// Reject is the body of reject.
type Reject struct {
	Reason RejectReason
	// EntryPoints are addresses of nodes that may accept instead.
	EntryPoints []string
}
