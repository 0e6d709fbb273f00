package core

import (
	"errors"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/reliability"
)

// Frame hands the Core a frame read from link, decoded as m; raw is the
// frame's bytes, which m aliases and which become the Core's (a relayed
// frame is edited in place and queued as it is). Frames from an edge that is
// no longer a neighbour's are ignored.
func (c *Core) Frame(now time.Time, link LinkID, m message.Message, raw []byte) {
	c.now = now
	c.stats.FramesIn++
	p := c.peers.byLink[link]
	if p == nil {
		return // an edge that was replaced, retired or dropped
	}
	p.lastRecv = now
	switch m.Header.Type {
	case message.TypeMsg, message.TypeAck, message.TypeMsgBroadcast:
	default:
		if !p.ctrlIn.take(now, ctrlLimit) {
			c.stats.RateLimited++
			return
		}
	}
	switch m.Header.Type {
	case message.TypeEntryRequest:
		c.members.onEntryRequest(c, p, m, raw)
		return
	case message.TypeEntryReply:
		if m.Header.Target != c.cfg.ID {
			c.forward(m, raw)
		} else {
			c.members.onEntryReply(c, p, m)
		}
		return
	case message.TypeMsg, message.TypeAck, message.TypeMsgBroadcast:
		c.onData(p, m, raw)
		return
	}
	if m.UID.Node != p.id {
		c.hostile(p.id, "control frame from another node's ID", nil)
		return
	}
	switch m.Header.Type {
	case message.TypeKeepalive:
	case message.TypeHello:
		if p.dialed || m.Header.Epoch != p.epoch || now.Sub(p.since) >= c.cfg.Handshake {
			c.hostile(p.id, "hello after the handshake", nil)
			return
		}
		// The dialler did not get the welcome (lost, or still on its way)
		// and says hello again, within its handshake: welcome it again.
		c.enqueue(p, c.control(message.TypeWelcome, uuid.Nil, 0, c.hello().Append(nil)), true)
	case message.TypeChallenge:
		if !p.dialed || now.Sub(p.since) >= c.cfg.Handshake {
			c.hostile(p.id, "challenge after the handshake", nil)
		}
		// A copy of the challenge this node answered before the welcome.
	case message.TypeWelcome:
		if !p.dialed {
			c.hostile(p.id, "welcome to a node that did not dial", nil)
		}
		// A duplicate of the welcome that opened this edge: nothing to do.
	case message.TypeGoodbye:
		// The body may name the leaver's other neighbours: a node left short
		// of neighbours tries them first.
		if len(m.Body) > 0 {
			if h, err := message.DecodeHello(m.Body); err == nil {
				c.members.addHints(c.now, h.Addrs)
			} else {
				c.hostile(p.id, "goodbye", err)
			}
		}
		c.dropPeer(p, ErrPeerLeft)
	case message.TypeNetworkState:
		sl, err := message.DecodeStateList(m.Body)
		if err != nil {
			c.hostile(p.id, "network_state", err)
			return
		}
		c.ls.applyStates(p, sl)
	case message.TypeNetworkStateRequest:
		req, err := message.DecodeStateRequest(m.Body)
		if err != nil {
			c.hostile(p.id, "network_state_request", err)
			return
		}
		if len(req) == 0 && !p.bulk.take(now, bulkLimit) {
			c.stats.RateLimited++
			return
		}
		c.ls.sendStates([]*peer{p}, c.rt.States(req))
	case message.TypeNetworkStateDigest:
		if !p.bulk.take(now, bulkLimit) {
			c.stats.RateLimited++
			return
		}
		d, err := message.DecodeDigest(m.Body)
		if err != nil {
			c.hostile(p.id, "network_state_digest", err)
			return
		}
		c.ls.onDigest(p, d)
	case message.TypeNewEdge, message.TypeDestroyEdge:
		ch, err := message.DecodeEdgeChange(m.Body)
		if err != nil {
			c.hostile(p.id, m.Header.Type.String(), err)
			return
		}
		c.ls.applyEdgeChange(p, m.Header.Type, ch)
	default: // hello, welcome, reject after the handshake
		c.hostile(p.id, "unexpected "+m.Header.Type.String(), nil)
	}
}

// onData handles msg, ack and msg_broadcast frames: relayed, flooded, or
// this node's.
func (c *Core) onData(p *peer, m message.Message, raw []byte) {
	if m.UID.Node == c.cfg.ID {
		if m.Header.Type != message.TypeMsgBroadcast || m.Header.Target != uuid.Nil {
			c.hostile(p.id, "data claiming to come from this node", nil)
		}
		return // our own flood coming back
	}
	switch {
	case m.Header.Type == message.TypeMsgBroadcast && m.Header.Target == uuid.Nil:
		c.onFlood(p, m, raw)
		return
	case m.Header.Target != c.cfg.ID:
		c.forward(m, raw)
		return
	}
	if c.sealer != nil {
		if err := c.sealer.open(c, &m, raw); errors.Is(err, errNoKey) {
			c.stats.DroppedNoRoute++ // as for data from a node not known yet
			return
		} else if err != nil {
			c.hostile(p.id, "data frame", err)
			return
		}
	}
	switch {
	case m.Header.Type == message.TypeAck:
		c.streams.onAck(p, m)
	default:
		c.streams.onData(p, m, m.Header.Type == message.TypeMsgBroadcast, m.Body)
	}
}

// forward relays a frame addressed to another node.
func (c *Core) forward(m message.Message, raw []byte) {
	if !message.DecrementHopLimit(raw) {
		c.stats.DroppedHopLimit++
		return
	}
	c.stats.Forwarded++
	p := c.nextHop(m.Header.Target)
	if p == nil {
		c.stats.DroppedNoRoute++
		return
	}
	if m.Header.Type == message.TypeMsg && c.crowded(p) {
		// Tell the source before the queue drops (its ack echoes it).
		message.MarkCongestion(raw)
	}
	if c.send(p, m.Header.Target, raw, m.Header.Type == message.TypeAck) {
		c.relayed(raw)
	}
}

// onFlood handles a flooded broadcast: deliver once, re-flood once.
func (c *Core) onFlood(from *peer, m message.Message, raw []byte) {
	if !c.rt.Known(m.UID.Node) {
		return // we could not acknowledge it; the origin repairs later
	}
	if c.sealer != nil {
		if err := c.sealer.openFlood(c, &m, raw); errors.Is(err, errNoKey) {
			return // as for an unknown origin
		} else if err != nil {
			c.hostile(from.id, "broadcast", err)
			return
		}
	}
	// The frame is shared with the writers that re-flood it, so the
	// application gets its own copy of the body.
	if c.streams.onData(from, m, true, slices.Clone(m.Body)) != reliability.Accepted {
		return
	}
	if !message.DecrementHopLimit(raw) {
		return
	}
	c.stats.Forwarded += uint64(c.flood(from, raw, false))
}
