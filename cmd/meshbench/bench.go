package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/distrirender/distrirender/reliability"
)

// Layers.
const (
	layerRaw  = "raw"
	layerEdge = "edge"
	layerMesh = "mesh"
)

// Workloads.
const (
	wThroughput = "throughput"
	wLatency    = "latency"
	wSetup      = "setup"
	wFailover   = "failover"
	wJoin       = "join"
)

// latencySize is the size of a request and of its response.
const latencySize = 64

// Cell names one figure of the results: a workload on a layer of a
// transport. Every cell of the plan is measured once per repetition.
type Cell struct {
	Transport string `json:"transport"`
	// Layer is raw, edge or mesh.
	Layer string `json:"layer"`
	// Hops is the length of the path: 1, or 3 (a line of 4).
	Hops int `json:"hops"`
	// Window is the mesh's reliability window; 0 for raw and edge.
	Window int `json:"window,omitempty"`
	// Sealed marks a mesh whose nodes share a cluster secret: signed link
	// state, data and acks sealed end to end (AES-256-GCM).
	Sealed bool `json:"sealed,omitempty"`
	// Workload is throughput, latency, setup, failover or join.
	Workload string `json:"workload"`
	// Size is the message size of throughput and latency, in bytes.
	Size int `json:"size,omitempty"`
}

// Label is the cell's layer as the tables show it: "raw", "edge",
// "mesh w10", "mesh w256 sealed".
func (c Cell) Label() string {
	switch {
	case c.Layer == layerMesh && c.Window > 0 && c.Sealed:
		return fmt.Sprintf("mesh w%d sealed", c.Window)
	case c.Layer == layerMesh && c.Window > 0:
		return fmt.Sprintf("mesh w%d", c.Window)
	}
	return c.Layer
}

// Measurement is one measurement of a cell: the figures its workload
// yields, the repetition, its place in the run's order and the load
// average when it started.
type Measurement struct {
	Cell
	Rep   int       `json:"rep"`
	Order int       `json:"order"`
	At    time.Time `json:"at"`
	Load1 float64   `json:"load1"`
	Err   string    `json:"error,omitempty"`
	// WallMs is how long the measurement took, warm-up included; PathMs how
	// long building its path took (for planning runs, not results).
	WallMs float64 `json:"wall_ms"`
	PathMs float64 `json:"path_ms,omitempty"`

	// Throughput: messages delivered, wall time from the first Send to the
	// last Receive, and the process's CPU time and heap allocations
	// per delivered message.
	Msgs         int     `json:"msgs,omitempty"`
	Seconds      float64 `json:"seconds,omitempty"`
	MsgsPerSec   float64 `json:"msgs_per_s,omitempty"`
	MBPerSec     float64 `json:"mb_per_s,omitempty"`
	CPUNsPerMsg  float64 `json:"cpu_ns_per_msg,omitempty"`
	AllocsPerMsg float64 `json:"allocs_per_msg,omitempty"`
	// Mesh layer: end-to-end retransmissions and frames dropped by full
	// forward buffers, per 1000 messages delivered.
	RetxPer1k  float64 `json:"retx_per_1k"`
	DropsPer1k float64 `json:"drops_per_1k"`

	// Latency: round-trip percentiles of 64-byte requests.
	RoundTrips int     `json:"round_trips,omitempty"`
	P50Us      float64 `json:"p50_us,omitempty"`
	P99Us      float64 `json:"p99_us,omitempty"`

	// Setup: Dial or Connect until the first message came back.
	SetupMs float64 `json:"setup_ms,omitempty"`

	// Failover: from the forwarder's close until a message sent after it
	// arrived, and what the stream lost, duplicated or reordered.
	GapMs      float64 `json:"gap_ms,omitempty"`
	Sent       int     `json:"sent,omitempty"`
	Delivered  int     `json:"delivered,omitempty"`
	Lost       int     `json:"lost"`
	Duplicated int     `json:"duplicated"`
	Reordered  int     `json:"reordered"`
	Failed     int     `json:"failed"`

	// Join: building the mesh, then Connect until the joiner and every
	// member route to each other, and until the joiner is balanced.
	Nodes      int     `json:"nodes,omitempty"`
	Edges      int     `json:"edges,omitempty"`
	BuildMs    float64 `json:"build_ms,omitempty"`
	JoinMs     float64 `json:"join_ms,omitempty"`
	BalancedMs float64 `json:"balanced_ms,omitempty"`
}

