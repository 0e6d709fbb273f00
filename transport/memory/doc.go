// Package memory is an in-process transport: a simulated network of named
// addresses connected by Go channels, with fault injection for tests and
// simulation.
//
// A Network holds listeners by name. Each Transport returned by
// Network.Listen dials the others by name and accepts their edges; it
// implements transport.Transport. Frames are copied on Send and passed whole
// to the other side.
//
// # Faults
//
// Every link (the unordered pair of two addresses) has Faults: loss,
// duplication, reordering, delay and jitter. Config.Faults is the default for
// every link and Network.SetFaults overrides it for one link, for the edges
// that exist now and the ones dialled later. Cut, Partition, Heal and Kill
// model broken links, split networks and crashed nodes: in each case the
// affected edges go silent without either side seeing a close, as on a real
// network, so failure detection above the transport is exercised.
//
// With zero Faults a link is FIFO and lossless and a Send is a copy plus a
// channel send: no timer, no goroutine. A link with Delay, Jitter or Reorder
// gets one delivery goroutine per edge direction, started by the first Send
// that needs it and stopped when the edge closes; it holds at most
// Config.QueueLen frames in flight, so flow control still reaches the sender.
//
// # Reproducibility
//
// Fault decisions come from a random number generator per edge direction,
// seeded from the network seed (Config.Seed, reported by Network.Seed), the
// sending and receiving addresses, and the ordinal of the edge among the edges
// dialled from the same address to the same address (the first, second, ...).
// Every frame consumes the same number of draws. So for a given seed, and a
// given order of Dials and of frames on an edge, the sequence of faults on that
// edge is the same on every run. What is not reproducible is the interleaving
// of goroutines across edges and, with Delay or Jitter, the real time at which
// timers fire; a test that needs those fixed too can run the network inside a
// testing/synctest bubble, where time is virtual. Log the seed in every
// seeded test so that a failing run can be replayed.
//
// # Flow control and buffers
//
// Each edge direction buffers up to Config.QueueLen frames for the receiver,
// plus up to twice as many in the delivery goroutine of a timed link. Send
// blocks while that buffer is full, until there is room, ctx ends, or the edge
// closes. Frames sent to a killed peer, or over a cut or partitioned link, are
// discarded without blocking: the sender cannot tell.
package memory
