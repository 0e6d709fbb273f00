package node_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/transport/memory"
)

// Three nodes in a line on the in-memory transport: a message from the first
// reaches the last through the middle one, and a broadcast reaches everyone.
func Example() {
	net := memory.NewNetwork(memory.Config{Seed: 1})
	defer net.Close()
	var nodes []*node.Node
	for _, addr := range []string{"a", "b", "c"} {
		tr, err := net.Listen(addr)
		if err != nil {
			panic(err)
		}
		n, err := node.New(tr)
		if err != nil {
			panic(err)
		}
		defer n.Close()
		nodes = append(nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, b, c := nodes[0], nodes[1], nodes[2]
	if err := a.Connect(ctx, "b"); err != nil {
		panic(err)
	}
	if err := b.Connect(ctx, "c"); err != nil {
		panic(err)
	}
	// No need to wait for a's route to c: until link state brings it (in a
	// few milliseconds), the message is held, then sent.
	if err := a.Send(ctx, c.ID(), []byte("hello over two hops")); err != nil {
		panic(err)
	}
	d, err := c.Receive(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Printf("c got %q from a: %v\n", d.Body, d.From == a.ID())
	d.Release() // optional: the body's memory goes back to c for reuse

	if err := c.Broadcast(ctx, []byte("to everyone")); err != nil {
		panic(err)
	}
	for _, n := range []*node.Node{a, b} {
		d, err := n.Receive(ctx)
		if err != nil {
			panic(err)
		}
		fmt.Printf("broadcast %q from c: %v\n", d.Body, d.From == c.ID() && d.Broadcast)
	}
	// Output:
	// c got "hello over two hops" from a: true
	// broadcast "to everyone" from c: true
	// broadcast "to everyone" from c: true
}

// A closed cluster: members hold the same secret (here read from code; in
// production from a file readable by the node's user only). A node without
// it is refused on both sides with ErrAuth.
func ExampleWithClusterSecrets() {
	net := memory.NewNetwork(memory.Config{Seed: 1})
	defer net.Close()
	secret := []byte("32 random bytes shared by members")
	start := func(addr string, opts ...node.Option) *node.Node {
		tr, err := net.Listen(addr)
		if err != nil {
			panic(err)
		}
		n, err := node.New(tr, opts...)
		if err != nil {
			panic(err)
		}
		return n
	}
	a := start("a", node.WithClusterSecrets(secret))
	defer a.Close()
	b := start("b", node.WithClusterSecrets(secret))
	defer b.Close()
	outsider := start("x")
	defer outsider.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println("member joins:", b.Connect(ctx, "a") == nil)
	fmt.Println("outsider refused:", errors.Is(outsider.Connect(ctx, "a"), node.ErrAuth))
	// Output:
	// member joins: true
	// outsider refused: true
}
