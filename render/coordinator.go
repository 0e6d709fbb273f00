package render

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"log/slog"
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
	// sendTimeout bounds a Send to one worker; a worker whose stream stays
	// full that long is treated as lost. Sends to a worker go through its
	// own outbox goroutine, so a slow worker holds up nobody else.
	sendTimeout = 5 * time.Second
	// outboxSize bounds the messages waiting for one worker's outbox: its
	// slots' assignments and a few job announcements. A worker that lets
	// that many pile up is treated as lost.
	outboxSize = 2 * MaxSlots
	// sendFailures bounds the send failures waiting for the loop; beyond
	// it they are dropped, and the tiles' deadlines hand the tiles out
	// again instead.
	sendFailures = 64
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
		c:          c,
		n:          c.n,
		self:       c.n.ID(),
		log:        c.log.With("job", fmt.Sprintf("%016x", job.ID)),
		job:        job,
		comp:       comp,
		fp:         comp.fingerprint(),
		img:        image.NewRGBA(image.Rect(0, 0, job.Width, job.Height)),
		sched:      newScheduler(job.Tiles(), c.cfg.TileTimeout),
		announced:  make(map[uuid.UUID]bool),
		outboxes:   make(map[uuid.UUID]chan []byte),
		sendFailed: make(chan sendFailure, sendFailures),
		sendTo:     c.n.Send,
		start:      time.Now(),
		rep:        &rep,
	}
	rep.Tiles = job.Tiles()
	err = r.run(ctx)
	rep.Elapsed = time.Since(r.start)
	rep.Nodes = r.sched.nodeReports()
	rep.Reassigned, rep.Speculative, rep.Duplicates = r.sched.reassigned, r.sched.speculative, r.sched.duplicates
	if err != nil {
		return nil, rep, err
	}
	return r.img, rep, nil
}

// localTile is a tile for the coordinator's own slots, and its result.
type localTile struct {
	slot, tile int
	pixels     []byte
	elapsed    time.Duration
}

// sendFailure is a message to a worker that its outbox could not send.
type sendFailure struct {
	w   uuid.UUID
	err error
}

