package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"image/png"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/rtcsetup"
	"github.com/distrirender/distrirender/meshapi"
	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/render"
	"github.com/distrirender/distrirender/transport/memory"
)

// Defaults of the render command: on two idle cores of a Xeon server the
// embedded mesh renders this frame in about 11 seconds, as fast as
// render.Render on one node (docs/RENDER.md, Performance).
const (
	defaultWidth   = 960
	defaultHeight  = 540
	defaultSamples = 64
	defaultTile    = 32
	defaultWorkers = 3
	maxWorkers     = 64
	// defaultJoinTimeout bounds joining a cluster: a live node on a LAN
	// answers within milliseconds, and a dead address should not keep the
	// user waiting long.
	defaultJoinTimeout = 5 * time.Second
)

type renderOpts struct {
	meshFlags
	job        render.Job
	out        string
	workers    int
	localSlots int
	progress   string
	// joinTimeout bounds joining a cluster through --join.
	joinTimeout time.Duration
}

func cmdRender(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("distrirender render", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o renderOpts
	o.register(fs, "`ADDR` to listen on as the coordinator of a LAN cluster (default 0.0.0.0:0 with --join); without --join, --listen, --signal and --serve-signal the mesh is embedded")
	fs.IntVar(&o.job.Width, "width", defaultWidth, "frame width in pixels")
	fs.IntVar(&o.job.Height, "height", defaultHeight, "frame height in pixels")
	fs.IntVar(&o.job.Samples, "samples", defaultSamples, "samples (paths) per pixel")
	fs.IntVar(&o.job.Depth, "depth", render.DefaultDepth, "most bounces per path")
	fs.IntVar(&o.job.TileSize, "tile", defaultTile, "tile side in pixels")
	seed := fs.Uint64("seed", 1, "seed of the pixels' random numbers")
	fs.StringVar(&o.job.Scene, "scene", render.DefaultSceneName, "`NAME` of the scene")
	fs.StringVar(&o.out, "out", "frame.png", "`PATH` of the PNG to write")
	fs.IntVar(&o.workers, "workers", defaultWorkers, "worker nodes of the embedded mesh, besides the coordinator")
	fs.IntVar(&o.localSlots, "local-slots", 0, "tiles the coordinator's own node renders at once besides handing them out (0: it only coordinates)")
	fs.StringVar(&o.progress, "progress", "auto", "progress bar on stderr: auto (if it is a terminal), on or off")
	fs.DurationVar(&o.joinTimeout, "join-timeout", defaultJoinTimeout, "how long to try joining the cluster through --join before giving up")
	if err := parse(fs, args); err != nil {
		return err
	}
	o.job.Seed = *seed
	if err := o.validate(); err != nil {
		return err
	}
	if err := o.job.Validate(); err != nil {
		return usageError{error: err}
	}
	if _, err := render.Lookup(o.job.Scene); err != nil {
		return usageError{error: err}
	}
	embedded := o.join == "" && !o.set("listen") && !o.set("signal") && !o.set("serve-signal")
	switch {
	case o.workers < 0 || o.workers > maxWorkers:
		return usagef("--workers %d: want 0 to %d", o.workers, maxWorkers)
	case o.localSlots < 0 || o.localSlots > render.MaxSlots:
		return usagef("--local-slots %d: want 0 to %d", o.localSlots, render.MaxSlots)
	case embedded && o.workers == 0 && o.localSlots == 0:
		return usagef("nobody would render: give --workers or --local-slots")
	case !embedded && o.set("workers"):
		return usagef("--workers is for the embedded mesh; a cluster's workers are started with \"distrirender worker\"")
	case !embedded && o.transport == transportMemory:
		return usagef("the memory transport exists only inside one process: use it without --join and --listen")
	case embedded && o.set("name"):
		return usagef("--name is for a cluster node (with --join, --listen, --signal or --serve-signal): the embedded mesh names its nodes coordinator, worker-1...")
	case embedded && (o.set("peer-id") || o.set("ice-net") || o.set("signal-key") || o.set("stun") || o.set("turn") || o.set("turn-user") || o.set("turn-password")):
		return usagef("--peer-id, --ice-net, --signal-key, --stun and --turn are for a webrtc cluster node (with --join, --signal or --serve-signal): the embedded mesh names its nodes and stays on loopback")
	}
	switch o.progress {
	case "auto", "on", "off":
	default:
		return usagef("--progress %q: want auto, on or off", o.progress)
	}
	if o.joinTimeout <= 0 {
		return usagef("--join-timeout %v: want a positive duration", o.joinTimeout)
	}
	// The output file is created (as a temporary beside it) before anything
	// renders, so that a bad --out fails at once, not after the frame.
	out, err := createAtomic(o.out)
	if err != nil {
		return usageError{error: fmt.Errorf("--out: %w", err)}
	}
	defer out.abort()
	if embedded {
		err = o.embedded(ctx, out, stdout, stderr)
	} else {
		err = o.cluster(ctx, out, stdout, stderr)
	}
	return err
}

func (o *renderOpts) bar(stderr io.Writer) *progressBar {
	return newProgressBar(stderr, o.progress == "on" || o.progress == "auto" && isTerminal(stderr))
}

// embedded renders on a mesh of o.workers+1 nodes in this process: a
// coordinator, and workers that each join it.
func (o *renderOpts) embedded(ctx context.Context, out *atomicFile, stdout, stderr io.Writer) error {
	log := newLogger(stderr, o.verbose, slog.LevelWarn)
	spec := nodeSpec{kind: o.transport}
	switch o.transport {
	case transportMemory:
		spec.mem = memory.NewNetwork(memory.Config{})
		defer spec.mem.Close()
	case transportQUIC:
		spec.listen = "127.0.0.1:0"
	case transportWebRTC:
		// A signalling server of the mesh's own, on loopback; ICE stays on
		// loopback too (the transport's default). Closed after the nodes.
		srv, err := rtcsetup.Serve("127.0.0.1:0", log.With("component", "signal"))
		if err != nil {
			return fmt.Errorf("signalling server: %w", err)
		}
		defer srv.Close()
		spec.signal = srv.URL
	}
	names := map[uuid.UUID]string{}
	spec.name, spec.nodeName = "coordinator", "coordinator"
	coord, err := newNode(ctx, spec, log.With("node", "coordinator"))
	if err != nil {
		return err
	}
	defer coord.Close()
	names[coord.ID()] = "coordinator"

	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var workers []*node.Node
	defer func() {
		cancel()
		wg.Wait()
		for _, n := range workers {
			n.Close()
		}
	}()
	for i := 1; i <= o.workers; i++ {
		name := fmt.Sprintf("worker-%d", i)
		wlog := log.With("node", name)
		spec.name, spec.nodeName = name, name
		n, err := newNode(ctx, spec, wlog)
		if err != nil {
			return err
		}
		workers = append(workers, n)
		names[n.ID()] = name
		if err := join(ctx, n, coord.Addrs()[0], 10*time.Second, wlog); err != nil {
			return err
		}
		w, err := render.NewWorker(n, render.WorkerConfig{Slots: o.slots, Logger: wlog})
		if err != nil {
			return err
		}
		wg.Go(func() { _ = w.Run(wctx) })
	}
	fmt.Fprintf(stderr, "embedded mesh: a coordinator and %d workers over %s\n", o.workers, o.transport)
	return o.coordinate(ctx, coord, names, log, out, stdout, stderr)
}

// cluster joins a LAN cluster (or waits for workers to join) and coordinates
// the render.
func (o *renderOpts) cluster(ctx context.Context, out *atomicFile, stdout, stderr io.Writer) error {
	log := newLogger(stderr, o.verbose, slog.LevelWarn)
	spec, stopSignal, err := o.clusterSpec(stderr, log)
	if err != nil {
		return err
	}
	defer stopSignal()
	spec.signalPatience = 30 * time.Second // as for --join
	n, err := newNode(ctx, spec, log)
	if err != nil {
		return err
	}
	defer n.Close()
	fmt.Fprintf(stderr, "coordinator %s listening on %s\n", n.ID(), spec.describe(n))
	if o.join != "" {
		if err := join(ctx, n, o.join, o.joinTimeout, log); err != nil {
			return err
		}
		jctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { stayJoined(jctx, n, o.join, log) })
		defer func() {
			cancel()
			wg.Wait()
		}()
	} else {
		signal := ""
		if spec.kind == transportWebRTC {
			signal = " --signal " + spec.signalHint
		}
		fmt.Fprintf(stderr, "waiting for workers: distrirender worker --transport %s%s --join %s\n", o.transport, signal, n.Addrs()[0])
	}
	self := "coordinator"
	if o.name != "" {
		self = o.name
	}
	return o.coordinate(ctx, n, map[uuid.UUID]string{n.ID(): self}, log, out, stdout, stderr)
}

