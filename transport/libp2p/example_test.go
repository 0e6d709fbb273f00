package libp2p_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/transport/libp2p"
)

func Example() {
	ctx := context.Background()
	// Each transport makes its own host, on loopback QUIC and TCP.
	alice, err := libp2p.New(libp2p.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	bob, err := libp2p.New(libp2p.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()

	// An address such as /ip4/127.0.0.1/udp/40123/quic-v1/p2p/12D3KooW...
	toBob, err := alice.Dial(ctx, bob.Addrs()[0])
	if err != nil {
		log.Fatal(err)
	}
	defer toBob.Close()
	fromAlice, err := bob.Accept(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer fromAlice.Close()

	_ = toBob.Send(ctx, []byte("tile 7 of 64"))
	frame, _ := fromAlice.Receive(ctx)
	fmt.Printf("%s\n", frame)
	// The link's identity is the dialler's peer ID, proven by the handshake.
	fmt.Println(fromAlice.(*libp2p.Edge).RemotePeer() == alice.Host().ID())
	// Output:
	// tile 7 of 64
	// true
}

// Two mesh nodes over libp2p: the node's UUID is its mesh address, the
// transport's multiaddr only says where to connect.
func Example_node() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	newNode := func() *node.Node {
		tr, err := libp2p.New(libp2p.Config{})
		if err != nil {
			log.Fatal(err)
		}
		n, err := node.New(tr) // the node owns tr: Close closes it
		if err != nil {
			log.Fatal(err)
		}
		return n
	}
	renderer, worker := newNode(), newNode()
	defer renderer.Close()
	defer worker.Close()

	if err := worker.Connect(ctx, renderer.Addrs()[0]); err != nil {
		log.Fatal(err)
	}
	if err := worker.Send(ctx, renderer.ID(), []byte("tile 7 done")); err != nil {
		log.Fatal(err)
	}
	d, err := renderer.Receive(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s (from the worker: %v)\n", d.Body, d.From == worker.ID())
	// Output: tile 7 done (from the worker: true)
}

// A node that finds its neighbours on the LAN by mDNS, without a single
// address configured.
func ExampleAutoConnect() {
	tr, err := libp2p.New(libp2p.Config{
		ListenAddrs: []string{"/ip4/0.0.0.0/udp/4242/quic-v1", "/ip4/0.0.0.0/tcp/4242"},
		MDNS:        true,
	})
	if err != nil {
		log.Fatal(err)
	}
	n, err := node.New(tr)
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go libp2p.AutoConnect(ctx, n, tr)

	for e := range n.Events() {
		if e.Kind == node.Connected {
			fmt.Println("joined the mesh through", e.Peer)
			break
		}
	}
}
