package meshapi

import (
	"encoding/base64"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/routing"
)

// Status is the body of GET /v1/status.
type Status struct {
	// ID is the node's UUID, its address in the mesh.
	ID uuid.UUID `json:"id"`
	// Name is the node's human name (meshnode run --name), absent if none.
	Name string `json:"name,omitempty"`
	// Epoch is the node's incarnation number (new at every start).
	Epoch uint64 `json:"epoch"`
	// Addrs are the transport addresses other nodes dial to reach this one.
	Addrs []string `json:"addrs"`
	// Neighbors are the node's direct neighbours, sorted.
	Neighbors []uuid.UUID `json:"neighbors"`
	// Known is how many nodes the link-state database holds (this one included).
	Known int `json:"known"`
	// Reachable is how many of them have a route (this one included).
	Reachable int `json:"reachable"`
	// Stats are the node's counters (node.Stats).
	Stats Stats `json:"stats"`
	// API are the HTTP API's own counters.
	API APIStats `json:"api"`
}

// Stats mirrors node.Stats with JSON names.
type Stats struct {
	// FramesIn counts frames received from neighbours.
	FramesIn uint64 `json:"frames_in"`
	// FramesOut counts frames queued to neighbours.
	FramesOut uint64 `json:"frames_out"`
	// Forwarded counts frames relayed for other nodes.
	Forwarded uint64 `json:"forwarded"`
	// DroppedForward counts frames dropped because a neighbour's
	// forwarding buffer was full.
	DroppedForward uint64 `json:"dropped_forward"`
	// DroppedNoRoute counts frames dropped for want of a route (they are
	// retransmitted end to end).
	DroppedNoRoute uint64 `json:"dropped_no_route"`
	// DroppedHopLimit counts frames dropped at hop limit zero.
	DroppedHopLimit uint64 `json:"dropped_hop_limit"`
	// Hostile counts malformed, invalid, forged or oversized frames from
	// neighbours.
	Hostile uint64 `json:"hostile"`
	// Delivered counts messages handed to the application.
	Delivered uint64 `json:"delivered"`
	// Duplicates counts data frames received again and dropped.
	Duplicates uint64 `json:"duplicates"`
	// Retransmits counts end-to-end retransmissions.
	Retransmits uint64 `json:"retransmits"`
	// Failed counts messages reported as failed (delivery-failed events).
	Failed uint64 `json:"failed"`
	// EventsDropped counts node events lost because nobody drained them.
	EventsDropped uint64 `json:"events_dropped"`
	// NeighborsUp counts edges established.
	NeighborsUp uint64 `json:"neighbors_up"`
	// NeighborsDown counts edges lost.
	NeighborsDown uint64 `json:"neighbors_down"`
	// TopologyFrames counts link-state frames sent.
	TopologyFrames uint64 `json:"topology_frames"`
	// AuthFailures counts handshakes refused, on either side, for want
	// of a proved cluster secret or identity.
	AuthFailures uint64 `json:"auth_failures"`
	// HandshakesRefused counts incoming edges closed at once because too
	// many handshakes were under way.
	HandshakesRefused uint64 `json:"handshakes_refused"`
	// RateLimited counts control frames (digests and whole-database
	// requests, or any beyond the control limit) dropped over a
	// neighbour's rate limits.
	RateLimited uint64 `json:"rate_limited"`
	// Forged counts the hostile frames not signed or sealed by the node
	// they claim to come from.
	Forged uint64 `json:"forged"`
}

func statsOf(s node.Stats) Stats {
	return Stats{
		FramesIn: s.FramesIn, FramesOut: s.FramesOut, Forwarded: s.Forwarded,
		DroppedForward: s.DroppedForward, DroppedNoRoute: s.DroppedNoRoute, DroppedHopLimit: s.DroppedHopLimit,
		Hostile: s.Hostile, Delivered: s.Delivered, Duplicates: s.Duplicates, Retransmits: s.Retransmits,
		Failed: s.Failed, EventsDropped: s.EventsDropped, NeighborsUp: s.NeighborsUp, NeighborsDown: s.NeighborsDown,
		TopologyFrames: s.TopologyFrames, AuthFailures: s.AuthFailures, HandshakesRefused: s.HandshakesRefused,
		RateLimited: s.RateLimited, Forged: s.Forged,
	}
}

// APIStats are counters of the HTTP API itself.
type APIStats struct {
	// Subscribers is the number of open GET /v1/recv streams.
	Subscribers int `json:"subscribers"`
	// Received counts messages taken from the node (node.Receive).
	Received uint64 `json:"received"`
	// Unsubscribed counts received messages that no stream was open to take.
	Unsubscribed uint64 `json:"unsubscribed"`
	// StreamDropped counts messages and events dropped because a stream's
	// buffer was full (a slow subscriber); the stream is told with a
	// "dropped" event.
	StreamDropped uint64 `json:"stream_dropped"`
}

