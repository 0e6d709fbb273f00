package quic_test

import (
	"context"
	"fmt"
	"time"

	"github.com/distrirender/distrirender/transport/quic"
)

func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Two transports on the loopback, each with a fresh self-signed
	// certificate (nothing is authenticated by default).
	alice, err := quic.Listen("127.0.0.1:0", quic.Config{})
	if err != nil {
		panic(err)
	}
	defer alice.Close()
	bob, err := quic.Listen("127.0.0.1:0", quic.Config{})
	if err != nil {
		panic(err)
	}
	defer bob.Close()

	toBob, err := alice.Dial(ctx, bob.Addrs()[0])
	if err != nil {
		panic(err)
	}
	defer toBob.Close()
	fromAlice, err := bob.Accept(ctx)
	if err != nil {
		panic(err)
	}
	defer fromAlice.Close()
	if err := toBob.Send(ctx, []byte("tile 7 of 64")); err != nil {
		panic(err)
	}
	frame, err := fromAlice.Receive(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s\n", frame)
	// Output: tile 7 of 64
}
