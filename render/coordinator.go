package render

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/node"
)

// ErrBusy is returned by Run when the Coordinator or Worker is already
// running.
var ErrBusy = errors.New("render: already running")

// Timing of the coordinator. Tile deadlines are generous: a tile that misses
// one is only handed out again, and the first result to come back wins.
const (
	// initialTileTimeout is a tile's deadline before any tile has come back.
	initialTileTimeout = 2 * time.Minute
	// minTileTimeout is the shortest adaptive deadline.
	minTileTimeout = 5 * time.Second
	// timeoutFactor times the slowest tile seen so far is the adaptive deadline.
	timeoutFactor = 4
	// checkInterval is how often deadlines are checked.
	checkInterval = 100 * time.Millisecond
	// sendTimeout bounds a Send to one worker; a worker whose stream stays
	// full that long is treated as lost.
	sendTimeout = 5 * time.Second
	// maxWorkers bounds the workers a coordinator keeps state for.
	maxWorkers = 4096
	// announceRefresh is how often the job is announced again to the
	// workers that took part but have not been heard from for as long, in
	// case one dropped the job while the coordinator still counted on it.
	announceRefresh = 3 * time.Second
)

// CoordinatorConfig configures a Coordinator. The zero value is usable: the
// built-in scenes, no rendering on the coordinator's own node, adaptive tile
// deadlines, no progress reports.
type CoordinatorConfig struct {
	// Logger receives the coordinator's logs; nil discards them.
	Logger *slog.Logger
	// Scenes resolves a job's scene name; nil means Lookup. Workers must
	// resolve names to the same scenes (the job carries a fingerprint, and a
	// worker whose own differs declines the job).
	Scenes func(name string) (*Scene, error)
	// LocalSlots is how many tiles the coordinator's own node renders at
	// once, alongside the workers; 0 (the default) means none, so that the
	// coordinator only hands out tiles. At most MaxSlots.
	LocalSlots int
	// TileTimeout is how long a worker may take over a tile before it is
	// handed out again as well. Zero means adaptive: two minutes until the
	// first tile comes back, then four times the slowest tile so far, and at
	// least five seconds. The worker that timed out may still deliver.
	TileTimeout time.Duration
	// Progress, if set, is called from the coordinator's goroutine each time
	// a tile comes in, and once at the start. It must return quickly and must
	// not call the Coordinator.
	Progress func(Progress)
}

// Progress is a snapshot of a running job.
type Progress struct {
	// JobID is the job's ID.
	JobID uint64
	// Done is the number of tiles received, of Total.
	Done, Total int
	// Workers is the number of nodes currently rendering tiles.
	Workers int
	// Elapsed is the time since Run started.
	Elapsed time.Duration
}

// Report says how a job went.
type Report struct {
	// Job is the job as run, with its ID and defaults filled in.
	Job Job
	// Tiles is the number of tiles in the frame.
	Tiles int
	// Elapsed is the wall-clock time of Run.
	Elapsed time.Duration
	// Reassigned counts tiles handed out again because their worker was lost
	// or missed the deadline.
	Reassigned int
	// Speculative counts tiles handed out a second time near the end of the
	// job to an idle worker while still in flight elsewhere.
	Speculative int
	// Duplicates counts results for tiles already received; they were
	// ignored.
	Duplicates int
	// Ignored counts messages that were malformed, for another job, or out
	// of place.
	Ignored int
	// Nodes has one entry per node that took part or declined, the ones that
	// delivered the most tiles first.
	Nodes []NodeReport
}

// NodeReport is one node's part in a job.
type NodeReport struct {
	// ID is the node's mesh address.
	ID uuid.UUID
	// Local marks the coordinator's own node (CoordinatorConfig.LocalSlots).
	Local bool
	// Tiles is the number of tiles whose result from this node was used.
	Tiles int
	// Render is the time the node reported spending on those tiles, summed
	// over its slots (so it can exceed the job's wall-clock time).
	Render time.Duration
	// Wasted counts results from this node that arrived second.
	Wasted int
	// Lost is true if the node became unreachable, or a message to it could
	// not be delivered, during the job.
	Lost bool
	// Declined is why the node refused the job, if it did.
	Declined string
}

