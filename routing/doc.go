// Package routing is the mesh's link-state routing core: a database of every
// node's link-state record and the next-hop table computed from it.
//
// The package is pure and deterministic in the style of etcd's raft core: a
// Table starts no goroutines, does no I/O, reads no clock and logs nothing.
// Every method that depends on time takes the current time as an argument,
// and everything the caller must send is returned, never sent. Given the same
// sequence of calls a Table produces the same results, including tie-breaks.
// A Table is not safe for concurrent use: the node's single event loop owns it.
//
// # Records
//
// Each node originates one record (message.State): its neighbours, its
// dialable addresses and its free connection slots, stamped with an epoch (the
// node's incarnation, a UnixNano timestamp taken at start) and a sequence
// number that increases with every change within the epoch. Records are
// ordered by (epoch, seq): a larger epoch always wins, so a restarted node is
// never mistaken for an old one. Incremental changes travel as
// message.EdgeChange (new_edge / destroy_edge) and apply only on top of the
// exact predecessor sequence; otherwise the verdict is Gap and the caller asks
// for the full record with network_state_request.
//
// # Caller's duties
//
// The node that owns a Table must:
//
//   - flood what the local methods return (AddNeighbor, RemoveNeighbor,
//     SetLocal, Refresh) to every neighbour;
//   - re-flood every remote record or change whose verdict is Accepted to every
//     neighbour except the one it came from, and drop the rest;
//   - answer Gap with a network_state_request for that origin, sent to the
//     neighbour the change came from;
//   - send a network_state_request (empty: the whole database) over every new
//     edge, not only on join: the two ends may have been in different
//     partitions, and only this exchange (plus re-flooding what is Accepted)
//     merges their databases before the next refreshes;
//   - answer network_state_request with States, split over as many
//     network_state messages as the frame size and message.MaxStates need;
//   - call Refresh and Expire when NextDeadline passes (one timer in its loop);
//   - never call AddNeighbor with its own UUID or uuid.Nil (the handshake must
//     refuse such peers): those calls panic.
//
// docs/PROTOCOL.md (Part 3) describes the state machine for implementers of
// other nodes.
//
// # Routes
//
// An edge (a, b) is used only when a's record lists b and b's record lists a.
// Routes are shortest paths by hop count from the local node (breadth-first
// search, O(V+E)); the next hop towards a destination is the neighbour with the
// lowest UUID (byte order) among all first hops of shortest paths. Routes are
// recomputed lazily by the first query after a change to some record's
// neighbour list.
package routing