// value is the measurement's main figure, the one medians and ratios are
// taken of.
func (m *Measurement) value() float64 {
	switch m.Workload {
	case wThroughput:
		return m.MsgsPerSec
	case wLatency:
		return m.P50Us
	case wSetup:
		return m.SetupMs
	case wFailover:
		return m.GapMs
	case wJoin:
		return m.JoinMs
	}
	return 0
}

// layerSpec is a layer of a block: raw, edge, or mesh with a window,
// sealed or not.
type layerSpec struct {
	layer  string
	window int
	sealed bool
}

// labels are the profiler labels of layer l's goroutines in unit u.
func (u unit) labels(l layerSpec) pprof.LabelSet {
	layer := l.layer
	if l.window > 0 {
		layer = fmt.Sprintf("%s w%d", layer, l.window)
	}
	if l.sealed {
		layer += " sealed"
	}
	return pprof.Labels("transport", u.transport, "hops", strconv.Itoa(u.hops), "layer", layer)
}

// unit is what runs as one piece: a block (the paths of every layer of one
// transport at one path length, built together, then each workload run on
// every layer back to back in random order), a failover or a join.
type unit struct {
	transport string
	hops      int
	workload  string      // wThroughput for a block: its throughput, latency and setup cells
	layers    []layerSpec // of a block; the one of a failover or join
}

// cells lists the cells of one layer of a unit, given the run's sizes.
func (u unit) cells(l layerSpec, sizes []int) []Cell {
	base := Cell{Transport: u.transport, Layer: l.layer, Hops: u.hops, Window: l.window, Sealed: l.sealed}
	if u.workload != wThroughput {
		base.Workload = u.workload
		return []Cell{base}
	}
	var out []Cell
	for _, s := range sizes {
		c := base
		c.Workload, c.Size = wThroughput, s
		out = append(out, c)
	}
	c := base
	c.Workload, c.Size = wLatency, latencySize
	out = append(out, c)
	if u.hops == 1 {
		c := base
		c.Workload = wSetup
		out = append(out, c)
	}
	return out
}

// units lists one repetition's units, in the order tables list them.
func (cfg *config) units() []unit {
	// The seed's fixed window of 10 (cap 10: no room to grow), beside the
	// large cap that congestion control grows into (the default, 256).
	def := reliability.DefaultInitialWindow
	// The sealed mesh (a closed cluster) measures what security costs.
	layers := []layerSpec{{layerRaw, 0, false}, {layerEdge, 0, false}, {layerMesh, def, false}, {layerMesh, cfg.bigWindow, false}, {layerMesh, cfg.bigWindow, true}}
	var out []unit
	for _, t := range cfg.transports {
		for _, hops := range []int{1, 3} {
			out = append(out, unit{transport: t, hops: hops, workload: wThroughput, layers: layers})
		}
		out = append(out, unit{transport: t, hops: 3, workload: wFailover, layers: []layerSpec{{layerMesh, def, false}}})
	}
	if slices.Contains(cfg.transports, tMemory) && cfg.joinNodes > 1 {
		out = append(out, unit{transport: tMemory, workload: wJoin, layers: []layerSpec{{layerMesh, def, false}}})
	}
	return out
}

// plannedCells lists every cell of the run.
func (cfg *config) plannedCells() []Cell {
	var out []Cell
	for _, u := range cfg.units() {
		for _, l := range u.layers {
			out = append(out, u.cells(l, cfg.sizes)...)
		}
	}
	return out
}

// bench runs the measurements and keeps them.
type bench struct {
	cfg     *config
	ts      *transports
	rng     *rand.Rand
	prog    *progress
	results []Measurement
	rep     int
}

// run runs every repetition, each in a fresh random order.
func (b *bench) run(ctx context.Context) error {
	for rep := range b.cfg.reps {
		b.rep = rep
		units := b.cfg.units()
		b.rng.Shuffle(len(units), func(i, j int) { units[i], units[j] = units[j], units[i] })
		for _, u := range units {
			if err := ctx.Err(); err != nil {
				return err
			}
			switch u.workload {
			case wFailover:
				b.runFailover(ctx, u.cells(u.layers[0], nil)[0])
			case wJoin:
				b.runJoin(ctx, u.cells(u.layers[0], nil)[0])
			default:
				b.runBlock(ctx, u)
			}
		}
	}
	return nil
}

