// Command meshbench runs the same workloads over every transport of the
// mesh, in one process and one run, and compares three layers of each:
//
//   - raw: the transport's bare library with the same framing, written in
//     meshbench (a Go channel; a quic-go or libp2p stream with 4-byte length
//     prefixes; a pion data channel);
//   - edge: this project's transport.Edge alone (receiving into a reused
//     buffer with transport.ReceiveBuffer where the edge can);
//   - mesh: node.Send to node.Receive, at 1 hop and at 3 hops (a line of 4
//     nodes), with the default reliability window and a large one.
//
// Workloads: one-way throughput at 64 B, 1 KiB and 64 KiB (messages/s,
// MB/s, CPU time and heap allocations per message, retransmissions and
// forward-buffer drops per 1000 messages); request/response latency at 64 B;
// connection setup; failover of a forwarding node; join into a 50-node mesh
// (memory transport). Every measurement is repeated (--reps) in a random,
// interleaved order, and each layer's throughput is divided by the raw
// library's within the same repetition: the ratios are the result, the
// absolute numbers their context.
//
// It prints a Markdown report on stdout and writes it, with the JSON of
// every measurement and SVG and PNG charts, into --out. Everything listens
// on loopback only. The exit status is 1 if any cell of the plan was not
// measured at all.
//
//	go run ./cmd/meshbench --quick            # under a minute
//	go run ./cmd/meshbench                    # the full run, under 15 minutes
//	go run ./cmd/meshbench --transports quic,webrtc --sizes 1024 --reps 3
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/distrirender/distrirender/internal/rtcsetup"
	"github.com/distrirender/distrirender/reliability"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "meshbench:", err)
		}
		stop()
		os.Exit(1)
	}
}

// config is a run's plan.
type config struct {
	transports []string
	sizes      []int
	reps       int
	dur        time.Duration // one throughput measurement
	latDur     time.Duration // one latency measurement
	limit      int           // messages or round trips per measurement, at most
	failPre    time.Duration // stream before the failover
	failPost   time.Duration // stream after it
	failLimit  int           // messages of a failover stream, at most
	joinNodes  int
	bigWindow  int
	timeout    time.Duration // bounds building a path and each measurement
	seed       uint64
	out        string
	cpuprofile string
	progress   string
	warmup     bool // a short throughput run before each measurement
	quick      bool
	verbose    bool
}

// configJSON is the plan as the JSON report records it.
type configJSON struct {
	Transports []string `json:"transports"`
	Sizes      []int    `json:"sizes"`
	Reps       int      `json:"reps"`
	Duration   string   `json:"duration"`
	Latency    string   `json:"latency_duration"`
	JoinNodes  int      `json:"join_nodes"`
	BigWindow  int      `json:"big_window"`
	Seed       uint64   `json:"seed"`
	Quick      bool     `json:"quick"`
}

