package webrtc_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/distrirender/distrirender/transport/webrtc"
)

func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A PeerServer of our own on the loopback (the npm peer server would
	// do as well).
	signal, err := webrtc.NewSignalServer(webrtc.SignalConfig{})
	if err != nil {
		panic(err)
	}
	defer signal.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: signal}
	go srv.Serve(ln)
	defer srv.Close()
	server := "http://" + ln.Addr().String() + "/"

	// Two transports, addressed by their PeerJS IDs. ICE stays on the
	// loopback by default.
	alice, err := webrtc.New(ctx, webrtc.Config{Server: server, ID: "alice"})
	if err != nil {
		panic(err)
	}
	defer alice.Close()
	bob, err := webrtc.New(ctx, webrtc.Config{Server: server, ID: "bob"})
	if err != nil {
		panic(err)
	}
	defer bob.Close()

	toBob, err := alice.Dial(ctx, "bob")
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
	fmt.Printf("%s from %s\n", frame, fromAlice.RemoteAddr())
	// Output: tile 7 of 64 from alice
}
