package render

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/node"
)

// Worker defaults.
const (
	// DefaultMaxJobs is how many jobs a worker takes part in at once unless
	// WorkerConfig.MaxJobs says otherwise.
	DefaultMaxJobs = 4
	// DefaultRequestRefresh is how long a slot waits for a tile before it
	// asks again, in case the coordinator forgot it (it lost sight of the
	// worker for a moment).
	DefaultRequestRefresh = 5 * time.Second
	// slotQueue is how many assignments a slot holds beyond the one it
	// renders; more only come if the coordinator lost track of the slot.
	slotQueue = 4
	// reachGrace is how long a coordinator must have been silent before the
	// worker believes its topology that the coordinator is unreachable: a
	// job announcement can arrive before the routes to its sender do.
	reachGrace = 2 * time.Second
)

// WorkerConfig configures a Worker. The zero value is usable.
type WorkerConfig struct {
	// Logger receives the worker's logs; nil discards them.
	Logger *slog.Logger
	// Scenes resolves a job's scene name; nil means Lookup.
	Scenes func(name string) (*Scene, error)
	// Slots is how many tiles the worker renders at once, each on its own
	// goroutine; zero means GOMAXPROCS.
	Slots int
	// Ahead is how many more tiles of a job the worker asks for than it
	// renders at once, so that the next tile is already there when one is
	// done and the network's round trip costs no rendering time; zero means
	// Slots, and a negative value none. Slots+Ahead is at most MaxSlots.
	Ahead int
	// MaxJobs is how many jobs (from different coordinators, or one after
	// another before the first's end is heard of) the worker holds at once;
	// zero means DefaultMaxJobs. It declines jobs beyond that.
	MaxJobs int
	// RequestRefresh is how long a slot waits for a tile before asking again;
	// zero means DefaultRequestRefresh.
	RequestRefresh time.Duration
}

// WorkerStats counts what a Worker did.
type WorkerStats struct {
	// Jobs is the number of jobs the worker took part in.
	Jobs int
	// Active is the number of jobs it holds now.
	Active int
	// Tiles is the number of tiles it rendered and sent.
	Tiles int
	// Render is the time spent rendering them, summed over slots.
	Render time.Duration
	// Declined is the number of jobs it refused.
	Declined int
	// Ignored counts messages that were malformed or out of place.
	Ignored int
}

// Worker renders tiles for the coordinators of the mesh. While Run runs it
// consumes the node's Receive and Events; a node runs one Coordinator or one
// Worker at a time.
type Worker struct {
	n       *node.Node
	cfg     WorkerConfig
	log     *slog.Logger
	running atomic.Bool

	mu    sync.Mutex
	stats WorkerStats

	// cpu holds a token per tile being rendered: at most Slots at once, over
	// all jobs.
	cpu chan struct{}

	// tileDelay, a test hook, is added to the time each tile takes.
	tileDelay time.Duration
}