// record adds a measurement, stamped with its order and duration.
func (b *bench) record(m Measurement) {
	m.Rep, m.Order = b.rep, len(b.results)
	m.WallMs = ms(time.Since(m.At))
	b.results = append(b.results, m)
	b.prog.step(fmt.Sprintf("%s %s %s", m.Transport, m.Label(), m.Workload))
}

// begin starts a measurement of c.
func (b *bench) begin(c Cell) Measurement {
	return Measurement{Cell: c, At: time.Now().UTC(), Load1: loadAverage()}
}

// fail records err for every cell in cells.
func (b *bench) fail(cells []Cell, err error) {
	for _, c := range cells {
		m := b.begin(c)
		m.Err = err.Error()
		b.record(m)
	}
}

// buildPath makes the path of one layer of a block and echoes a first
// message through it.
func (b *bench) buildPath(ctx context.Context, u unit, l layerSpec) (*path, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.timeout)
	defer cancel()
	var p *path
	var err error
	switch l.layer {
	case layerRaw:
		p, err = chainPath(ctx, u.hops, func(ctx context.Context) (*link, error) { return b.ts.rawLink(ctx, u.transport) })
	case layerEdge:
		p, err = chainPath(ctx, u.hops, func(ctx context.Context) (*link, error) { return b.ts.edgeLink(ctx, u.transport) })
	default:
		p, err = b.ts.meshPath(ctx, u.transport, u.hops, l.window, l.sealed)
	}
	if err != nil {
		return nil, fmt.Errorf("building the path: %w", err)
	}
	if err := p.firstEcho(ctx); err != nil {
		p.close()
		return nil, fmt.Errorf("first echo: %w", err)
	}
	return p, nil
}

// runBlock runs a block: it builds the path of every layer (in random
// order; the time until each echoed its first message is the setup cell),
// then runs each workload (in random order) on every layer back to back (in
// random order), so that a layer and the raw library it is divided by are
// measured seconds apart. A path whose workload fails is closed, and its
// remaining cells are recorded as failed.
func (b *bench) runBlock(ctx context.Context, u unit) {
	paths := map[layerSpec]*path{}
	defer func() {
		for _, p := range paths {
			p.close()
		}
	}()
	built := map[layerSpec]time.Duration{}
	order := slices.Clone(u.layers)
	b.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	done := map[Cell]bool{}
	failed := map[layerSpec]error{}
	for _, l := range order {
		t0 := time.Now()
		var p *path
		var err error
		// The labels follow every goroutine the path starts (connections,
		// node loops, relays), so a --cpuprofile splits by layer.
		pprof.Do(ctx, u.labels(l), func(ctx context.Context) { p, err = b.buildPath(ctx, u, l) })
		if err != nil {
			failed[l] = err // its cells are recorded as failed below
			continue
		}
		paths[l], built[l] = p, time.Since(t0)
		if u.hops == 1 {
			c := u.cells(l, nil)
			m := b.begin(c[len(c)-1]) // the setup cell
			m.SetupMs, m.PathMs = ms(time.Since(p.start)), ms(built[l])
			b.record(m)
			done[m.Cell] = true
		}
	}
	type group struct {
		workload string
		size     int
	}
	var groups []group
	for _, s := range b.cfg.sizes {
		groups = append(groups, group{wThroughput, s})
	}
	groups = append(groups, group{wLatency, latencySize})
	b.rng.Shuffle(len(groups), func(i, j int) { groups[i], groups[j] = groups[j], groups[i] })
	for _, g := range groups {
		b.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, l := range order {
			p := paths[l]
			if p == nil {
				continue
			}
			m := b.begin(Cell{Transport: u.transport, Layer: l.layer, Hops: u.hops, Window: l.window, Sealed: l.sealed, Workload: g.workload, Size: g.size})
			m.PathMs = ms(built[l])
			var err error
			pprof.Do(ctx, u.labels(l), func(ctx context.Context) { err = b.measure(ctx, p, &m) })
			if err != nil {
				m.Err = err.Error()
				p.close()
				delete(paths, l)
				failed[l] = fmt.Errorf("an earlier workload on the same path failed: %w", err)
			}
			b.record(m)
			done[m.Cell] = true
		}
	}
	for _, l := range u.layers {
		if err := failed[l]; err != nil {
			left := slices.DeleteFunc(u.cells(l, b.cfg.sizes), func(c Cell) bool { return done[c] })
			b.fail(left, fmt.Errorf("not measured: %w", err))
		}
	}
}