// Coordinator hands out the tiles of a frame to the workers of the mesh and
// assembles their results. While Run runs it consumes the node's Receive and
// Events; a node runs one Coordinator or one Worker at a time.
type Coordinator struct {
	n       *node.Node
	cfg     CoordinatorConfig
	log     *slog.Logger
	running atomic.Bool
}

// NewCoordinator returns a coordinator that runs jobs on node n.
func NewCoordinator(n *node.Node, cfg CoordinatorConfig) (*Coordinator, error) {
	if n == nil {
		return nil, errors.New("render: nil node")
	}
	if cfg.LocalSlots < 0 || cfg.LocalSlots > MaxSlots {
		return nil, fmt.Errorf("render: LocalSlots %d not within 0..%d", cfg.LocalSlots, MaxSlots)
	}
	if cfg.TileTimeout < 0 {
		return nil, fmt.Errorf("render: negative TileTimeout")
	}
	if cfg.Scenes == nil {
		cfg.Scenes = Lookup
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Coordinator{n: n, cfg: cfg, log: log.With("coordinator", n.ID().String()[:8])}, nil
}

// Run renders job over the mesh and returns the frame, byte-identical to
// Render of the same job on one machine.
//
// Run tells every node it can reach about the job, and nodes that become
// reachable later too. Workers pull tiles: each of a worker's slots asks for
// a tile, renders it, and sends the result, which asks for the next one, so
// faster nodes take more tiles. A tile is handed out again when its worker
// becomes unreachable (node events and the node's topology), when a message to
// it cannot be delivered, or when it misses its deadline; the first result for
// a tile wins. When every tile is in, or ctx ends, Run tells the nodes the job
// is over and returns; the report is filled in either way.
//
// Zero fields of job take their defaults (Job.WithDefaults); a zero job.ID is
// replaced by a random one. Run can be called again for the next job, but not
// concurrently.
func (c *Coordinator) Run(ctx context.Context, job Job) (*image.RGBA, Report, error) {
	if !c.running.CompareAndSwap(false, true) {
		return nil, Report{}, ErrBusy
	}
	defer c.running.Store(false)
	job = job.WithDefaults()
	for job.ID == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		job.ID = binary.BigEndian.Uint64(b[:])
	}
	rep := Report{Job: job}
	if err := job.Validate(); err != nil {
		return nil, rep, err
	}
	scene, err := c.cfg.Scenes(job.Scene)
	if err != nil {
		return nil, rep, err
	}
	if scene == nil || scene.Name != job.Scene {
		return nil, rep, fmt.Errorf("%w: scene lookup for %q returned another scene", ErrInvalidScene, job.Scene)
	}
	comp, err := compile(scene)
	if err != nil {
		return nil, rep, err
	}
	r := &crun{
		c:         c,
		n:         c.n,
		self:      c.n.ID(),
		log:       c.log.With("job", fmt.Sprintf("%016x", job.ID)),
		job:       job,
		comp:      comp,
		fp:        comp.fingerprint(),
		img:       image.NewRGBA(image.Rect(0, 0, job.Width, job.Height)),
		tiles:     make([]ctile, job.Tiles()),
		workers:   make(map[uuid.UUID]*cworker),
		announced: make(map[uuid.UUID]bool),
		start:     time.Now(),
		rep:       &rep,
	}
	r.fresh = make([]int, len(r.tiles))
	for i := range r.fresh {
		r.fresh[i] = i
	}
	rep.Tiles = len(r.tiles)
	err = r.run(ctx)
	rep.Elapsed = time.Since(r.start)
	rep.Nodes = r.nodeReports()
	if err != nil {
		return nil, rep, err
	}
	return r.img, rep, nil
}

// slotState is what the coordinator knows about one slot of a worker.
type slotState uint8

const (
	slotUnknown  slotState = iota // never asked, or forgotten when the worker was lost
	slotWaiting                   // asked for a tile and has none
	slotAssigned                  // was handed tile
)

type cslot struct {
	state slotState
	tile  int
}

type cworker struct {
	id       uuid.UUID
	local    bool
	slots    [MaxSlots]cslot
	tiles    int
	render   time.Duration
	wasted   int
	lost     bool
	declined string
	heard    time.Time // last request or result
}

// active reports whether the worker has a slot waiting or rendering.
func (w *cworker) active() bool {
	if w.lost || w.declined != "" {
		return false
	}
	for _, s := range w.slots {
		if s.state != slotUnknown {
			return true
		}
	}
	return false
}

