package webrtc

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/pion/datachannel"
	"github.com/pion/webrtc/v4"

	"github.com/distrirender/distrirender/transport"
)

// conn is one peer connection: while it is set up (by dial or accept, on
// the goroutine that called them, its owner) and then as the carrier of its
// edge, until it is closed. A PeerJS DataConnection is one peer connection
// with one data channel.
type conn struct {
	t      *Transport
	key    connKey
	dialer bool
	ser    string
	log    *slog.Logger
	pc     *webrtc.PeerConnection // set by the owner before any callback

	answerc chan webrtc.SessionDescription // the ANSWER, for dial
	openc   chan openChannel               // the data channel, once open
	failc   chan struct{}                  // closed by fail
	err     error                          // why; set before failc is closed
	once    sync.Once

	mu          sync.Mutex
	descSent    bool                      // our OFFER or ANSWER went out
	localCands  []webrtc.ICECandidateInit // gathered before it did
	remoteSet   bool                      // the peer's description is set
	remoteCands []webrtc.ICECandidateInit // received before it was
	dc          *webrtc.DataChannel       // accepting: the peer's data channel
	edge        *Edge                     // once open
}

type openChannel struct {
	dc *webrtc.DataChannel
	rw datachannel.ReadWriteCloser
}

// newConn registers a connection under key; the caller owns it and must
// end with dial or accept, and abandon if they fail.
func (t *Transport) newConn(key connKey, dialer bool, ser string) (*conn, error) {
	c := &conn{
		t:       t,
		key:     key,
		dialer:  dialer,
		ser:     ser,
		log:     t.log.With("remote", key.peer, "connectionId", key.id),
		answerc: make(chan webrtc.SessionDescription, 1),
		openc:   make(chan openChannel, 1),
		failc:   make(chan struct{}),
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.edges.Closed() {
		return nil, t.errClosed("Dial")
	}
	if t.conns[key] != nil {
		return nil, fmt.Errorf("webrtc: connection %s from %s exists already", key.id, key.peer)
	}
	t.conns[key] = c
	return c, nil
}

// start makes the peer connection.
func (c *conn) start() error {
	pc, err := c.t.api.NewPeerConnection(c.t.pcConf)
	if err != nil {
		return fmt.Errorf("webrtc: new peer connection: %w", err)
	}
	c.pc = pc
	pc.OnICECandidate(c.localCandidate)
	pc.OnConnectionStateChange(c.stateChange)
	return nil
}

// dial offers a connection to the peer and waits for its data channel.
func (c *conn) dial(ctx context.Context) (*Edge, error) {
	if err := c.start(); err != nil {
		return nil, err
	}
	ordered := true
	dc, err := c.pc.CreateDataChannel(c.key.id, &webrtc.DataChannelInit{Ordered: &ordered})
	if err != nil {
		return nil, fmt.Errorf("webrtc: data channel: %w", err)
	}
	dc.OnOpen(func() { c.opened(dc) })
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		return nil, fmt.Errorf("webrtc: offer: %w", err)
	}
	if err := c.pc.SetLocalDescription(offer); err != nil {
		return nil, fmt.Errorf("webrtc: offer: %w", err)
	}
	reliable := true
	if err := c.signal(typeOffer, payload{
		SDP:           &sessionDescription{Type: "offer", SDP: offer.SDP},
		Type:          connData,
		ConnectionID:  c.key.id,
		Label:         c.key.id,
		Reliable:      &reliable,
		Serialization: c.ser,
	}); err != nil {
		return nil, fmt.Errorf("webrtc: dial %s: %w: %w", c.key.peer, transport.ErrUnreachable, err)
	}
	c.descriptionSent()
	for {
		select {
		case answer := <-c.answerc:
			answer.SDP = c.t.filterSDP(answer.SDP)
			if err := c.pc.SetRemoteDescription(answer); err != nil {
				return nil, fmt.Errorf("webrtc: dial %s: %w: the answer: %w", c.key.peer, transport.ErrUnreachable, err)
			}
			c.remoteDescriptionSet()
		case o := <-c.openc:
			return c.newEdge(o)
		case <-c.failc:
			return nil, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// accept answers an OFFER and waits for the peer's data channel.
func (c *conn) accept(ctx context.Context, offer webrtc.SessionDescription) (*Edge, error) {
	if err := c.start(); err != nil {
		return nil, err
	}
	c.pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		c.mu.Lock()
		first := c.dc == nil
		if first {
			c.dc = dc
		}
		c.mu.Unlock()
		if !first {
			// A PeerJS connection has one data channel; a second one is
			// not the transport's business.
			c.log.Info("closing a second data channel on a connection", "label", dc.Label())
			c.t.goTracked(func() { _ = dc.Close() })
			return
		}
		dc.OnOpen(func() { c.opened(dc) })
	})
	offer.SDP = c.t.filterSDP(offer.SDP)
	if err := c.pc.SetRemoteDescription(offer); err != nil {
		return nil, fmt.Errorf("webrtc: the offer: %w", err)
	}
	c.remoteDescriptionSet()
	answer, err := c.pc.CreateAnswer(nil)
	if err != nil {
		return nil, fmt.Errorf("webrtc: answer: %w", err)
	}
	if err := c.pc.SetLocalDescription(answer); err != nil {
		return nil, fmt.Errorf("webrtc: answer: %w", err)
	}
	if err := c.signal(typeAnswer, payload{
		SDP:          &sessionDescription{Type: "answer", SDP: answer.SDP},
		Type:         connData,
		ConnectionID: c.key.id,
	}); err != nil {
		return nil, err
	}
	c.descriptionSent()
	select {
	case o := <-c.openc:
		return c.newEdge(o)
	case <-c.failc:
		return nil, c.err
	case <-ctx.Done():
		return nil, fmt.Errorf("webrtc: no data channel within %v: %w", c.t.handshake, ctx.Err())
	}
}

// signal sends a message about this connection to the peer.
func (c *conn) signal(typ string, p payload) error {
	raw, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return c.t.sig.send(message{Type: typ, Dst: c.key.peer, Payload: raw})
}

// opened runs when the data channel is open, on a goroutine of pion's.
func (c *conn) opened(dc *webrtc.DataChannel) {
	rw, err := dc.Detach()
	if err != nil {
		c.fail(fmt.Errorf("webrtc: detaching the data channel: %w", err))
		return
	}
	select {
	case c.openc <- openChannel{dc, rw}:
	default:
	}
}

// newEdge makes the edge of the open data channel.
func (c *conn) newEdge(o openChannel) (*Edge, error) {
	e := newEdge(c, o.dc, o.rw)
	c.mu.Lock()
	c.edge = e
	c.mu.Unlock()
	if !c.t.track(e) {
		e.release()
		return nil, c.t.errClosed("Dial")
	}
	go e.readLoop()
	c.log.Debug("edge open", "serialization", e.ser, "ordered", e.ordered)
	return e, nil
}

// open reports whether the connection carries an edge.
func (c *conn) open() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.edge != nil
}