// measure runs the workload of m.Cell on p and fills m in.
func (b *bench) measure(ctx context.Context, p *path, m *Measurement) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.timeout)
	defer cancel()
	switch m.Workload {
	case wLatency:
		retx0, dropped0 := p.counters()
		rtts, err := p.pingPong(ctx, b.cfg.latDur, b.cfg.limit)
		if err != nil {
			return err
		}
		retx, dropped := p.counters()
		if n := 2 * len(rtts); n > 0 { // a request and a response each
			m.RetxPer1k = 1000 * float64(retx-retx0) / float64(n)
			m.DropsPer1k = 1000 * float64(dropped-dropped0) / float64(n)
		}
		slices.Sort(rtts)
		m.RoundTrips = len(rtts)
		m.P50Us = us(percentile(rtts, 0.50))
		m.P99Us = us(percentile(rtts, 0.99))
		return nil
	}
	// Throughput: a short warm-up (connection windows, pools), then the
	// measurement.
	if b.cfg.warmup {
		if _, _, err := p.oneWay(ctx, m.Size, b.cfg.dur/5, b.cfg.limit/5); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	n, c, err := p.oneWay(ctx, m.Size, b.cfg.dur, b.cfg.limit)
	if err != nil {
		return err
	}
	fillThroughput(m, n, c)
	return nil
}

// fillThroughput computes a throughput measurement's figures.
func fillThroughput(m *Measurement, n int, c cost) {
	m.Msgs, m.Seconds = n, c.wall.Seconds()
	m.MsgsPerSec = float64(n) / c.wall.Seconds()
	m.MBPerSec = m.MsgsPerSec * float64(m.Size) / 1e6
	m.CPUNsPerMsg = float64(c.cpu.Nanoseconds()) / float64(n)
	m.AllocsPerMsg = float64(c.allocs) / float64(n)
	m.RetxPer1k = 1000 * float64(c.retx) / float64(n)
	m.DropsPer1k = 1000 * float64(c.dropped) / float64(n)
}

func (b *bench) runFailover(ctx context.Context, c Cell) {
	m := b.begin(c)
	ctx, cancel := context.WithTimeout(ctx, b.cfg.timeout)
	defer cancel()
	r, err := b.ts.failover(ctx, c.Transport, b.cfg.failPre, b.cfg.failPost, b.cfg.failLimit)
	if err != nil {
		m.Err = err.Error()
	} else {
		m.GapMs = ms(r.gap)
		m.Sent, m.Delivered = r.sent, r.delivered
		m.Lost, m.Duplicated, m.Reordered, m.Failed = r.lost, r.duplicated, r.reordered, r.failedMsgs
		if r.delivered > 0 {
			m.RetxPer1k = 1000 * float64(r.retx) / float64(r.delivered)
			m.DropsPer1k = 1000 * float64(r.dropped) / float64(r.delivered)
		}
	}
	b.record(m)
}

func (b *bench) runJoin(ctx context.Context, c Cell) {
	m := b.begin(c)
	ctx, cancel := context.WithTimeout(ctx, 3*b.cfg.timeout)
	defer cancel()
	r, err := b.ts.join(ctx, b.cfg.joinNodes, b.rng)
	if err != nil {
		m.Err = err.Error()
	} else {
		m.Nodes, m.Edges = b.cfg.joinNodes, r.edges
		m.BuildMs, m.JoinMs, m.BalancedMs = ms(r.build), ms(r.reach), ms(r.balanced)
	}
	b.record(m)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }
func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// missing lists the planned cells without a single successful measurement.
func missing(planned []Cell, results []Measurement) []Cell {
	ok := map[Cell]bool{}
	for _, m := range results {
		if m.Err == "" {
			ok[m.Cell] = true
		}
	}
	var out []Cell
	for _, c := range planned {
		if !ok[c] {
			out = append(out, c)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Transport < out[j].Transport })
	return out
}