// assignee is one handing out of a tile.
type assignee struct {
	w        uuid.UUID
	slot     int
	at       time.Time
	deadline time.Time
	expired  bool
}

type ctile struct {
	done      bool
	queued    bool // in the retry queue
	assignees []assignee
}

// live returns the number of assignees that have not missed their deadline.
func (t *ctile) live() int {
	n := 0
	for _, a := range t.assignees {
		if !a.expired {
			n++
		}
	}
	return n
}

type slotKey struct {
	w    uuid.UUID
	slot int
}

// localTile is a tile for the coordinator's own slots, and its result.
type localTile struct {
	slot, tile int
	pixels     []byte
	elapsed    time.Duration
}

// crun is the state of one Run, owned by its goroutine.
type crun struct {
	c    *Coordinator
	n    *node.Node
	self uuid.UUID
	log  *slog.Logger
	job  Job
	comp *compiled
	fp   uint64
	img  *image.RGBA
	rep  *Report

	tiles   []ctile
	fresh   []int // tiles never handed out, in order
	retry   []int // tiles to hand out again, first in first out
	done    int
	waiting []slotKey // slots that asked for a tile, oldest first

	workers   map[uuid.UUID]*cworker
	announced map[uuid.UUID]bool

	start      time.Time
	slowest    time.Duration // slowest tile so far, from assignment to result
	latencySum time.Duration
	latencyN   int

	localWork    chan localTile
	localResults chan localTile
	lastRefresh  time.Time
}

func (r *crun) run(ctx context.Context) error {
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	deliveries, recvErr := receive(rctx, r.n, &wg)

	if k := r.c.cfg.LocalSlots; k > 0 {
		r.localWork = make(chan localTile, k)
		r.localResults = make(chan localTile, k)
		w := r.worker(r.self)
		w.local = true
		for s := range k {
			wg.Go(func() { r.localSlot(rctx) })
			w.slots[s].state = slotWaiting
			r.waiting = append(r.waiting, slotKey{r.self, s})
		}
	}

	r.progress()
	r.refreshTopology()
	r.dispatch()
	tick := time.NewTicker(checkInterval)
	defer tick.Stop()
	for r.done < len(r.tiles) {
		select {
		case d := <-deliveries:
			r.handle(d)
		case lt := <-r.localResults:
			r.result(r.self, lt.slot, lt.tile, lt.pixels, lt.elapsed)
		case ev, ok := <-r.n.Events():
			if !ok {
				return fmt.Errorf("render: coordinator: %w", node.ErrClosed)
			}
			r.event(ev)
		case now := <-tick.C:
			r.expire(now)
			if now.Sub(r.lastRefresh) >= announceRefresh {
				r.lastRefresh = now
				r.reannounce(now)
			}
		case err := <-recvErr:
			if ctx.Err() == nil {
				return fmt.Errorf("render: coordinator: %w", err)
			}
		case <-ctx.Done():
			r.finish(doneCancelled)
			return ctx.Err()
		}
		r.dispatch()
	}
	r.finish(doneComplete)
	return nil
}

// receive pumps n's deliveries into a channel until ctx ends. The goroutine
// is counted in wg.
func receive(ctx context.Context, n *node.Node, wg *sync.WaitGroup) (<-chan node.Delivery, <-chan error) {
	out := make(chan node.Delivery)
	errc := make(chan error, 1)
	wg.Go(func() {
		for {
			d, err := n.Receive(ctx)
			if err != nil {
				errc <- err
				return
			}
			select {
			case out <- d:
			case <-ctx.Done():
				return
			}
		}
	})
	return out, errc
}

