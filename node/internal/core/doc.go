// Package core is a mesh node's whole protocol as a deterministic state
// machine: neighbours and admission, keepalives and failure detection,
// forwarding, flooding, link state, reliable streams and acknowledgements,
// entry points, balancing and redials. It is the node package's engine, in
// the style of etcd raft's RawNode: no goroutines, no channels, no clock, no
// transport, no randomness of its own (Config.Rand). The same inputs at the
// same times give the same outputs, so the node's driver runs it in real time
// and the simulator (internal/sim) runs hundreds of them in virtual time.
//
// # The caller's duties
//
// One goroutine owns a Core. It:
//
//   - feeds it inputs with the current time: Frame (a decoded frame read from
//     an edge), EdgeFailed, WriteDone, Send and Cancel, SetRoom, DialDone,
//     and Tick once Deadline has passed; Admit and Register are the two
//     halves of a handshake and answer at once, as do the queries (Hello,
//     Neighbors, Topology, Stats);
//   - after a batch of inputs, calls Ready and carries out everything in it,
//     in this order: Writes (frames for one edge each, to be written in order
//     as one batch; then WriteDone), Close (edges to close at once),
//     Deliveries (to the application's inbound queue, in order), Answers (send
//     requests accepted or refused), Events, EntryAnswers (for handshakes that
//     Admit told to wait), Dials (connections to open; then DialDone) and
//     Free (frames of send requests, and relayed frames, that nothing refers
//     to any more, with Config.ReuseFrom: their memory may be reused); then
//     calls Advance;
//   - keeps one timer at Deadline, recomputed after every Advance.
//
// Frames in a Ready are shared: the same slice may go to several edges (a
// flood), so a writer must not modify or retain them after WriteDone. A
// Frame's bytes become the Core's: a relayed frame is edited in place and
// queued as it is.
//
// A Core gives an edge at most one Write at a time: the next comes after the
// WriteDone for the previous one. Frames wait in a bounded queue per
// neighbour meanwhile (control frames first); a full data queue drops the
// frame (Stats.DroppedForward), and end-to-end retransmission recovers it.
//
// Deliveries respect the room the caller last reported with SetRoom: a
// stream whose next message finds no room waits, unacknowledged, until
// SetRoom reports room again (Blocked says whether one waits).
//
// Remote input never panics a Core: whatever a neighbour sends that is
// malformed or invalid is counted (Stats.Hostile) and logged with thinning.
//
// docs/ARCHITECTURE.md shows where the Core sits, and docs/PROTOCOL.md is the
// protocol it speaks.
package core