// crun is the state of one Run, owned by its goroutine: the I/O around the
// pure scheduler (schedule.go).
type crun struct {
	c     *Coordinator
	n     *node.Node
	self  uuid.UUID
	log   *slog.Logger
	job   Job
	comp  *compiled
	fp    uint64
	img   *image.RGBA
	rep   *Report
	sched *scheduler

	announced map[uuid.UUID]bool

	// outboxes holds one queue per worker, drained by its own goroutine
	// (counted in wg), so that Send blocking on one worker's full window
	// never holds up the loop; failures come back on sendFailed.
	outboxes   map[uuid.UUID]chan []byte
	sendFailed chan sendFailure
	// sendTo is n.Send; tests replace it.
	sendTo func(ctx context.Context, to uuid.UUID, body []byte) error
	ctx    context.Context
	wg     *sync.WaitGroup

	start        time.Time
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
	r.ctx, r.wg = rctx, &wg
	deliveries, recvErr := receive(rctx, r.n, &wg)

	if k := r.c.cfg.LocalSlots; k > 0 {
		r.localWork = make(chan localTile, k)
		r.localResults = make(chan localTile, k)
		r.sched.addLocal(r.self, k)
		for range k {
			wg.Go(func() { r.localSlot(rctx) })
		}
	}

	r.lastRefresh = r.start
	r.progress()
	r.refreshTopology()
	r.dispatch(time.Now())
	// One timer, set to the next moment the scheduler or the announcements
	// need the loop: nothing polls.
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for !r.sched.complete() {
		timer.Reset(time.Until(r.nextWake()))
		select {
		case d := <-deliveries:
			r.handle(d, time.Now())
		case lt := <-r.localResults:
			r.result(r.self, lt.slot, lt.tile, lt.pixels, lt.elapsed, time.Now())
		case ev, ok := <-r.n.Events():
			if !ok {
				return fmt.Errorf("render: coordinator: %w", node.ErrClosed)
			}
			r.event(ev)
		case f := <-r.sendFailed:
			delete(r.announced, f.w)
			if r.sched.lose(f.w) {
				r.log.Info("worker lost: send failed", "worker", f.w, "err", f.err)
			}
		case now := <-timer.C:
			for _, m := range r.sched.expire(now) {
				r.log.Info("tile deadline missed", "tile", m.tile, "worker", m.w)
			}
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
		r.dispatch(time.Now())
	}
	r.finish(doneComplete)
	return nil
}

// nextWake is when the loop must wake up if nothing arrives: the
// scheduler's next deadline, or the next announcement refresh.
func (r *crun) nextWake() time.Time {
	at := r.lastRefresh.Add(announceRefresh)
	if w, ok := r.sched.nextWake(time.Now()); ok && w.Before(at) {
		at = w
	}
	return at
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

// send queues msg for worker to in its outbox, starting the outbox's
// goroutine on first use. It never blocks: a worker whose outbox is full
// is reported lost.
func (r *crun) send(to uuid.UUID, msg []byte) {
	box := r.outboxes[to]
	if box == nil {
		box = make(chan []byte, outboxSize)
		r.outboxes[to] = box
		r.wg.Go(func() { r.outbox(to, box) })
	}
	select {
	case box <- msg:
	default:
		r.failed(to, errors.New("render: the worker's outbox is full"))
	}
}

// outbox sends the messages queued for worker to, in order, each within
// sendTimeout, until the run ends.
func (r *crun) outbox(to uuid.UUID, box <-chan []byte) {
	for {
		select {
		case msg := <-box:
			ctx, cancel := context.WithTimeout(r.ctx, sendTimeout)
			err := r.sendTo(ctx, to, msg)
			cancel()
			if err != nil && r.ctx.Err() == nil {
				r.failed(to, err)
			}
		case <-r.ctx.Done():
			return
		}
	}
}

// failed reports a message to worker to that could not be sent. It never
// blocks: when sendFailed is full the failure is dropped, and the deadlines
// of the worker's tiles hand them out again.
func (r *crun) failed(to uuid.UUID, err error) {
	select {
	case r.sendFailed <- sendFailure{w: to, err: err}:
	default:
	}
}

func (r *crun) ignore(from uuid.UUID, why string, err error) {
	r.rep.Ignored++
	if c := r.rep.Ignored; c&(c-1) == 0 {
		r.log.Warn("ignored message", "from", from, "why", why, "err", err, "total", c)
	}
}

func (r *crun) handle(d node.Delivery, now time.Time) {
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
		if !r.sched.request(d.From, m.slot, now) {
			r.ignore(d.From, "request from a declined or excess worker", nil)
		}
	case msgResult:
		if err := m.checkTile(&r.job); err != nil {
			r.ignore(d.From, "bad result", err)
			return
		}
		r.result(d.From, m.slot, m.tile, m.pixels, m.elapsed, now)
	case msgDecline:
		reason := declineString(m.reason)
		if r.sched.decline(d.From, reason) {
			r.log.Warn("worker declined the job", "worker", d.From, "reason", reason)
		}
	default:
		r.ignore(d.From, "unexpected "+m.typ.String(), nil)
	}
}

// result takes a tile's pixels from slot of worker from.
func (r *crun) result(from uuid.UUID, slot, tile int, pixels []byte, elapsed time.Duration, now time.Time) {
	fresh, ok := r.sched.result(from, slot, tile, elapsed, now)
	if !ok {
		r.ignore(from, "result from an excess worker", nil)
		return
	}
	if !fresh {
		return
	}
	rect, _ := r.job.TileRect(tile)
	row := rect.Dx() * 4
	for y := range rect.Dy() {
		off := r.img.PixOffset(rect.Min.X, rect.Min.Y+y)
		copy(r.img.Pix[off:off+row], pixels[y*row:])
	}
	r.progress()
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
		if r.sched.lose(ev.Peer) {
			r.log.Info("worker lost: delivery failed", "worker", ev.Peer, "message", m.typ, "err", ev.Err)
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
	for _, id := range r.sched.loseUnreachable(reach) {
		r.log.Info("worker lost: unreachable", "worker", id)
	}
	for id := range r.announced {
		if !reach[id] {
			delete(r.announced, id) // announce again if it comes back
		}
	}
	job := r.jobMessage()
	n := 0
	for _, ni := range tp.Nodes {
		if reach[ni.ID] && !r.announced[ni.ID] {
			r.announced[ni.ID] = true
			r.send(ni.ID, job)
			n++
		}
	}
	if n > 0 {
		r.log.Debug("job announced", "nodes", n)
	}
}

// jobMessage is the job's announcement.
func (r *crun) jobMessage() []byte {
	msg := wireMsg{typ: msgJob, jobID: r.job.ID, job: r.job, fingerprint: r.fp}
	return msg.encode()
}

// reannounce sends the job again to the reachable workers that took part
// and have been quiet for announceRefresh. A worker that holds the job only
// asks again for tiles for its idle slots.
func (r *crun) reannounce(now time.Time) {
	var job []byte
	for _, id := range r.sched.quiet(now, announceRefresh) {
		if !r.announced[id] {
			continue
		}
		if job == nil {
			job = r.jobMessage()
		}
		r.send(id, job)
	}
}

// dispatch hands tiles to waiting slots and sends the assignments, without
// waiting for any worker.
func (r *crun) dispatch(now time.Time) {
	for _, a := range r.sched.dispatch(now) {
		if a.local {
			r.localWork <- localTile{slot: a.slot, tile: a.tile}
			continue
		}
		r.log.Debug("assign", "to", a.w, "slot", a.slot, "tile", a.tile)
		msg := wireMsg{typ: msgAssign, jobID: r.job.ID, slot: a.slot, tile: a.tile}
		r.send(a.w, msg.encode())
	}
}

// finish tells every node that heard of the job that it is over.
func (r *crun) finish(reason uint8) {
	var to []uuid.UUID
	for id := range r.announced {
		to = append(to, id)
	}
	for id, w := range r.sched.workers {
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
	r.c.cfg.Progress(Progress{JobID: r.job.ID, Done: r.sched.done, Total: len(r.sched.tiles), Workers: r.sched.activeWorkers(), Elapsed: time.Since(r.start)})
}
