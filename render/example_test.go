package render_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/render"
	"github.com/distrirender/distrirender/transport/memory"
)

// Render a small frame of the built-in scene on this machine.
func ExampleRender() {
	job := render.Job{Width: 64, Height: 36, Samples: 4, Seed: 1} // Scene defaults to the scene's name
	img, err := render.Render(context.Background(), render.Default(), job)
	if err != nil {
		panic(err)
	}
	fmt.Println(img.Bounds())
	// Output: (0,0)-(64,36)
}

// Render a frame over a mesh: a coordinator and two workers on an in-memory
// network (use transport/quic for real machines). The frame is byte-identical
// to a single-node render.
func ExampleCoordinator() {
	ctx := context.Background()
	net := memory.NewNetwork(memory.Config{})
	defer net.Close()
	newNode := func(name string) *node.Node {
		tr, err := net.Listen(name)
		if err != nil {
			panic(err)
		}
		n, err := node.New(tr)
		if err != nil {
			panic(err)
		}
		return n
	}
	coord := newNode("coordinator")
	defer coord.Close()

	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	for _, name := range []string{"worker-1", "worker-2"} {
		n := newNode(name)
		defer n.Close()
		if err := n.Connect(ctx, "coordinator"); err != nil {
			panic(err)
		}
		w, err := render.NewWorker(n, render.WorkerConfig{})
		if err != nil {
			panic(err)
		}
		wg.Go(func() { _ = w.Run(wctx) })
	}

	c, err := render.NewCoordinator(coord, render.CoordinatorConfig{})
	if err != nil {
		panic(err)
	}
	job := render.Job{Scene: "default", Width: 64, Height: 36, Samples: 4, Seed: 1, TileSize: 16}
	img, rep, err := c.Run(ctx, job)
	if err != nil {
		panic(err)
	}
	single, _ := render.Render(ctx, render.Default(), job)
	fmt.Println(rep.Tiles, "tiles; identical to a single-node render:", bytes.Equal(img.Pix, single.Pix))
	// Output: 12 tiles; identical to a single-node render: true
}
