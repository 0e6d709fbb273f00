package render_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"image"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/render"
	"github.com/distrirender/distrirender/transport/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testLogger logs to stderr when RENDER_LOG is set, and discards otherwise.
func testLogger() *slog.Logger {
	if os.Getenv("RENDER_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// mesh is an in-memory mesh whose node 0 coordinates, with the workers the
// test started; they stop before the nodes close.
type mesh struct {
	*meshtest.Memory
	t       *testing.T
	wg      sync.WaitGroup
	cancels []context.CancelFunc
	workers []*render.Worker
}

// worker starts a Worker on node i; it runs until the test ends or the node
// is killed.
func (m *mesh) worker(i int, cfg render.WorkerConfig, delay time.Duration) *render.Worker {
	m.t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger().With("name", fmt.Sprintf("n%d", i))
	}
	w, err := render.NewWorker(m.Node(i), cfg)
	if err != nil {
		m.t.Fatal(err)
	}
	if delay > 0 {
		render.SetTileDelay(w, delay)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancels = append(m.cancels, cancel)
	m.workers = append(m.workers, w)
	m.wg.Go(func() { _ = w.Run(ctx) })
	return w
}

func (m *mesh) stopWorkers() {
	for _, c := range m.cancels {
		c()
	}
	m.wg.Wait()
}

// build makes a coordinator (node 0) and workers nodes 1..workers, in a tree:
// the first two workers are neighbours of the coordinator, the others hang
// off earlier workers, so that some tiles travel several hops. Balancing is
// off (meshtest.Fast and Lossy), so the tree stays as built.
func build(t *testing.T, seed uint64, workers int, opts ...node.Option) *mesh {
	t.Helper()
	m := &mesh{Memory: meshtest.OnMemory(t, workers+1, seed, opts...), t: t}
	t.Cleanup(m.stopWorkers) // registered after the mesh's: runs before it
	for i := 1; i <= workers; i++ {
		m.Link(i, max(0, i-2))
	}
	m.WaitConverged(20 * time.Second)
	return m
}

// smallJob is a frame cheap enough for the race detector: 64×48 in 8×8
// tiles, 4 samples per pixel.
func smallJob(seed uint64) render.Job {
	return render.Job{Scene: "default", Width: 64, Height: 48, Samples: 4, Depth: 5, Seed: seed, TileSize: 8}
}

// reference renders job on this machine alone.
func reference(t testing.TB, job render.Job) *image.RGBA {
	t.Helper()
	img, err := render.Render(context.Background(), render.Default(), job)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func coordinate(t testing.TB, m *mesh, cfg render.CoordinatorConfig, job render.Job, timeout time.Duration) (*image.RGBA, render.Report) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	c, err := render.NewCoordinator(m.Node(0), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	img, rep, err := c.Run(ctx, job)
	if err != nil {
		t.Fatalf("Run: %v (report %+v)", err, rep)
	}
	return img, rep
}

func sameImage(t testing.TB, what string, got, want *image.RGBA) {
	t.Helper()
	if got.Rect != want.Rect || got.Stride != want.Stride {
		t.Fatalf("%s: image %v stride %d, want %v stride %d", what, got.Rect, got.Stride, want.Rect, want.Stride)
	}
	for i := range want.Pix {
		if got.Pix[i] != want.Pix[i] {
			p := i / 4
			t.Fatalf("%s: pixel (%d,%d) differs: got %v, want %v", what, p%want.Rect.Dx(), p/want.Rect.Dx(), got.Pix[i&^3:i&^3+4], want.Pix[i&^3:i&^3+4])
		}
	}
}

func logReport(t testing.TB, m *mesh, rep render.Report) {
	t.Helper()
	name := map[uuid.UUID]string{}
	for i, nd := range m.Nodes() {
		name[nd.ID()] = fmt.Sprintf("n%d", i)
	}
	t.Logf("%d tiles in %v: reassigned %d, speculative %d, duplicates %d, ignored %d",
		rep.Tiles, rep.Elapsed.Round(time.Millisecond), rep.Reassigned, rep.Speculative, rep.Duplicates, rep.Ignored)
	for _, nr := range rep.Nodes {
		t.Logf("  %s: %d tiles, render %v, wasted %d, lost %v, declined %q", name[nr.ID], nr.Tiles, nr.Render.Round(time.Millisecond), nr.Wasted, nr.Lost, nr.Declined)
	}
}

func tilesOf(rep render.Report, id uuid.UUID) int {
	for _, nr := range rep.Nodes {
		if nr.ID == id {
			return nr.Tiles
		}
	}
	return 0
}

func TestRenderTileMatchesRender(t *testing.T) {
	job := smallJob(7)
	job.TileSize = 20 // uneven: partial tiles on the right and bottom
	img := reference(t, job)
	again := reference(t, job)
	sameImage(t, "second Render", again, img)
	j := job.WithDefaults()
	for i := range j.Tiles() {
		pix, err := render.RenderTile(render.Default(), job, i)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := j.TileRect(i)
		sub := img.SubImage(r).(*image.RGBA)
		for y := range r.Dy() {
			row := pix[y*r.Dx()*4 : (y+1)*r.Dx()*4]
			off := sub.PixOffset(r.Min.X, r.Min.Y+y)
			if string(row) != string(sub.Pix[off:off+len(row)]) {
				t.Fatalf("tile %d row %d differs from Render", i, y)
			}
		}
	}
	// The seed matters; the tile size does not.
	other := job
	other.Seed++
	if string(reference(t, other).Pix) == string(img.Pix) {
		t.Fatal("a different seed rendered the same image")
	}
	other = job
	other.TileSize = 8
	sameImage(t, "other tile size", reference(t, other), img)
	if _, err := render.RenderTile(render.Default(), job, j.Tiles()); err == nil {
		t.Fatal("RenderTile accepted a tile out of range")
	}
}

func TestMeshRenderIdenticalToSingleNode(t *testing.T) {
	job := smallJob(1)
	want := reference(t, job)
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("%d workers", workers), func(t *testing.T) {
			m := build(t, meshtest.Seed(t), workers, meshtest.Fast()...)
			// With several workers every tile takes 5 ms more, so that the
			// job lasts long enough (48 tiles, 2 at a time per worker) for
			// the workers two hops away to ask for tiles before the near
			// ones have taken them all.
			var delay time.Duration
			if workers > 1 {
				delay = 5 * time.Millisecond
			}
			for i := 1; i <= workers; i++ {
				m.worker(i, render.WorkerConfig{Slots: 2}, delay)
			}
			img, rep := coordinate(t, m, render.CoordinatorConfig{}, job, time.Minute)
			logReport(t, m, rep)
			sameImage(t, fmt.Sprintf("%d workers", workers), img, want)
			total := 0
			for _, nr := range rep.Nodes {
				total += nr.Tiles
			}
			if total != rep.Tiles {
				t.Fatalf("nodes delivered %d tiles, want %d", total, rep.Tiles)
			}
			if workers == 4 {
				for i := 1; i <= workers; i++ {
					if tilesOf(rep, m.Node(i).ID()) == 0 {
						t.Errorf("worker n%d rendered nothing", i)
					}
				}
			}
		})
	}
}

func TestJobsInSequence(t *testing.T) {
	m := build(t, meshtest.Seed(t), 3, meshtest.Fast()...)
	for i := 1; i <= 3; i++ {
		m.worker(i, render.WorkerConfig{Slots: 2}, 0)
	}
	c, err := render.NewCoordinator(m.Node(0), render.CoordinatorConfig{LocalSlots: 1})
	if err != nil {
		t.Fatal(err)
	}
	for k, job := range []render.Job{smallJob(1), smallJob(2), {Scene: "default", Width: 37, Height: 23, Samples: 2, Seed: 3, TileSize: 16}} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		img, rep, err := c.Run(ctx, job)
		cancel()
		if err != nil {
			t.Fatalf("job %d: %v", k, err)
		}
		sameImage(t, fmt.Sprintf("job %d", k), img, reference(t, job))
		if rep.Job.ID == 0 || rep.Job.Seed != job.Seed {
			t.Fatalf("job %d: report %+v", k, rep)
		}
	}
}

