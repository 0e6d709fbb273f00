package routing_test

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/routing"
)

// A three-node line a - b - c, seen from a. In a node, the states and edge
// changes would arrive in network_state, new_edge and destroy_edge messages
// and every Accepted one would be re-flooded.
func Example() {
	a := uuid.MustParse("aaaaaaaa-0000-4000-8000-000000000000")
	b := uuid.MustParse("bbbbbbbb-0000-4000-8000-000000000000")
	c := uuid.MustParse("cccccccc-0000-4000-8000-000000000000")
	now := time.Unix(1_700_000_000, 0)
	epoch := uint64(now.UnixNano())

	tab := routing.New(a, epoch, now, routing.Config{})
	edge := tab.AddNeighbor(now, b, 9) // flood this new_edge to every neighbour
	fmt.Println("a originated seq", edge.Seq)

	// b's and c's records, as a network_state answer from b.
	for _, s := range []message.State{
		{Origin: b, Epoch: epoch, Seq: 4, Neighbors: []uuid.UUID{a, c}},
		{Origin: c, Epoch: epoch, Seq: 7, Neighbors: []uuid.UUID{b}},
	} {
		v, err := tab.ApplyState(now, s)
		fmt.Println("state from", s.Origin.String()[:1], v, err)
	}
	v, _ := tab.ApplyState(now, message.State{Origin: c, Epoch: epoch, Seq: 7, Neighbors: []uuid.UUID{b}})
	fmt.Println("the same again:", v)

	hop, _ := tab.NextHop(c)
	dist, _ := tab.Distance(c)
	fmt.Println("to c via", hop.String()[:1], "in", dist, "hops; diameter", tab.Topology().Diameter())

	// c skips a sequence number: ask b for c's full record.
	v, _ = tab.ApplyEdgeChange(now, false, message.EdgeChange{Origin: c, Epoch: epoch, Seq: 9, Peer: b})
	fmt.Println("destroy_edge seq 9:", v)

	// Nothing more is heard for MaxAge: both records age out.
	fmt.Println("expired", len(tab.Expire(now.Add(90*time.Second))), "records; reachable", len(tab.Reachable()))
	// Output:
	// a originated seq 2
	// state from b accepted <nil>
	// state from c accepted <nil>
	// the same again: duplicate
	// to c via b in 2 hops; diameter 2
	// destroy_edge seq 9: gap
	// expired 2 records; reachable 0
}
