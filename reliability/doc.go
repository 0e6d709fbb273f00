// Package reliability is the mesh's end-to-end selective repeat: exactly-once,
// in-order delivery over a network that loses, duplicates, reorders and
// delays messages, with the sender told about every message it gives up on.
//
// A stream is one sender's sequence of messages. A node keeps one Sender per
// unicast destination and one for its broadcast stream (whose messages are
// addressed to every node it knows), and one Receiver per (origin, stream).
// Both kinds use the same code: a message has a set of targets and leaves the
// sender's window once each target has acknowledged it or failed.
//
// Indexes run modulo Config.Modulo (default 10,000); at most Config.Window
// (default 10) messages are in flight. Every data packet carries its index
// and the sender's window base; every acknowledgement carries the receiver's
// cumulative point (advanced only as the application pops messages, so a
// slow application applies back-pressure) and a SACK bitmap of what is
// buffered beyond it. Retransmission timeouts follow RFC 6298 per target,
// with Karn's rule and exponential backoff; after Config.MaxRetries
// retransmissions a copy fails and Tick reports it.
//
// The package is a pure state machine in the style of etcd raft and quic-go's
// ackhandler: no goroutines, no I/O, no clock (the time is an argument), no
// logging, no globals. Methods return what should be sent instead of sending
// it, and Sender.Deadline is the one timer the caller's event loop needs.
// Neither type is safe for concurrent use: one event loop owns them.
//
// The caller (the node's event loop):
//
//   - before taking a message off the outbound queue, checks Sender.Full;
//     Push returns the Packet to transmit (index as the UID index, Base in
//     the header's Ref, the node's epoch in the header);
//   - on a data packet calls Receiver.OnData; unless the verdict is Stale or
//     Invalid, sends Receiver.Ack to the origin (UID index -1); pops messages
//     while the inbound queue has room and, if it popped any, sends Ack again;
//   - on an ack calls Sender.OnAck with the node it came from, and ignores
//     the errors (they only say why the ack changed nothing);
//   - keeps one timer at Sender.Deadline (the earliest over all its senders),
//     calls Tick when it fires, sends the Retransmits (to their Target only)
//     and reports the Failures to the application;
//   - calls AddTarget / RemoveTarget on the broadcast sender as nodes appear
//     and disappear, and RemoveTarget (or drops the Sender after FailAll) when
//     a unicast destination is gone, or when Stuck (checked after each Tick)
//     names it: it held the window back for the whole retry budget.
//
// docs/PROTOCOL.md (Part 4) specifies the state machines.
package reliability
