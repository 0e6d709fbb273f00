package meshapi_test

import (
	"context"
	"fmt"
	"time"

	"github.com/distrirender/distrirender/meshapi"
)

// A program that talks to the meshnode daemon on this machine: its status,
// a message to the farthest node, and what arrives.
func ExampleClient() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := meshapi.NewClient("127.0.0.1:7070")
	st, err := cl.Status(ctx)
	if err != nil {
		fmt.Println(err) // no meshnode runs here
		return
	}
	fmt.Printf("node %s: %d neighbours, %d of %d nodes reachable\n", st.ID, len(st.Neighbors), st.Reachable, st.Known)

	tp, err := cl.Topology(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	far := tp.Nodes[0]
	for _, n := range tp.Nodes {
		if n.Distance > far.Distance {
			far = n
		}
	}
	if _, err := cl.Send(ctx, far.ID.String(), []byte("hello")); err != nil {
		fmt.Println(err)
	}

	// Print what arrives until ctx ends.
	_ = cl.Stream(ctx, false, func(ev meshapi.StreamEvent) error {
		fmt.Println(ev.Type, string(ev.Data))
		return nil
	})
}