func TestKillWorkerMidRender(t *testing.T) {
	job := smallJob(5)
	want := reference(t, job)
	m := build(t, meshtest.Seed(t), 3, meshtest.Fast()...)
	// Every tile takes a while, so that the victim has tiles in flight when
	// it dies and the job is not over before its death is noticed.
	victim := 2
	var vw *render.Worker
	for i := 1; i <= 3; i++ {
		delay := 20 * time.Millisecond
		if i == victim {
			delay = 30 * time.Millisecond
		}
		w := m.worker(i, render.WorkerConfig{Slots: 2}, delay)
		if i == victim {
			vw = w
		}
	}
	var once sync.Once
	cfg := render.CoordinatorConfig{Progress: func(p render.Progress) {
		// Kill the victim once it has delivered a tile, from another
		// goroutine: Progress must not block.
		if vw.Stats().Tiles > 0 {
			once.Do(func() { m.wg.Go(func() { m.Kill(victim) }) })
		}
	}}
	img, rep := coordinate(t, m, cfg, job, time.Minute)
	logReport(t, m, rep)
	sameImage(t, "after the kill", img, want)
	var lost bool
	for _, nr := range rep.Nodes {
		if nr.ID == m.Node(victim).ID() {
			lost = nr.Lost
		}
	}
	// The victim's tiles were handed out again: because it was found lost,
	// or, if the others ran out of work first, speculatively.
	if !lost && rep.Speculative == 0 || rep.Reassigned+rep.Speculative == 0 {
		t.Fatalf("victim lost=%v, %d tiles reassigned, %d speculative", lost, rep.Reassigned, rep.Speculative)
	}
}