// coordinate runs the job on node n, writes the PNG and prints the report.
func (o *renderOpts) coordinate(ctx context.Context, n *node.Node, names map[uuid.UUID]string, log *slog.Logger, out *atomicFile, stdout, stderr io.Writer) error {
	bar := o.bar(stderr)
	c, err := render.NewCoordinator(n, render.CoordinatorConfig{Logger: log, LocalSlots: o.localSlots, Progress: bar.update})
	if err != nil {
		return err
	}
	img, rep, err := c.Run(ctx, o.job)
	bar.finish()
	if err != nil {
		return err
	}
	if err := png.Encode(out.f, img); err != nil {
		return fmt.Errorf("writing %s: %w", o.out, err)
	}
	if err := out.commit(); err != nil {
		return fmt.Errorf("writing %s: %w", o.out, err)
	}
	// The workers' names, as far as this node knows them (the embedded
	// mesh's it named itself).
	for _, ni := range n.Topology().Nodes {
		if _, ok := names[ni.ID]; !ok && ni.Name != "" {
			names[ni.ID] = meshapi.Printable(ni.Name)
		}
	}
	printReport(stdout, rep, names, n.ID())
	fmt.Fprintf(stdout, "wrote %s\n", o.out)
	return nil
}

// atomicFile is an output file written through a temporary file in the
// same directory and renamed over the path at the end, so that the path
// holds either the old file or the whole new one, never a part.
type atomicFile struct {
	path string
	f    *os.File
	done bool
}