// fail ends the setting up of the connection with err (the first error
// wins). The owner sees it and abandons the connection.
func (c *conn) fail(err error) {
	c.once.Do(func() {
		c.err = err
		close(c.failc)
	})
}

// abandon closes a connection that did not become an edge.
func (c *conn) abandon() {
	c.fail(fmt.Errorf("webrtc: connection abandoned: %w", transport.ErrClosed))
	if c.pc != nil {
		_ = c.pc.GracefulClose()
	}
	c.t.forget(c, nil)
}

// stateChange watches the peer connection: a failure while it is set up
// fails the setting up; a failure of an edge's connection ends the edge.
func (c *conn) stateChange(s webrtc.PeerConnectionState) {
	if s != webrtc.PeerConnectionStateFailed && s != webrtc.PeerConnectionStateClosed {
		return
	}
	c.mu.Lock()
	e := c.edge
	c.mu.Unlock()
	if e == nil {
		c.fail(fmt.Errorf("webrtc: dial %s: %w: peer connection %s", c.key.peer, transport.ErrUnreachable, s))
		return
	}
	if s == webrtc.PeerConnectionStateFailed {
		e.broken()
	}
}

// localCandidate trickles a candidate to the peer, once the description it
// belongs to has gone out.
func (c *conn) localCandidate(cand *webrtc.ICECandidate) {
	if cand == nil {
		return // end of candidates: peerjs sends nothing for it either
	}
	init := cand.ToJSON()
	c.mu.Lock()
	if !c.descSent {
		if len(c.localCands) < maxEarlyCandidates {
			c.localCands = append(c.localCands, init)
		}
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.sendCandidate(init)
}

func (c *conn) sendCandidate(init webrtc.ICECandidateInit) {
	err := c.signal(typeCandidate, payload{
		Candidate: &candidate{
			Candidate:        init.Candidate,
			SDPMid:           init.SDPMid,
			SDPMLineIndex:    init.SDPMLineIndex,
			UsernameFragment: init.UsernameFragment,
		},
		Type:         connData,
		ConnectionID: c.key.id,
	})
	if err != nil {
		c.log.Debug("sending a candidate", "err", err)
	}
}

// descriptionSent sends the candidates gathered before the description.
func (c *conn) descriptionSent() {
	c.mu.Lock()
	c.descSent = true
	cands := c.localCands
	c.localCands = nil
	c.mu.Unlock()
	for _, init := range cands {
		c.sendCandidate(init)
	}
}

// answered hands the peer's ANSWER to dial.
func (c *conn) answered(answer webrtc.SessionDescription) {
	if !c.dialer {
		return
	}
	select {
	case c.answerc <- answer:
	default: // a second ANSWER
	}
}

// remoteCandidate adds a candidate from the peer, or keeps it until the
// peer's description is set.
func (c *conn) remoteCandidate(init webrtc.ICECandidateInit) {
	if !c.t.usable(init.Candidate) {
		c.log.Debug("ignoring a candidate outside the IP filter", "candidate", init.Candidate)
		return
	}
	c.mu.Lock()
	if !c.remoteSet {
		if len(c.remoteCands) < maxEarlyCandidates {
			c.remoteCands = append(c.remoteCands, init)
		}
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.addCandidate(init)
}

func (c *conn) addCandidate(init webrtc.ICECandidateInit) {
	if err := c.pc.AddICECandidate(init); err != nil {
		c.log.Debug("ignoring a candidate", "candidate", init.Candidate, "err", err)
	}
}

// remoteDescriptionSet adds the candidates received before it was.
func (c *conn) remoteDescriptionSet() {
	c.mu.Lock()
	c.remoteSet = true
	cands := c.remoteCands
	c.remoteCands = nil
	c.mu.Unlock()
	for _, init := range cands {
		c.addCandidate(init)
	}
}

// usable reports whether ICE may try the peer's candidate (an
// a=candidate value, with or without "candidate:"): its address must be an
// IP address that Config.IPFilter lets through. A host name (an mDNS .local
// name) is not: the transport does no multicast DNS. The peer's
// connectivity checks still reach the transport from such a candidate, and
// it answers them (a peer-reflexive candidate).
func (t *Transport) usable(cand string) bool {
	// foundation component transport priority address port typ type ...
	f := strings.Fields(strings.TrimPrefix(cand, "candidate:"))
	if len(f) < 8 {
		return true // not a candidate pion can use: let pion say so
	}
	ip := net.ParseIP(f[4])
	return ip != nil && t.ipFilter(ip)
}

// filterSDP removes from a session description the candidates usable
// rejects.
func (t *Transport) filterSDP(sdp string) string {
	if !strings.Contains(sdp, "a=candidate:") {
		return sdp
	}
	lines := strings.SplitAfter(sdp, "\n")
	kept := lines[:0]
	for _, l := range lines {
		if c, ok := strings.CutPrefix(strings.TrimRight(l, "\r\n"), "a="); ok && strings.HasPrefix(c, "candidate:") && !t.usable(c) {
			continue
		}
		kept = append(kept, l)
	}
	return strings.Join(kept, "")
}