// localSlot renders tiles for the coordinator's own node.
func (r *crun) localSlot(ctx context.Context) {
	for {
		select {
		case lt := <-r.localWork:
			start := time.Now()
			pix, err := r.comp.renderTile(ctx, &r.job, lt.tile)
			if err != nil {
				return
			}
			lt.pixels, lt.elapsed = pix, time.Since(start)
			select {
			case r.localResults <- lt:
			case <-ctx.Done():
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

func (r *crun) worker(id uuid.UUID) *cworker {
	w := r.workers[id]
	if w == nil {
		if len(r.workers) >= maxWorkers {
			return nil
		}
		w = &cworker{id: id}
		r.workers[id] = w
	}
	return w
}

func (r *crun) ignore(from uuid.UUID, why string, err error) {
	r.rep.Ignored++
	if c := r.rep.Ignored; c&(c-1) == 0 {
		r.log.Warn("ignored message", "from", from, "why", why, "err", err, "total", c)
	}
}

func (r *crun) handle(d node.Delivery) {
	m, err := decode(d.Body)
	if err != nil {
		r.ignore(d.From, "undecodable", err)
		return
	}
	if m.jobID != r.job.ID {
		r.ignore(d.From, "another job", nil)
		return
	}
	r.log.Debug("received", "from", d.From, "type", m.typ, "slot", m.slot, "tile", m.tile)
	switch m.typ {
	case msgRequest:
		w := r.worker(d.From)
		if w == nil || w.declined != "" {
			r.ignore(d.From, "request from a declined or excess worker", nil)
			return
		}
		w.lost = false
		w.heard = time.Now()
		s := &w.slots[m.slot]
		switch {
		case s.state == slotUnknown:
		case s.state == slotAssigned && r.stale(w.id, m.slot, s.tile):
			// The slot is idle although it was handed a tile long ago, or
			// one that is done: the worker dropped the job and took it up
			// again. It may still get that tile; its queue absorbs it.
			t := &r.tiles[s.tile]
			t.assignees = slices.DeleteFunc(t.assignees, func(a assignee) bool { return a.w == w.id && a.slot == m.slot })
			r.requeue(s.tile)
		default:
			// Waiting already, or the assignment is on its way: delivery is
			// reliable, and its failure makes the worker lost.
			return
		}
		s.state = slotWaiting
		r.waiting = append(r.waiting, slotKey{w.id, m.slot})
	case msgResult:
		if err := m.checkTile(&r.job); err != nil {
			r.ignore(d.From, "bad result", err)
			return
		}
		r.result(d.From, m.slot, m.tile, m.pixels, m.elapsed)
	case msgDecline:
		w := r.worker(d.From)
		if w == nil {
			return
		}
		w.declined = declineString(m.reason)
		r.forget(w)
		r.log.Warn("worker declined the job", "worker", d.From, "reason", w.declined)
	default:
		r.ignore(d.From, "unexpected "+m.typ.String(), nil)
	}
}

// stale reports whether slot of worker w, assigned tile, can be given
// another: the tile is done, or the assignment missed its deadline.
func (r *crun) stale(w uuid.UUID, slot, tile int) bool {
	t := &r.tiles[tile]
	if t.done {
		return true
	}
	for _, a := range t.assignees {
		if a.w == w && a.slot == slot {
			return a.expired
		}
	}
	return true
}

// result takes a tile's pixels from slot of worker from.
func (r *crun) result(from uuid.UUID, slot, tile int, pixels []byte, elapsed time.Duration) {
	w := r.worker(from)
	if w == nil {
		r.ignore(from, "result from an excess worker", nil)
		return
	}
	w.lost = false
	now := time.Now()
	w.heard = now
	t := &r.tiles[tile]
	for i, a := range t.assignees {
		if a.w == from && a.slot == slot {
			lat := now.Sub(a.at)
			r.slowest = max(r.slowest, lat)
			r.latencySum += lat
			r.latencyN++
			t.assignees = slices.Delete(t.assignees, i, i+1)
			break
		}
	}
	if t.done {
		r.rep.Duplicates++
		w.wasted++
	} else {
		t.done = true
		r.done++
		w.tiles++
		w.render += elapsed
		rect, _ := r.job.TileRect(tile)
		row := rect.Dx() * 4
		for y := range rect.Dy() {
			off := r.img.PixOffset(rect.Min.X, rect.Min.Y+y)
			copy(r.img.Pix[off:off+row], pixels[y*row:])
		}
		r.progress()
	}
	// The result asks for the slot's next tile, unless the slot has been
	// handed another tile meanwhile.
	if w.declined == "" {
		if s := &w.slots[slot]; s.state != slotAssigned || s.tile == tile {
			if s.state != slotWaiting {
				r.waiting = append(r.waiting, slotKey{from, slot})
			}
			s.state = slotWaiting
		}
	}
}

func (r *crun) event(ev node.Event) {
	switch ev.Kind {
	case node.TopologyChanged, node.NeighborDown, node.NeighborUp, node.Connected, node.Disconnected:
		r.refreshTopology()
	case node.DeliveryFailed:
		m, err := decode(ev.Body)
		if err != nil || m.jobID != r.job.ID || ev.Broadcast {
			return
		}
		delete(r.announced, ev.Peer)
		if w := r.workers[ev.Peer]; w != nil && !w.local {
			r.log.Info("worker lost: delivery failed", "worker", ev.Peer, "message", m.typ, "err", ev.Err)
			r.lose(w)
		}
	}
}

// refreshTopology announces the job to newly reachable nodes and loses the
// workers that are no longer reachable.
func (r *crun) refreshTopology() {
	tp := r.n.Topology()
	reach := make(map[uuid.UUID]bool, len(tp.Nodes))
	for _, ni := range tp.Nodes {
		if ni.Distance > 0 {
			reach[ni.ID] = true
		}
	}
	for _, w := range r.workers {
		if !w.local && !reach[w.id] && w.active() {
			r.log.Info("worker lost: unreachable", "worker", w.id)
			r.lose(w)
		}
	}
	for id := range r.announced {
		if !reach[id] {
			delete(r.announced, id) // announce again if it comes back
		}
	}
	var newcomers []uuid.UUID
	for _, ni := range tp.Nodes {
		if reach[ni.ID] && !r.announced[ni.ID] {
			newcomers = append(newcomers, ni.ID)
		}
	}
	if len(newcomers) == 0 {
		return
	}
	msg := wireMsg{typ: msgJob, jobID: r.job.ID, job: r.job, fingerprint: r.fp}
	ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
	defer cancel()
	if err := r.n.Multicast(ctx, newcomers, msg.encode()); err != nil {
		r.log.Warn("announcing the job failed", "nodes", len(newcomers), "err", err)
		return
	}
	for _, id := range newcomers {
		r.announced[id] = true
	}
	r.log.Debug("job announced", "nodes", len(newcomers))
}

// reannounce sends the job again to the reachable workers that took part
// and have been quiet for announceRefresh. A worker that holds the job only
// asks again for tiles for its idle slots.
func (r *crun) reannounce(now time.Time) {
	var quiet []uuid.UUID
	for _, w := range r.workers {
		if !w.local && w.declined == "" && r.announced[w.id] && now.Sub(w.heard) >= announceRefresh {
			quiet = append(quiet, w.id)
		}
	}
	if len(quiet) == 0 {
		return
	}
	msg := wireMsg{typ: msgJob, jobID: r.job.ID, job: r.job, fingerprint: r.fp}
	ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
	defer cancel()
	for _, id := range quiet {
		if err := r.n.Send(ctx, id, msg.encode()); err != nil {
			r.log.Warn("announcing the job again failed", "worker", id, "err", err)
		}
	}
}

// lose forgets a worker's slots and hands its tiles out again.
func (r *crun) lose(w *cworker) {
	w.lost = true
	r.forget(w)
}

// forget clears a worker's slots and requeues the tiles only it had.
func (r *crun) forget(w *cworker) {
	for s := range w.slots {
		sl := &w.slots[s]
		if sl.state == slotAssigned {
			t := &r.tiles[sl.tile]
			t.assignees = slices.DeleteFunc(t.assignees, func(a assignee) bool { return a.w == w.id && a.slot == s })
			r.requeue(sl.tile)
		}
		*sl = cslot{}
	}
}

// requeue puts a tile that nobody is working on back in the queue.
func (r *crun) requeue(tile int) {
	t := &r.tiles[tile]
	if t.done || t.queued || t.live() > 0 {
		return
	}
	t.queued = true
	r.retry = append(r.retry, tile)
	r.rep.Reassigned++
}

// expire marks the assignments past their deadline and requeues their tiles.
func (r *crun) expire(now time.Time) {
	for i := range r.tiles {
		t := &r.tiles[i]
		if t.done {
			continue
		}
		for j := range t.assignees {
			if a := &t.assignees[j]; !a.expired && now.After(a.deadline) {
				a.expired = true
				r.log.Info("tile deadline missed", "tile", i, "worker", a.w)
				r.requeue(i)
			}
		}
	}
}

func (r *crun) timeout() time.Duration {
	switch {
	case r.c.cfg.TileTimeout > 0:
		return r.c.cfg.TileTimeout
	case r.latencyN == 0:
		return initialTileTimeout
	}
	return max(minTileTimeout, timeoutFactor*r.slowest)
}

// nextTile picks the tile for a slot of worker w: a requeued one, a fresh
// one, or, when none is left, a tile in flight elsewhere for longer than
// twice the mean tile time (a speculative second copy).
func (r *crun) nextTile(w uuid.UUID, now time.Time) (int, bool) {
	for len(r.retry) > 0 {
		t := r.retry[0]
		r.retry = r.retry[1:]
		r.tiles[t].queued = false
		if !r.tiles[t].done && r.tiles[t].live() == 0 {
			return t, true
		}
	}
	for len(r.fresh) > 0 {
		t := r.fresh[0]
		r.fresh = r.fresh[1:]
		if !r.tiles[t].done {
			return t, true
		}
	}
	if r.latencyN == 0 {
		return 0, false
	}
	after := 2 * r.latencySum / time.Duration(r.latencyN)
	best, bestAt := -1, now
	for i := range r.tiles {
		t := &r.tiles[i]
		if t.done || len(t.assignees) != 1 {
			continue
		}
		if a := t.assignees[0]; a.w != w && !a.expired && now.Sub(a.at) > after && a.at.Before(bestAt) {
			best, bestAt = i, a.at
		}
	}
	if best < 0 {
		return 0, false
	}
	r.rep.Speculative++
	return best, true
}

// dispatch hands tiles to waiting slots, oldest request first.
func (r *crun) dispatch() {
	now := time.Now()
	for len(r.waiting) > 0 {
		k := r.waiting[0]
		w := r.workers[k.w]
		if w == nil || w.lost || w.declined != "" || w.slots[k.slot].state != slotWaiting {
			r.waiting = r.waiting[1:]
			continue
		}
		tile, ok := r.nextTile(k.w, now)
		if !ok {
			return
		}
		r.waiting = r.waiting[1:]
		w.slots[k.slot] = cslot{state: slotAssigned, tile: tile}
		t := &r.tiles[tile]
		t.assignees = append(t.assignees, assignee{w: k.w, slot: k.slot, at: now, deadline: now.Add(r.timeout())})
		if w.local {
			r.localWork <- localTile{slot: k.slot, tile: tile}
			continue
		}
		r.log.Debug("assign", "to", k.w, "slot", k.slot, "tile", tile)
		msg := wireMsg{typ: msgAssign, jobID: r.job.ID, slot: k.slot, tile: tile}
		ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
		err := r.n.Send(ctx, k.w, msg.encode())
		cancel()
		if err != nil {
			r.log.Info("worker lost: send failed", "worker", k.w, "err", err)
			r.lose(w)
		}
	}
}

// finish tells every node that heard of the job that it is over.
func (r *crun) finish(reason uint8) {
	var to []uuid.UUID
	for id := range r.announced {
		to = append(to, id)
	}
	for id, w := range r.workers {
		if !w.local && !r.announced[id] {
			to = append(to, id)
		}
	}
	if len(to) == 0 {
		return
	}
	msg := wireMsg{typ: msgDone, jobID: r.job.ID, reason: reason}
	ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
	defer cancel()
	if err := r.n.Multicast(ctx, to, msg.encode()); err != nil {
		r.log.Warn("telling the workers the job is over failed", "err", err)
	}
}

func (r *crun) progress() {
	if r.c.cfg.Progress == nil {
		return
	}
	active := 0
	for _, w := range r.workers {
		if w.active() {
			active++
		}
	}
	r.c.cfg.Progress(Progress{JobID: r.job.ID, Done: r.done, Total: len(r.tiles), Workers: active, Elapsed: time.Since(r.start)})
}

func (r *crun) nodeReports() []NodeReport {
	out := make([]NodeReport, 0, len(r.workers))
	for _, w := range r.workers {
		out = append(out, NodeReport{ID: w.id, Local: w.local, Tiles: w.tiles, Render: w.render, Wasted: w.wasted, Lost: w.lost, Declined: w.declined})
	}
	slices.SortFunc(out, func(a, b NodeReport) int {
		if a.Tiles != b.Tiles {
			return b.Tiles - a.Tiles
		}
		return slices.Compare(a.ID[:], b.ID[:])
	})
	return out
}