// Snapshot is the data of a "snapshot" event on GET /v1/live: the node's
// counters and view of the mesh at one moment.
type Snapshot struct {
	// Time is when the snapshot was taken, for rates between two of them.
	Time time.Time `json:"time"`
	// ID is the node's UUID.
	ID uuid.UUID `json:"id"`
	// Stats are the node's counters.
	Stats Stats `json:"stats"`
	// Topology is the node's view of the mesh.
	Topology Topology `json:"topology"`
}

// Topology is the body of GET /v1/topology: the node's view of the mesh.
type Topology struct {
	// Self is the local node.
	Self uuid.UUID `json:"self"`
	// Version changes whenever a route changes.
	Version uint64 `json:"version"`
	// Diameter is the longest shortest path, in hops, between reachable nodes.
	Diameter int `json:"diameter"`
	// Nodes holds every node in the link-state database, sorted by ID.
	Nodes []NodeInfo `json:"nodes"`
}

// NodeInfo is one node of a Topology.
type NodeInfo struct {
	// ID is the node's UUID.
	ID uuid.UUID `json:"id"`
	// Name is the node's human name from its link-state record, absent if
	// it has none. Names need not be unique.
	Name string `json:"name,omitempty"`
	// Epoch is the node's incarnation number.
	Epoch uint64 `json:"epoch"`
	// Seq is the sequence number of the node's link-state record.
	Seq uint64 `json:"seq"`
	// Addrs are the node's dialable transport addresses.
	Addrs []string `json:"addrs"`
	// FreeSlots is how many more neighbours the node accepts.
	FreeSlots uint16 `json:"free_slots"`
	// Neighbors are the node's confirmed neighbours (both ends list each
	// other), sorted.
	Neighbors []uuid.UUID `json:"neighbors"`
	// Distance is the hop count from the local node, -1 when unreachable.
	Distance int `json:"distance"`
	// NextHop is the neighbour towards the node; absent for the local node
	// and unreachable nodes.
	NextHop *uuid.UUID `json:"next_hop,omitempty"`
}

func topologyOf(tp routing.Topology) Topology {
	out := Topology{Self: tp.Self, Version: tp.Version, Diameter: tp.Diameter(), Nodes: make([]NodeInfo, 0, len(tp.Nodes))}
	for _, n := range tp.Nodes {
		ni := NodeInfo{
			ID: n.ID, Name: n.Name, Epoch: n.Epoch, Seq: n.Seq, Addrs: nonNil(n.Addrs), FreeSlots: n.FreeSlots,
			Neighbors: nonNil(n.Neighbors), Distance: n.Distance,
		}
		if n.NextHop != uuid.Nil {
			h := n.NextHop
			ni.NextHop = &h
		}
		out.Nodes = append(out.Nodes, ni)
	}
	return out
}

// nonNil makes a nil slice encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// SendRequest is the body of POST /v1/send. Exactly one of Body and
// BodyBase64 must be present; an empty body is allowed.
type SendRequest struct {
	// To is the destination node: its UUID, a unique prefix of it (at
	// least 4 hex digits, hyphens optional) or its name, if unique; see
	// ResolveNode.
	To string `json:"to"`
	// Body is the message as text.
	Body *string `json:"body,omitempty"`
	// BodyBase64 is the message as standard base64, for binary bodies.
	BodyBase64 *string `json:"body_base64,omitempty"`
}

// BroadcastRequest is the body of POST /v1/broadcast; see SendRequest.
type BroadcastRequest struct {
	// Body is the message as text.
	Body *string `json:"body,omitempty"`
	// BodyBase64 is the message as standard base64, for binary bodies.
	BodyBase64 *string `json:"body_base64,omitempty"`
}

// SendResponse is the body of a 202 answer to POST /v1/send and
// POST /v1/broadcast. Accepted means queued: a message that then cannot be
// delivered is reported as a delivery-failed event on GET /v1/recv?events=1.
type SendResponse struct {
	// Accepted is always true in a 202 answer.
	Accepted bool `json:"accepted"`
	// To is the destination of a unicast.
	To *uuid.UUID `json:"to,omitempty"`
	// Reachable says whether the destination had a route when the message
	// was accepted (unicast only). A message to an unreachable node is still
	// accepted: a route may appear before its retries run out.
	Reachable *bool `json:"reachable,omitempty"`
	// Nodes is how many other nodes were reachable (broadcast only).
	Nodes *int `json:"nodes,omitempty"`
}

