package queue_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/distrirender/distrirender/queue"
)

func Example() {
	ctx := context.Background()
	inbound := queue.New[string](2)

	// The node delivers; Push would block while the application lags behind.
	_ = inbound.Push(ctx, "tile 1")
	_ = inbound.Push(ctx, "tile 2")
	fmt.Println("room for another:", inbound.TryPush("tile 3"))
	inbound.Close()

	// The application drains what was delivered before Close.
	for {
		msg, err := inbound.Pop(ctx)
		if errors.Is(err, queue.ErrClosed) {
			break
		}
		fmt.Println(msg)
	}
	// Output:
	// room for another: false
	// tile 1
	// tile 2
}

func ExampleRing() {
	backlog := queue.NewRing[string](2)
	fmt.Println(backlog.Push("a"), backlog.Push("b"), backlog.Push("c"))
	for {
		v, ok := backlog.Pop()
		if !ok {
			break
		}
		fmt.Println(v)
	}
	// Output:
	// true true false
	// a
	// b
}
