package memory_test

import (
	"context"
	"fmt"
	"time"

	"github.com/distrirender/distrirender/transport/memory"
)

func Example() {
	ctx := context.Background()
	// Seed the network so that its faults can be replayed.
	net := memory.NewNetwork(memory.Config{Seed: 42})
	defer net.Close()
	net.SetFaults("alice", "bob", memory.Faults{Delay: time.Millisecond})

	alice, _ := net.Listen("alice")
	bob, _ := net.Listen("bob")

	toBob, err := alice.Dial(ctx, "bob")
	if err != nil {
		panic(err)
	}
	fromAlice, _ := bob.Accept(ctx)

	_ = toBob.Send(ctx, []byte("tile 7 of 64"))
	frame, _ := fromAlice.Receive(ctx)
	fmt.Printf("%s -> %s: %s\n", fromAlice.RemoteAddr(), fromAlice.LocalAddr(), frame)
	// Output: alice -> bob: tile 7 of 64
}