func TestLossyMesh(t *testing.T) {
	seed := meshtest.Seed(t)
	job := smallJob(seed)
	want := reference(t, job)
	m := build(t, seed, 3, meshtest.Lossy()...)
	for i := range m.Len() {
		for j := i + 1; j < m.Len(); j++ {
			m.Net.SetFaults(m.Addr(i), m.Addr(j), memory.Faults{Loss: 0.1, Duplicate: 0.05, Reorder: 0.05, Jitter: time.Millisecond})
		}
	}
	for i := 1; i <= 3; i++ {
		m.worker(i, render.WorkerConfig{Slots: 2}, 0)
	}
	img, rep := coordinate(t, m, render.CoordinatorConfig{}, job, 2*time.Minute)
	logReport(t, m, rep)
	sameImage(t, "over lossy links", img, want)
	st := m.Net.Stats()
	t.Logf("network: %d frames sent, %d lost", st.Sent, st.Lost)
	if st.Lost == 0 {
		t.Fatal("no frame was lost: the test did not test loss")
	}
}

func TestSlowWorkerGetsFewerTiles(t *testing.T) {
	job := smallJob(3)
	m := build(t, meshtest.Seed(t), 3, meshtest.Fast()...)
	slow := 3
	for i := 1; i <= 3; i++ {
		var delay time.Duration
		if i == slow {
			delay = 100 * time.Millisecond
		}
		m.worker(i, render.WorkerConfig{Slots: 1}, delay)
	}
	img, rep := coordinate(t, m, render.CoordinatorConfig{}, job, time.Minute)
	logReport(t, m, rep)
	sameImage(t, "with a slow worker", img, reference(t, job))
	s := tilesOf(rep, m.Node(slow).ID())
	for i := 1; i <= 3; i++ {
		if i != slow && tilesOf(rep, m.Node(i).ID()) <= s {
			t.Fatalf("fast worker n%d got %d tiles, the slow one %d", i, tilesOf(rep, m.Node(i).ID()), s)
		}
	}
}

func TestCoordinatorAloneWithLocalSlots(t *testing.T) {
	m := build(t, meshtest.Seed(t), 0, meshtest.Fast()...)
	job := smallJob(11)
	var last render.Progress
	img, rep := coordinate(t, m, render.CoordinatorConfig{LocalSlots: 2, Progress: func(p render.Progress) { last = p }}, job, time.Minute)
	sameImage(t, "local slots", img, reference(t, job))
	if len(rep.Nodes) != 1 || !rep.Nodes[0].Local || rep.Nodes[0].Tiles != rep.Tiles || last.Done != last.Total || last.Total != rep.Tiles {
		t.Fatalf("report %+v, last progress %+v", rep, last)
	}
}

