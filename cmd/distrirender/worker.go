package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/distrirender/distrirender/render"
)

func cmdWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("distrirender worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var m meshFlags
	m.register(fs, "`ADDR` to listen on (default 0.0.0.0:0: every interface, a port the system picks; give a fixed port to the first node, that the others join)")
	var of opsFlags
	of.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := m.validate(); err != nil {
		return err
	}
	if err := of.validate(); err != nil {
		return err
	}
	if m.transport == transportMemory {
		return usagef("the memory transport exists only inside one process: a worker needs quic, libp2p or webrtc")
	}
	log := newLogger(stderr, m.verbose, slog.LevelInfo)
	opsLn, err := listenOps(of.metrics)
	if err != nil {
		return err
	}
	if opsLn != nil {
		defer opsLn.Close() // if the worker fails before serving on it
	}
	spec, stopSignal, err := m.clusterSpec(stderr, log)
	if err != nil {
		return err
	}
	defer stopSignal()
	n, err := newNode(ctx, spec, log)
	if err != nil {
		return err
	}
	defer n.Close()
	fmt.Fprintf(stderr, "worker %s listening on %s\n", n.ID(), spec.describe(n))
	// Made before joining, so that /readyz answers while it joins.
	w, err := render.NewWorker(n, render.WorkerConfig{Slots: m.slots, Logger: log})
	if err != nil {
		return err
	}
	if opsLn != nil {
		octx, stopOps := context.WithCancel(ctx)
		wait := serveOps(octx, opsLn, of.pprof, n, w, m.join != "")
		fmt.Fprintf(stderr, "metrics on http://%s/metrics\n", opsLn.Addr())
		defer func() {
			stopOps()
			wait()
		}()
	}
	if m.join != "" {
		if err := join(ctx, n, m.join, 0, log); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "joined %s\n", m.join)
		jctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { stayJoined(jctx, n, m.join, log) })
		defer func() {
			cancel()
			wg.Wait()
		}()
	}
	err = w.Run(ctx)
	st := w.Stats()
	fmt.Fprintf(stdout, "worker %s: %d jobs, %d tiles, %v rendering\n", short(n.ID().String()), st.Jobs, st.Tiles, st.Render.Round(time.Millisecond))
	if ctx.Err() != nil {
		return nil // SIGINT or SIGTERM: a clean shutdown
	}
	return err
}