// NewWorker returns a worker that serves jobs on node n.
func NewWorker(n *node.Node, cfg WorkerConfig) (*Worker, error) {
	if n == nil {
		return nil, errors.New("render: nil node")
	}
	if cfg.Slots == 0 {
		cfg.Slots = min(runtime.GOMAXPROCS(0), MaxSlots)
	}
	switch {
	case cfg.Ahead == 0:
		cfg.Ahead = cfg.Slots
	case cfg.Ahead < 0:
		cfg.Ahead = 0
	}
	if cfg.Slots < 1 || cfg.Slots+cfg.Ahead > MaxSlots {
		return nil, fmt.Errorf("render: Slots %d + Ahead %d not within 1..%d", cfg.Slots, cfg.Ahead, MaxSlots)
	}
	if cfg.MaxJobs == 0 {
		cfg.MaxJobs = DefaultMaxJobs
	}
	if cfg.MaxJobs < 1 {
		return nil, fmt.Errorf("render: MaxJobs %d", cfg.MaxJobs)
	}
	if cfg.RequestRefresh == 0 {
		cfg.RequestRefresh = DefaultRequestRefresh
	}
	if cfg.RequestRefresh < 0 {
		return nil, errors.New("render: negative RequestRefresh")
	}
	if cfg.Scenes == nil {
		cfg.Scenes = Lookup
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Worker{n: n, cfg: cfg, log: log.With("worker", n.ID().String()[:8]), cpu: make(chan struct{}, cfg.Slots)}, nil
}

// Stats returns what the worker did so far.
func (w *Worker) Stats() WorkerStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

type jobKey struct {
	coord uuid.UUID
	id    uint64
}

type wslot struct {
	busy        bool
	queue       []int
	requestedAt time.Time
}

type wjob struct {
	key    jobKey
	job    Job
	comp   *compiled
	ctx    context.Context
	cancel context.CancelFunc
	slots  []wslot
	tiles  int
	heard  time.Time // last message from the coordinator
}

// slotDone is what a slot's goroutine reports when its tile is sent.
type slotDone struct {
	key  jobKey
	slot int
	err  error
}

// Run serves jobs until ctx ends (it then returns ctx's error) or the node
// closes. For each job a coordinator announces, the worker asks for
// Slots+Ahead tiles, one per slot of the job protocol; it renders Slots of
// them at once and sends each back as it is done, which asks for the next. The worker drops a
// job when its coordinator says it is over, becomes unreachable, or cannot be
// sent to. Run can be called again after it returns, but not concurrently.
func (w *Worker) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return ErrBusy
	}
	defer w.running.Store(false)
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	jobs := make(map[jobKey]*wjob)
	defer func() {
		cancel()
		for _, j := range jobs {
			j.cancel()
		}
		wg.Wait()
	}()
	deliveries, recvErr := receive(rctx, w.n, &wg)
	done := make(chan slotDone)
	refresh := min(w.cfg.RequestRefresh/4, time.Second)
	tick := time.NewTicker(max(refresh, time.Millisecond))
	defer tick.Stop()

	active := func() {
		w.mu.Lock()
		w.stats.Active = len(jobs)
		w.mu.Unlock()
	}
	defer func() {
		clear(jobs)
		active()
	}()
	drop := func(j *wjob, why string) {
		j.cancel()
		delete(jobs, j.key)
		active()
		w.log.Info("job over", "coordinator", j.key.coord, "job", fmt.Sprintf("%016x", j.key.id), "why", why, "tiles", j.tiles)
	}
	start := func(j *wjob, s, tile int) {
		j.slots[s].busy = true
		wg.Go(func() {
			err := w.renderAndSend(j, s, tile)
			select {
			case done <- slotDone{key: j.key, slot: s, err: err}:
			case <-rctx.Done():
			}
		})
	}
	request := func(j *wjob, s int) {
		j.slots[s].requestedAt = time.Now()
		m := wireMsg{typ: msgRequest, jobID: j.key.id, slot: s}
		sctx, scancel := context.WithTimeout(j.ctx, sendTimeout)
		defer scancel()
		if err := w.n.Send(sctx, j.key.coord, m.encode()); err != nil && j.ctx.Err() == nil {
			w.log.Warn("asking for a tile failed", "coordinator", j.key.coord, "err", err)
		}
	}

	for {
		select {
		case d := <-deliveries:
			m, err := decode(d.Body)
			if err != nil {
				w.ignore(d.From, "undecodable", err)
				continue
			}
			key := jobKey{d.From, m.jobID}
			j := jobs[key]
			if j != nil {
				j.heard = time.Now()
			}
			w.log.Debug("received", "from", d.From, "type", m.typ, "slot", m.slot, "tile", m.tile)
			switch m.typ {
			case msgJob:
				if j != nil {
					// Announced again: the coordinator may have lost sight of
					// us, so the idle slots ask again.
					for s := range j.slots {
						if !j.slots[s].busy {
							request(j, s)
						}
					}
					continue
				}
				j, reason := w.accept(rctx, key, m, len(jobs))
				if j == nil {
					w.decline(ctx, key, reason)
					continue
				}
				jobs[key] = j
				active()
				w.log.Info("job accepted", "coordinator", key.coord, "job", fmt.Sprintf("%016x", key.id),
					"size", fmt.Sprintf("%dx%d", j.job.Width, j.job.Height), "samples", j.job.Samples, "tiles", j.job.Tiles())
				for s := range j.slots {
					request(j, s)
				}
			case msgAssign:
				if j == nil {
					w.ignore(d.From, "assignment for a job not held", nil)
					continue
				}
				if err := m.checkTile(&j.job); err != nil || m.slot >= len(j.slots) {
					w.ignore(d.From, "bad assignment", err)
					continue
				}
				sl := &j.slots[m.slot]
				switch {
				case !sl.busy:
					start(j, m.slot, m.tile)
				case len(sl.queue) < slotQueue:
					sl.queue = append(sl.queue, m.tile)
				default:
					w.ignore(d.From, "slot queue full", nil)
				}
			case msgDone:
				if j != nil {
					drop(j, "done")
				}
			default:
				w.ignore(d.From, "unexpected "+m.typ.String(), nil)
			}
		case sd := <-done:
			j := jobs[sd.key]
			if j == nil {
				continue
			}
			if sd.err != nil && j.ctx.Err() == nil {
				drop(j, "sending a result failed: "+sd.err.Error())
				continue
			}
			j.tiles++
			sl := &j.slots[sd.slot]
			sl.busy = false
			sl.requestedAt = time.Now() // the result asked for the next tile
			if len(sl.queue) > 0 {
				t := sl.queue[0]
				sl.queue = sl.queue[1:]
				start(j, sd.slot, t)
			}
		case ev, ok := <-w.n.Events():
			if !ok {
				return fmt.Errorf("render: worker: %w", node.ErrClosed)
			}
			w.event(ev, jobs, drop)
		case now := <-tick.C:
			w.checkCoordinators(jobs, drop)
			for _, j := range jobs {
				for s := range j.slots {
					if sl := &j.slots[s]; !sl.busy && now.Sub(sl.requestedAt) >= w.cfg.RequestRefresh {
						request(j, s)
					}
				}
			}
		case err := <-recvErr:
			if ctx.Err() == nil {
				return fmt.Errorf("render: worker: %w", err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// accept prepares a job announced by a coordinator, or says why not.
func (w *Worker) accept(ctx context.Context, key jobKey, m wireMsg, held int) (*wjob, uint8) {
	if held >= w.cfg.MaxJobs {
		return nil, declineBusy
	}
	scene, err := w.cfg.Scenes(m.job.Scene)
	if err != nil || scene == nil || scene.Name != m.job.Scene {
		return nil, declineUnknownScene
	}
	comp, err := compile(scene)
	if err != nil {
		return nil, declineInvalid
	}
	if comp.fingerprint() != m.fingerprint {
		return nil, declineFingerprint
	}
	jctx, cancel := context.WithCancel(ctx)
	w.mu.Lock()
	w.stats.Jobs++
	w.mu.Unlock()
	return &wjob{key: key, job: m.job, comp: comp, ctx: jctx, cancel: cancel, slots: make([]wslot, w.cfg.Slots+w.cfg.Ahead), heard: time.Now()}, 0
}

func (w *Worker) decline(ctx context.Context, key jobKey, reason uint8) {
	w.mu.Lock()
	w.stats.Declined++
	w.mu.Unlock()
	w.log.Warn("declining job", "coordinator", key.coord, "job", fmt.Sprintf("%016x", key.id), "reason", declineString(reason))
	m := wireMsg{typ: msgDecline, jobID: key.id, reason: reason}
	sctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	_ = w.n.Send(sctx, key.coord, m.encode())
}

func (w *Worker) ignore(from uuid.UUID, why string, err error) {
	w.mu.Lock()
	w.stats.Ignored++
	c := w.stats.Ignored
	w.mu.Unlock()
	if c&(c-1) == 0 {
		w.log.Warn("ignored message", "from", from, "why", why, "err", err, "total", c)
	}
}

// event drops the jobs whose coordinator is gone.
func (w *Worker) event(ev node.Event, jobs map[jobKey]*wjob, drop func(*wjob, string)) {
	if len(jobs) == 0 {
		return
	}
	switch ev.Kind {
	case node.TopologyChanged, node.NeighborDown, node.Disconnected:
		w.checkCoordinators(jobs, drop)
	case node.DeliveryFailed:
		m, err := decode(ev.Body)
		if err != nil {
			return
		}
		if j := jobs[jobKey{ev.Peer, m.jobID}]; j != nil {
			drop(j, "delivery to the coordinator failed")
		}
	}
}

// checkCoordinators drops the jobs whose coordinator is unreachable and
// has been silent for reachGrace.
func (w *Worker) checkCoordinators(jobs map[jobKey]*wjob, drop func(*wjob, string)) {
	now := time.Now()
	quiet := false
	for _, j := range jobs {
		quiet = quiet || now.Sub(j.heard) >= reachGrace
	}
	if !quiet {
		return
	}
	reach := map[uuid.UUID]bool{}
	for _, ni := range w.n.Topology().Nodes {
		if ni.Distance > 0 {
			reach[ni.ID] = true
		}
	}
	for _, j := range jobs {
		if !reach[j.key.coord] && now.Sub(j.heard) >= reachGrace {
			drop(j, "coordinator unreachable")
		}
	}
}

// renderAndSend renders one tile and sends it to the job's coordinator.
func (w *Worker) renderAndSend(j *wjob, slot, tile int) error {
	select {
	case w.cpu <- struct{}{}:
	case <-j.ctx.Done():
		return j.ctx.Err()
	}
	start := time.Now()
	pix, err := w.render(j, tile)
	elapsed := time.Since(start)
	<-w.cpu
	if err != nil {
		return err
	}
	m := wireMsg{typ: msgResult, jobID: j.key.id, slot: slot, tile: tile, elapsed: elapsed, pixels: pix}
	if err := w.n.Send(j.ctx, j.key.coord, m.encode()); err != nil {
		return err
	}
	w.mu.Lock()
	w.stats.Tiles++
	w.stats.Render += elapsed
	w.mu.Unlock()
	return nil
}

func (w *Worker) render(j *wjob, tile int) ([]byte, error) {
	if w.tileDelay > 0 {
		t := time.NewTimer(w.tileDelay)
		select {
		case <-t.C:
		case <-j.ctx.Done():
			t.Stop()
			return nil, j.ctx.Err()
		}
	}
	return j.comp.renderTile(j.ctx, &j.job, tile)
}