// ConnectRequest is the body of POST /v1/connect: open an edge to the node
// listening at Addr, a transport address such as "10.0.0.2:4242" for QUIC.
// Connect follows redirects from full nodes.
type ConnectRequest struct {
	// Addr is the transport address to dial.
	Addr string `json:"addr"`
}

// ConnectResponse is the body of a 200 answer to POST /v1/connect.
type ConnectResponse struct {
	// Connected is always true in a 200 answer.
	Connected bool `json:"connected"`
	// Neighbors are the node's neighbours after the connect.
	Neighbors []uuid.UUID `json:"neighbors"`
}

// Message is the data of a "message" event on GET /v1/recv: one message
// delivered to this node. Body is set when the bytes are valid UTF-8 (even
// empty), BodyBase64 otherwise.
type Message struct {
	// From is the sender's UUID.
	From uuid.UUID `json:"from"`
	// Broadcast says whether the message was broadcast.
	Broadcast bool `json:"broadcast"`
	// Index is the message's index in the sender's stream to this node
	// (or its broadcast stream).
	Index uint32 `json:"index"`
	// Body is the message as text, when it is valid UTF-8.
	Body *string `json:"body,omitempty"`
	// BodyBase64 is the message as standard base64, when it is not.
	BodyBase64 *string `json:"body_base64,omitempty"`
}

// Bytes returns the message body, decoding base64 when needed.
func (m Message) Bytes() ([]byte, error) {
	return decodeBody(m.Body, m.BodyBase64)
}

func messageOf(d node.Delivery) Message {
	m := Message{From: d.From, Broadcast: d.Broadcast, Index: d.Index}
	m.Body, m.BodyBase64 = encodeBody(d.Body)
	return m
}

// Event is the data of the node-event SSE types on GET /v1/recv?events=1:
// neighbor-up, neighbor-down, topology-changed, delivery-failed, connected,
// disconnected and redirected. Fields that do not apply to a kind are absent.
type Event struct {
	// Type is the event's kind, as its SSE event type.
	Type string `json:"type"`
	// Peer is the neighbour (neighbor-up/down), the destination
	// (delivery-failed) or the full node that redirected (redirected).
	Peer *uuid.UUID `json:"peer,omitempty"`
	// Addr is where a connection attempt was redirected to (redirected).
	Addr string `json:"addr,omitempty"`
	// Error is why a neighbour went down or a delivery failed.
	Error string `json:"error,omitempty"`
	// Broadcast, Index and the body describe a failed delivery.
	Broadcast bool `json:"broadcast,omitempty"`
	// Index is the failed message's index.
	Index *uint32 `json:"index,omitempty"`
	// Body is the failed message as text, when it is valid UTF-8.
	Body *string `json:"body,omitempty"`
	// BodyBase64 is the failed message as standard base64, when it is not.
	BodyBase64 *string `json:"body_base64,omitempty"`
}

func eventOf(e node.Event) Event {
	ev := Event{Type: e.Kind.String()}
	if e.Peer != uuid.Nil {
		p := e.Peer
		ev.Peer = &p
	}
	if e.Err != nil {
		ev.Error = e.Err.Error()
	}
	ev.Addr = e.Addr
	if e.Kind == node.DeliveryFailed {
		i := e.Index
		ev.Broadcast, ev.Index = e.Broadcast, &i
		ev.Body, ev.BodyBase64 = encodeBody(e.Body)
	}
	return ev
}

// Ready is the data of the "ready" event that opens every GET /v1/recv
// stream: from then on the stream receives what the node delivers.
type Ready struct {
	// ID is the node's UUID.
	ID uuid.UUID `json:"id"`
	// Events says whether the stream carries node events too.
	Events bool `json:"events"`
}

// Dropped is the data of a "dropped" event: Count messages or events were
// dropped from this stream because it read too slowly.
type Dropped struct {
	// Count is how many were dropped since the stream was last told.
	Count uint64 `json:"count"`
}

// Error is the body of every 4xx and 5xx answer.
type Error struct {
	// Error says what went wrong.
	Error string `json:"error"`
}

func encodeBody(b []byte) (text, b64 *string) {
	if utf8.Valid(b) {
		s := string(b)
		return &s, nil
	}
	s := base64.StdEncoding.EncodeToString(b)
	return nil, &s
}

func decodeBody(text, b64 *string) ([]byte, error) {
	switch {
	case text != nil && b64 != nil:
		return nil, errBothBodies
	case text != nil:
		return []byte(*text), nil
	case b64 != nil:
		b, err := base64.StdEncoding.DecodeString(*b64)
		if err != nil {
			return nil, errBadBase64
		}
		return b, nil
	}
	return nil, errNoBody
}