func TestWorkerWithAnotherSceneDeclines(t *testing.T) {
	m := build(t, meshtest.Seed(t), 2, meshtest.Fast()...)
	// Worker 1 has a different scene under the same name: its fingerprint
	// differs and it must decline, or the frame would mix two scenes.
	m.worker(1, render.WorkerConfig{Slots: 2, Scenes: func(name string) (*render.Scene, error) {
		s := render.Default()
		s.Spheres[0].Radius *= 1.01
		return s, nil
	}}, 0)
	m.worker(2, render.WorkerConfig{Slots: 2}, 0)
	job := smallJob(4)
	img, rep := coordinate(t, m, render.CoordinatorConfig{}, job, time.Minute)
	logReport(t, m, rep)
	sameImage(t, "with a declining worker", img, reference(t, job))
	for _, nr := range rep.Nodes {
		if nr.ID == m.Node(1).ID() && (nr.Declined == "" || nr.Tiles != 0) {
			t.Fatalf("worker 1: %+v, want declined with no tiles", nr)
		}
	}
	if st := m.workers[0].Stats(); st.Declined != 1 || st.Tiles != 0 {
		t.Fatalf("worker 1 stats %+v", st)
	}
}

func TestHostileMessagesIgnored(t *testing.T) {
	m := build(t, meshtest.Seed(t), 2, meshtest.Fast()...)
	m.worker(1, render.WorkerConfig{Slots: 2}, 0)
	// Node 2 is no worker: it sends junk to the coordinator and to worker 1.
	evil := m.Node(2)
	job := smallJob(8)
	job.ID = 0xabcdef
	hdr := func(typ byte, id uint64) []byte {
		return binary.BigEndian.AppendUint64([]byte{'D', 'R', 1, typ}, id)
	}
	result := func(id uint64, tile uint32, n int) []byte {
		b := append(hdr(4, id), 0)
		b = binary.BigEndian.AppendUint32(b, tile)
		b = binary.BigEndian.AppendUint64(b, 1)
		b = binary.BigEndian.AppendUint32(b, uint32(n))
		return append(b, make([]byte, n)...)
	}
	junk := [][]byte{
		nil,
		[]byte("hello"),
		hdr(1, job.ID),                        // truncated job
		result(job.ID, 1000, 8*8*4),           // tile out of bounds
		result(job.ID, 0, 7*8*4),              // wrong pixel count
		result(job.ID+1, 0, 8*8*4),            // another job: its black pixels must not land
		append(hdr(3, job.ID), 0, 0, 0, 0, 0), // an assignment, to a coordinator
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, b := range junk {
		for _, to := range []int{0, 1} {
			if err := evil.Send(ctx, m.Node(to).ID(), b); err != nil {
				t.Fatal(err)
			}
		}
	}
	img, rep := coordinate(t, m, render.CoordinatorConfig{}, job, time.Minute)
	logReport(t, m, rep)
	sameImage(t, "under junk", img, reference(t, job))
	if rep.Ignored == 0 {
		t.Fatal("no message was counted as ignored")
	}
	meshtest.WaitFor(t, 10*time.Second, "the worker to ignore the junk", func() bool { return m.workers[0].Stats().Ignored >= len(junk)-1 })
}

func TestCancelledJob(t *testing.T) {
	m := build(t, meshtest.Seed(t), 1, meshtest.Fast()...)
	w := m.worker(1, render.WorkerConfig{Slots: 1}, 20*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := render.NewCoordinator(m.Node(0), render.CoordinatorConfig{Progress: func(p render.Progress) {
		if p.Done > 0 {
			cancel()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	img, rep, err := c.Run(ctx, smallJob(2))
	if err != context.Canceled || img != nil {
		t.Fatalf("Run after cancel: %v, image %v", err, img != nil)
	}
	if rep.Tiles != 48 || rep.Job.ID == 0 {
		t.Fatalf("report %+v", rep)
	}
	// The worker hears that the job is over and drops it.
	meshtest.WaitFor(t, 10*time.Second, "the worker to drop the job", func() bool { return w.Stats().Active == 0 })
	// The coordinator runs the next job on the same node.
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	job := smallJob(3)
	img, _, err = c.Run(ctx2, job)
	if err != nil {
		t.Fatal(err)
	}
	sameImage(t, "after a cancelled job", img, reference(t, job))
	if st := w.Stats(); st.Jobs != 2 || st.Active != 0 {
		t.Fatalf("worker stats %+v", st)
	}
}