// parse reads the flags into a config.
func parse(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("meshbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := &config{}
	transports := fs.String("transports", strings.Join(allTransports(), ","), "comma-separated transports to run: "+strings.Join(allTransports(), ", "))
	sizes := fs.String("sizes", "64,1024,65536", "comma-separated message sizes of the throughput workload, in bytes (k or KiB suffix for 1024)")
	fs.IntVar(&cfg.reps, "reps", 5, "repetitions of every measurement (--quick: 2)")
	fs.DurationVar(&cfg.dur, "duration", 400*time.Millisecond, "how long one throughput measurement sends (--quick: 60ms)")
	fs.IntVar(&cfg.joinNodes, "join-nodes", 50, "size of the mesh of the join workload (0: no join)")
	fs.IntVar(&cfg.bigWindow, "window", 256, "the large reliability window cap of the mesh layer (congestion control grows into it)")
	fs.Uint64Var(&cfg.seed, "seed", 0, "seed of the random order (0: from the clock)")
	fs.StringVar(&cfg.out, "out", "meshbench-out", "folder for results.md, results.json and the charts")
	fs.StringVar(&cfg.cpuprofile, "cpuprofile", "", "write a CPU profile of the run to this file")
	fs.StringVar(&cfg.progress, "progress", "auto", "progress bar on stderr: auto (on a terminal), on, off")
	fs.BoolVar(&cfg.quick, "quick", false, "a short run (under a minute): 2 repetitions, short measurements, no warm-up")
	fs.BoolVar(&cfg.verbose, "v", false, "log the transports' and nodes' warnings to stderr")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: meshbench [flags]\n\nCompares the transports, and raw library / edge / mesh layers of each, on loopback.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg.warmup = !cfg.quick
	if cfg.quick {
		if !set["reps"] {
			cfg.reps = 2
		}
		if !set["duration"] {
			cfg.dur = 60 * time.Millisecond
		}
	}
	for t := range strings.SplitSeq(*transports, ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		if !slices.Contains(allTransports(), t) {
			return nil, fmt.Errorf("--transports: unknown transport %q (want some of %s)", t, strings.Join(allTransports(), ", "))
		}
		if !slices.Contains(cfg.transports, t) {
			cfg.transports = append(cfg.transports, t)
		}
	}
	if len(cfg.transports) == 0 {
		return nil, errors.New("--transports: none given")
	}
	var err error
	if cfg.sizes, err = parseSizes(*sizes); err != nil {
		return nil, err
	}
	switch {
	case cfg.reps < 1 || cfg.reps > 1000:
		return nil, fmt.Errorf("--reps %d: want 1 to 1000", cfg.reps)
	case cfg.dur <= 0 || cfg.dur > time.Minute:
		return nil, fmt.Errorf("--duration %v: want up to a minute", cfg.dur)
	case cfg.joinNodes < 0 || cfg.joinNodes > 500:
		return nil, fmt.Errorf("--join-nodes %d: want 0 to 500", cfg.joinNodes)
	case cfg.bigWindow < reliability.DefaultInitialWindow || cfg.bigWindow > reliability.MaxWindow:
		return nil, fmt.Errorf("--window %d: want %d to %d", cfg.bigWindow, reliability.DefaultInitialWindow, reliability.MaxWindow)
	}
	switch cfg.progress {
	case "auto", "on", "off":
	default:
		return nil, fmt.Errorf("--progress %q: want auto, on or off", cfg.progress)
	}
	cfg.latDur = cfg.dur / 2
	cfg.limit = 2_000_000
	cfg.failPre, cfg.failPost = max(50*time.Millisecond, cfg.dur/2), max(100*time.Millisecond, cfg.dur)
	cfg.failLimit = 1_000_000
	cfg.timeout = 30*time.Second + 10*cfg.dur
	if cfg.seed == 0 {
		cfg.seed = uint64(time.Now().UnixNano())
	}
	return cfg, nil
}

// parseSizes reads --sizes.
func parseSizes(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		mult := 1
		for _, suf := range []string{"KiB", "kib", "K", "k"} {
			if strings.HasSuffix(f, suf) {
				f, mult = strings.TrimSuffix(f, suf), 1024
				break
			}
		}
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n*mult < 1 || n*mult > rawMaxFrame-1024 {
			return nil, fmt.Errorf("--sizes: %q is not a size from 1 byte to %d bytes", f, rawMaxFrame-1024)
		}
		if !slices.Contains(out, n*mult) {
			out = append(out, n*mult)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("--sizes: none given")
	}
	return out, nil
}

// run is the program: it parses args, runs the plan, and writes the
// report to stdout and into the output folder.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parse(args, stderr)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if cfg.cpuprofile != "" {
		f, err := os.Create(cfg.cpuprofile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	level := slog.LevelError + 1 // nothing
	if cfg.verbose {
		level = slog.LevelWarn
	}
	log := slog.New(rtcsetup.QuietPion(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})))

	env := environment(args)
	planned := cfg.plannedCells()
	showProgress := cfg.progress == "on" || (cfg.progress == "auto" && onTerminal(stderr))
	ts := newTransports(log)
	b := &bench{
		cfg:  cfg,
		ts:   ts,
		rng:  rand.New(rand.NewPCG(cfg.seed, cfg.seed^0x9e3779b97f4a7c15)),
		prog: newProgress(stderr, showProgress, len(planned)*cfg.reps),
	}
	start := time.Now()
	runErr := b.run(ctx)
	b.prog.finish()
	ts.close()
	env.LoadEnd = loadAverage()

	r := &Report{
		Env: env,
		Config: configJSON{
			Transports: cfg.transports, Sizes: cfg.sizes, Reps: cfg.reps, Duration: cfg.dur.String(), Latency: cfg.latDur.String(),
			JoinNodes: cfg.joinNodes, BigWindow: cfg.bigWindow, Seed: cfg.seed, Quick: cfg.quick,
		},
		Summaries:    summarize(planned, b.results),
		Ratios:       ratios(planned, b.results),
		Missing:      missing(planned, b.results),
		Measurements: b.results,
	}
	if err := write(cfg.out, r, stdout); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "meshbench: %d measurements in %v; results in %s\n", len(b.results), time.Since(start).Round(time.Second), cfg.out)
	if runErr != nil {
		return runErr
	}
	if len(r.Missing) > 0 {
		return fmt.Errorf("%d of %d cells were not measured (see the report)", len(r.Missing), len(planned))
	}
	return nil
}

// write writes the report to stdout and, with the charts, into dir.
func write(dir string, r *Report, stdout io.Writer) error {
	var md strings.Builder
	writeMarkdown(&md, r)
	if _, err := io.WriteString(stdout, md.String()); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md.String()), 0o644); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), js, 0o644); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	for _, c := range charts(r) {
		if _, err := c.save(dir); err != nil {
			return err
		}
	}
	return nil
}