// createAtomic creates the temporary file for path: it fails at once if the
// directory does not exist or cannot be written.
func createAtomic(path string) (*atomicFile, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot write %s in %s: %w", filepath.Base(path), filepath.Dir(path), err)
	}
	return &atomicFile{path: path, f: f}, nil
}

// commit syncs the temporary file and renames it to the path.
func (a *atomicFile) commit() error {
	if err := a.f.Sync(); err != nil {
		return err
	}
	if err := a.f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(a.f.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(a.f.Name(), a.path); err != nil {
		return err
	}
	a.done = true
	return nil
}

// abort removes the temporary file unless commit renamed it.
func (a *atomicFile) abort() {
	if !a.done {
		a.f.Close()
		os.Remove(a.f.Name())
	}
}

func printReport(w io.Writer, rep render.Report, names map[uuid.UUID]string, self uuid.UUID) {
	j := rep.Job
	fmt.Fprintf(w, "%dx%d, %d samples/pixel, depth %d, seed %d: %d tiles of %dx%d in %v\n",
		j.Width, j.Height, j.Samples, j.Depth, j.Seed, rep.Tiles, j.TileSize, j.TileSize, rep.Elapsed.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\tid\ttiles\tshare of tiles\tslot time\tslot time per tile\tnote\t")
	for _, nr := range rep.Nodes {
		name := names[nr.ID]
		if name == "" {
			name = "worker"
		}
		per := time.Duration(0)
		if nr.Tiles > 0 {
			per = nr.Render / time.Duration(nr.Tiles)
		}
		var note []string
		if nr.Local && nr.ID == self {
			note = append(note, "local slots")
		}
		if nr.Wasted > 0 {
			note = append(note, fmt.Sprintf("%d late duplicates", nr.Wasted))
		}
		if nr.Lost {
			note = append(note, "lost")
		}
		if nr.Declined != "" {
			note = append(note, "declined: "+nr.Declined)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f%%\t%v\t%v\t%s\t\n", name, short(nr.ID.String()), nr.Tiles,
			100*float64(nr.Tiles)/float64(max(rep.Tiles, 1)), nr.Render.Round(time.Millisecond), per.Round(100*time.Microsecond), strings.Join(note, ", "))
	}
	tw.Flush()
	fmt.Fprintln(w, "slot time: the time the node's render slots spent on its tiles, summed over slots (it can exceed the wall time)")
	if rep.Reassigned+rep.Speculative+rep.Duplicates+rep.Ignored > 0 {
		fmt.Fprintf(w, "reassigned %d, speculative copies %d, duplicates %d, ignored messages %d\n", rep.Reassigned, rep.Speculative, rep.Duplicates, rep.Ignored)
	}
}
