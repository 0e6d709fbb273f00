package core

import "time"

// ackDelay bounds how long the acknowledgement of a lone delivery waits for
// the application's reply, so that both go to the writer in one batch: a
// request answered at once then costs the two nodes one write and one read
// fewer per round trip (BenchmarkRoundTrip: about 3 µs of 25 on the memory
// transport). It is far below any retransmission timeout (MinRTO 20 ms).
const ackDelay = 200 * time.Microsecond

// holdAcks reports whether Ready should leave the acknowledgements due for
// now: when this batch delivered exactly one message, on the only stream
// with an ack due; then, while they have waited less than ackDelay and
// nothing else is to be written or delivered. Several deliveries, or
// several streams, are acknowledged at once (a stream of messages must not
// wait: its window would stall).
func (c *Core) holdAcks() bool {
	ss := &c.streams
	if len(ss.ackDue) == 0 {
		c.ackHeld = time.Time{}
		return false
	}
	if !c.ackHeld.IsZero() {
		if c.now.Sub(c.ackHeld) < ackDelay && len(ss.ackDue) == 1 && len(c.out.Deliveries) == 0 && !c.peers.queued() {
			return true // still waiting, and nothing else came
		}
		c.ackHeld = time.Time{} // the reply (or anything else) goes now: the ack with it
		return false
	}
	if len(ss.ackDue) == 1 && len(c.out.Deliveries) == 1 {
		c.ackHeld = c.now
		return true
	}
	return false
}

// ackDeadline adds the end of an acknowledgement's wait to d.
func (c *Core) ackDeadline(d time.Time) time.Time {
	if c.ackHeld.IsZero() {
		return d
	}
	return minTime(d, c.ackHeld.Add(ackDelay))
}

// queued reports whether a frame waits for a writer.
func (ps *peers) queued() bool {
	for _, p := range ps.list {
		if p.ctrl.Len()+p.data.Len() > 0 {
			return true
		}
	}
	return false
}
