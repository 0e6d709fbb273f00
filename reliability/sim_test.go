package reliability

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/testutil"
	"github.com/distrirender/distrirender/message"
)

// The simulation harness: senders and receivers exchange packets over
// simulated lossy links in virtual time. Everything is driven by one seeded
// RNG and one event queue, so a run is replayed exactly from its seed
// (MESH_SEED=<seed> go test -run <Test> ./reliability/).

// sim is a discrete-event simulator.
type sim struct {
	rng *rand.Rand
	now time.Time
	q   eventQueue
	ids uint64
}

type event struct {
	at time.Time
	id uint64 // FIFO among events at the same time
	fn func()
}

type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].id < q[j].id
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

func newSim(seed uint64) *sim {
	return &sim{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: t0}
}

func (s *sim) at(t time.Time, fn func()) {
	s.ids++
	heap.Push(&s.q, &event{at: t, id: s.ids, fn: fn})
}

func (s *sim) after(d time.Duration, fn func()) { s.at(s.now.Add(d), fn) }

// run processes events, calling tick whenever the earliest timer (from
// deadline) is due before the next event, until done() or the virtual time
// passes limit. It reports whether done() became true.
func (s *sim) run(limit time.Time, deadline func() (time.Time, bool), tick func(), done func() bool) bool {
	for !done() {
		dl, ok := deadline()
		if ok && (len(s.q) == 0 || !dl.After(s.q[0].at)) {
			if dl.After(s.now) {
				s.now = dl
			}
			if s.now.After(limit) {
				return false
			}
			tick()
			continue
		}
		if len(s.q) == 0 {
			return done()
		}
		e := heap.Pop(&s.q).(*event)
		s.now = e.at
		if s.now.After(limit) {
			return false
		}
		e.fn()
	}
	return true
}

// linkConfig describes one direction of a simulated link.
type linkConfig struct {
	Loss, Dup     float64       // probability of losing / duplicating a packet
	Delay, Jitter time.Duration // one-way delay: Delay + uniform [0, Jitter)
	// FIFO links deliver in send order, except that with probability
	// ReorderP a packet is held back and overtaken by 1..ReorderMax packets
	// sent after it (at most one held at a time, released after 4*Delay at
	// the latest). Other links reorder freely within Jitter.
	FIFO       bool
	ReorderP   float64
	ReorderMax int
}

type link struct {
	sim     *sim
	cfg     linkConfig
	deliver func(any)
	down    bool // drops everything while true
	last    time.Time
	held    *heldPkt
	sent    int // packets handed to the link
}

type heldPkt struct {
	p    any
	left int
}

func (l *link) send(p any) {
	l.sent++
	if l.held != nil { // a later packet is sent (even if it is then lost)
		if l.held.left--; l.held.left <= 0 {
			h := l.held
			l.held = nil
			defer l.schedule(h.p)
		}
	}
	if l.down || l.sim.rng.Float64() < l.cfg.Loss {
		return
	}
	l.enqueue(p)
	if l.sim.rng.Float64() < l.cfg.Dup {
		l.enqueue(p)
	}
}

func (l *link) enqueue(p any) {
	if l.cfg.FIFO && l.held == nil && l.cfg.ReorderMax > 0 && l.sim.rng.Float64() < l.cfg.ReorderP {
		h := &heldPkt{p: p, left: 1 + l.sim.rng.IntN(l.cfg.ReorderMax)}
		l.held = h
		l.sim.after(4*l.cfg.Delay+l.cfg.Jitter, func() {
			if l.held == h {
				l.held = nil
				l.schedule(h.p)
			}
		})
		return
	}
	l.schedule(p)
}

func (l *link) schedule(p any) {
	d := l.cfg.Delay
	if l.cfg.Jitter > 0 {
		d += time.Duration(l.sim.rng.Int64N(int64(l.cfg.Jitter)))
	}
	at := l.sim.now.Add(d)
	if l.cfg.FIFO {
		if at.Before(l.last) {
			at = l.last
		}
		l.last = at
	}
	l.sim.at(at, func() {
		if !l.down {
			l.deliver(p)
		}
	})
}

// gap is the protocol's margin against old packets (Modulo - Window -
// MaxSkip - 1): the simulated links never let a data packet be overtaken by
// more packets than that.
func gap(c Config) int {
	c = c.WithDefaults()
	return int(c.Modulo) - c.Window - int(c.MaxSkip()) - 1
}

func msgBody(i int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(i)) }
func msgNum(b []byte) int  { return int(binary.BigEndian.Uint64(b)) }

// endpoint is one receiving node in a simulation, and the ledger of what it
// got.
type endpoint struct {
	id        uuid.UUID
	r         *Receiver
	data, ack *link
	popEvery  time.Duration // 0: pop as soon as data arrives
	delivered []int
	maxBuf    int
	verdicts  [5]int
}

// simResult summarises a run.
type simResult struct {
	virtual      time.Duration
	retransmits  int
	failures     map[uuid.UUID]map[int]error
	staleAcks    int
	dataPackets  int
	finished     bool
	wraps        int
	maxDelivered int
}

// checkDelivery verifies an endpoint's ledger: strictly increasing message
// numbers (in order, exactly once), and every message in want either
// delivered or reported failed for it.
func checkDelivery(t *testing.T, ep *endpoint, want []int, failed map[int]error) {
	t.Helper()
	for i := 1; i < len(ep.delivered); i++ {
		if ep.delivered[i] <= ep.delivered[i-1] {
			t.Fatalf("%s: delivered %d after %d (out of order or twice)", ep.id, ep.delivered[i], ep.delivered[i-1])
		}
	}
	got := make(map[int]bool, len(ep.delivered))
	for _, m := range ep.delivered {
		got[m] = true
	}
	for _, m := range want {
		if !got[m] && failed[m] == nil {
			t.Fatalf("%s: message %d neither delivered nor reported failed", ep.id, m)
		}
	}
}

// uniParams configures a unicast simulation.
type uniParams struct {
	cfg       Config
	n         int
	data, ack linkConfig
	popEvery  time.Duration
	limit     time.Duration // virtual time limit
	outage    [2]time.Duration
}

// runUnicast streams p.n messages from one sender to one receiver and
// checks the delivery invariant.
func runUnicast(t *testing.T, seed uint64, p uniParams) simResult {
	t.Helper()
	sm := newSim(seed)
	const epoch = 7
	dst := uuid.New()
	s := NewSender(p.cfg, epoch)
	ep := &endpoint{id: dst, r: NewReceiver(p.cfg), popEvery: p.popEvery}
	res := simResult{failures: map[uuid.UUID]map[int]error{dst: {}}}
	produced := 0

	produce := func() {
		for produced < p.n && !s.Full() {
			pkt, err := s.Push(sm.now, msgBody(produced), []uuid.UUID{dst})
			if err != nil {
				t.Fatalf("Push: %v", err)
			}
			produced++
			res.dataPackets++
			ep.data.send(pkt)
		}
	}
	sendAck := func() { ep.ack.send(ep.r.Ack()) }
	popAll := func() bool {
		popped := false
		for {
			b, _, ok := ep.r.Pop()
			if !ok {
				return popped
			}
			popped = true
			ep.delivered = append(ep.delivered, msgNum(b))
		}
	}
	ep.data = &link{sim: sm, cfg: p.data, deliver: func(x any) {
		pkt := x.(Packet)
		v, err := ep.r.OnData(epoch, pkt.Seq, pkt.Base, pkt.Body)
		if err != nil {
			t.Fatalf("t=%v OnData(%d, %d): %v", sm.now.Sub(t0), pkt.Seq, pkt.Base, err)
		}
		ep.verdicts[v]++
		ep.maxBuf = max(ep.maxBuf, ep.r.Buffered())
		if ep.r.Buffered() > p.cfg.WithDefaults().Window {
			t.Fatalf("receiver buffers %d", ep.r.Buffered())
		}
		if ep.popEvery == 0 {
			popAll()
		}
		sendAck()
	}}
	ep.ack = &link{sim: sm, cfg: p.ack, deliver: func(x any) {
		_, err := s.OnAck(sm.now, dst, x.(message.Ack))
		switch {
		case err == nil:
		case errors.Is(err, ErrStaleAck):
			res.staleAcks++
		default: // ErrInvalidAck included: the receiver is honest
			t.Fatalf("t=%v OnAck(%+v): %v", sm.now.Sub(t0), x, err)
		}
		produce()
	}}
	if ep.popEvery > 0 {
		var app func()
		app = func() {
			if b, _, ok := ep.r.Pop(); ok {
				ep.delivered = append(ep.delivered, msgNum(b))
				sendAck() // window update
			}
			sm.after(time.Duration(1+sm.rng.Int64N(int64(2*ep.popEvery))), app)
		}
		sm.after(ep.popEvery, app)
	}
	if p.outage[1] > 0 {
		sm.after(p.outage[0], func() { ep.data.down, ep.ack.down = true, true })
		sm.after(p.outage[1], func() { ep.data.down, ep.ack.down = false, false })
	}

	produce()
	tick := func() {
		resend, failed := s.Tick(sm.now)
		res.retransmits += len(resend)
		for _, r := range resend {
			if r.Target != dst {
				t.Fatalf("retransmission to %s", r.Target)
			}
			ep.data.send(r.Packet)
		}
		for _, f := range failed {
			if !errors.Is(f.Err, ErrRetriesExhausted) {
				t.Fatalf("failure %v", f.Err)
			}
			res.failures[dst][msgNum(f.Body)] = f.Err
		}
		produce()
	}
	done := func() bool {
		return produced == p.n && s.InFlight() == 0
	}
	res.finished = sm.run(t0.Add(p.limit), s.Deadline, tick, done)
	res.virtual = sm.now.Sub(t0)
	if !res.finished {
		t.Fatalf("not finished after %v virtual: produced %d, in flight %d, delivered %d, base %d, receiver at %d",
			res.virtual, produced, s.InFlight(), len(ep.delivered), s.Base(), ep.r.Next())
	}
	// Drain: the application pops what is left.
	popAll()
	all := make([]int, p.n)
	for i := range all {
		all[i] = i
	}
	checkDelivery(t, ep, all, res.failures[dst])
	res.wraps = p.n / int(p.cfg.WithDefaults().Modulo)
	res.maxDelivered = len(ep.delivered)
	t.Logf("%d messages (%d wraps) in %v virtual: %d delivered, %d failed, %d retransmissions, %d stale acks, verdicts %v, max buffered %d",
		p.n, res.wraps, res.virtual, len(ep.delivered), len(res.failures[dst]), res.retransmits, res.staleAcks, ep.verdicts, ep.maxBuf)
	return res
}

func simSize(t *testing.T, n int) int {
	if testing.Short() {
		return n / 10
	}
	return n
}

func TestSimUnicast(t *testing.T) {
	seed := testutil.Seed(t)
	jittery := func(loss, dup float64) linkConfig {
		return linkConfig{Loss: loss, Dup: dup, Delay: 5 * ms, Jitter: 10 * ms}
	}
	// Small moduli: data packets are overtaken by at most Gap later ones;
	// acks stay in order (see docs/PROTOCOL.md (Part 4), Assumptions).
	fifo := func(loss, dup float64) linkConfig {
		return linkConfig{Loss: loss, Dup: dup, Delay: 5 * ms, Jitter: 2 * ms, FIFO: true, ReorderP: 0.1}
	}
	base := Config{InitialRTO: 50 * ms, MinRTO: 10 * ms, MaxRTO: time.Second}
	small := base
	small.Window, small.Modulo = 10, 20
	tests := []struct {
		name       string
		p          uniParams
		noFailures bool
	}{
		{"lossless", uniParams{cfg: base, n: 20000, data: jittery(0, 0), ack: jittery(0, 0)}, true},
		{"modulo 10000, moderate loss", uniParams{cfg: base, n: 100000, data: jittery(0.05, 0.05), ack: jittery(0.05, 0.05)}, true},
		{"modulo 10000, 20% loss 10% dup", uniParams{cfg: base, n: 100000, data: jittery(0.2, 0.1), ack: jittery(0.2, 0.1)}, false},
		{"modulo 20, moderate loss", uniParams{cfg: small, n: 50000, data: fifo(0.05, 0.05), ack: fifo(0.05, 0.05)}, true},
		{"modulo 20, 20% loss 10% dup", uniParams{cfg: small, n: 50000, data: fifo(0.2, 0.1), ack: fifo(0.2, 0.1)}, false},
		{"window 256", uniParams{cfg: Config{Window: 256, Modulo: 512, InitialRTO: 50 * ms, MinRTO: 10 * ms, MaxRTO: time.Second},
			n: 50000, data: fifo(0.1, 0.05), ack: fifo(0.1, 0.05)}, false},
		{"modulo not a multiple of the window", uniParams{cfg: Config{Window: 7, Modulo: 23, InitialRTO: 50 * ms, MinRTO: 10 * ms, MaxRTO: time.Second},
			n: 20000, data: fifo(0.1, 0.1), ack: fifo(0.1, 0.1)}, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.n = simSize(t, tc.p.n)
			tc.p.limit = 100 * time.Hour
			if tc.p.data.FIFO {
				tc.p.data.ReorderMax = gap(tc.p.cfg)
			}
			res := runUnicast(t, seed+uint64(i), tc.p)
			for _, f := range res.failures {
				if tc.noFailures && len(f) > 0 {
					t.Fatalf("%d failures under moderate loss", len(f))
				}
			}
		})
	}
}

// An outage much longer than the give-up time: messages fail (reported), the
// base is held at MaxSkip, and sync probes restart the stream afterwards.
func TestSimUnicastOutage(t *testing.T) {
	seed := testutil.Seed(t)
	for i, cfg := range []Config{
		{Window: 10, Modulo: 20, InitialRTO: 50 * ms, MinRTO: 10 * ms, MaxRTO: 500 * ms, MaxRetries: 3},
		{Window: 10, Modulo: 10000, InitialRTO: 50 * ms, MinRTO: 10 * ms, MaxRTO: 500 * ms, MaxRetries: 3},
	} {
		ack := linkConfig{Loss: 0.05, Dup: 0.05, Delay: 5 * ms, Jitter: 2 * ms, FIFO: true}
		data := ack
		data.ReorderP, data.ReorderMax = 0.1, gap(cfg)
		res := runUnicast(t, seed+uint64(i), uniParams{
			cfg: cfg, n: simSize(t, 20000), data: data, ack: ack, limit: 100 * time.Hour,
			outage: [2]time.Duration{2 * time.Second, 60 * time.Second},
		})
		var failed int
		for _, f := range res.failures {
			failed += len(f)
		}
		if failed == 0 {
			t.Fatalf("modulo %d: no failures during a 58 s outage", cfg.Modulo)
		}
	}
}

// A slow consumer never makes the receiver buffer more than Window messages,
// and never causes a failure: back-pressure, not loss.
func TestPropertySlowConsumer(t *testing.T) {
	seed := testutil.Seed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	trials := 20
	if testing.Short() {
		trials = 5
	}
	for trial := 0; trial < trials; trial++ {
		w := 1 + rng.IntN(32)
		m := uint32(2*w + rng.IntN(3*w))
		cfg := Config{Window: w, Modulo: m, InitialRTO: 50 * ms, MinRTO: 10 * ms, MaxRTO: time.Duration(200+rng.IntN(2000)) * ms, MaxRetries: 4 + rng.IntN(5)}
		if cfg.Validate() != nil {
			cfg.Modulo = uint32(2*w + 2)
		}
		lc := linkConfig{Delay: time.Duration(1+rng.IntN(10)) * ms, Jitter: time.Duration(rng.IntN(5)) * ms, FIFO: true}
		data := lc
		data.ReorderP, data.ReorderMax = 0.2, gap(cfg)
		pop := time.Duration(1+rng.IntN(200)) * ms
		t.Logf("trial %d: window %d, modulo %d, pop every ~%v, max retries %d, link %+v", trial, w, cfg.Modulo, pop, cfg.MaxRetries, data)
		res := runUnicast(t, seed+uint64(trial), uniParams{cfg: cfg, n: 500, data: data, ack: lc, popEvery: pop, limit: 1000 * time.Hour})
		for _, f := range res.failures {
			if len(f) > 0 {
				t.Fatalf("trial %d: %d failures with a slow consumer on a lossless link", trial, len(f))
			}
		}
	}
}

// One broadcast sender, five receivers with independent lossy links; one
// receiver leaves midway (its pending copies fail, the others are
// unaffected) and a new one joins midway.
func TestSimBroadcast(t *testing.T) {
	seed := testutil.Seed(t)
	for i, cfg := range []Config{
		{InitialRTO: 50 * ms, MinRTO: 10 * ms, MaxRTO: time.Second},
		{Window: 10, Modulo: 20, InitialRTO: 50 * ms, MinRTO: 10 * ms, MaxRTO: time.Second},
	} {
		runBroadcast(t, seed+uint64(i), cfg, simSize(t, 20000))
	}
}

func runBroadcast(t *testing.T, seed uint64, cfg Config, n int) {
	sm := newSim(seed)
	const epoch = 3
	s := NewSender(cfg, epoch)
	linkCfg := func(data bool) linkConfig {
		// Each receiver has its own delay and loss.
		lc := linkConfig{
			Loss: 0.02 + 0.08*sm.rng.Float64(), Dup: 0.05, Delay: time.Duration(2+sm.rng.IntN(10)) * ms,
			Jitter: 2 * ms, FIFO: true,
		}
		if data {
			lc.ReorderP, lc.ReorderMax = 0.1, gap(cfg)
		}
		return lc
	}
	var produce func()
	eps := map[uuid.UUID]*endpoint{}
	var members []uuid.UUID           // current targets, in join order
	var order []*endpoint             // every endpoint ever
	targeted := map[uuid.UUID][]int{} // messages addressed to each endpoint
	failures := map[uuid.UUID]map[int]error{}
	var retransmits int
	produced := 0

	join := func() *endpoint {
		id := uuid.New()
		ep := &endpoint{id: id, r: NewReceiver(cfg)}
		eps[id] = ep
		order = append(order, ep)
		members = append(members, id)
		failures[id] = map[int]error{}
		ep.data = &link{sim: sm, cfg: linkCfg(true), deliver: func(x any) {
			pkt := x.(Packet)
			v, err := ep.r.OnData(epoch, pkt.Seq, pkt.Base, pkt.Body)
			if err != nil {
				t.Fatalf("%s OnData: %v", id, err)
			}
			ep.verdicts[v]++
			for {
				b, _, ok := ep.r.Pop()
				if !ok {
					break
				}
				ep.delivered = append(ep.delivered, msgNum(b))
			}
			ep.ack.send(ep.r.Ack())
		}}
		ep.ack = &link{sim: sm, cfg: linkCfg(false), deliver: func(x any) {
			_, err := s.OnAck(sm.now, id, x.(message.Ack))
			if err != nil && !errors.Is(err, ErrStaleAck) {
				t.Fatalf("%s OnAck: %v", id, err)
			}
			produce()
		}}
		return ep
	}
	for range 5 {
		join()
	}
	inner := func() {
		for produced < n && !s.Full() {
			pkt, err := s.Push(sm.now, msgBody(produced), members)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range members {
				targeted[id] = append(targeted[id], produced)
				eps[id].data.send(pkt)
			}
			produced++
		}
	}
	handle := func(failed []Failure) {
		for _, f := range failed {
			failures[f.Target][msgNum(f.Body)] = f.Err
		}
	}
	var leaver, joiner *endpoint
	leaveAt, joinAt := n/2, n/3
	tick := func() {
		resend, failed := s.Tick(sm.now)
		retransmits += len(resend)
		for _, r := range resend {
			eps[r.Target].data.send(r.Packet)
		}
		handle(failed)
		produce()
	}
	// Membership changes happen right after the pushes that cross their mark.
	produce = func() {
		inner()
		if joiner == nil && produced >= joinAt {
			joiner = join()
			s.AddTarget(joiner.id)
			// AddTarget addressed every message in flight to it.
			for m := produced - s.InFlight(); m < produced; m++ {
				targeted[joiner.id] = append(targeted[joiner.id], m)
			}
		}
		if leaver == nil && produced >= leaveAt {
			leaver = order[1]
			members = members[:0]
			for _, ep := range order {
				if ep != leaver {
					members = append(members, ep.id)
				}
			}
			leaver.data.down, leaver.ack.down = true, true
			failed := s.RemoveTarget(leaver.id, errors.New("left"))
			for _, f := range failed {
				if !errors.Is(f.Err, ErrTargetGone) || f.Target != leaver.id {
					t.Fatalf("RemoveTarget failure %+v", f)
				}
			}
			handle(failed)
			t.Logf("%s left at message %d: %d pending copies failed", leaver.id, produced, len(failed))
		}
	}
	produce()
	ok := sm.run(t0.Add(100*time.Hour), s.Deadline, tick, func() bool { return produced == n && s.InFlight() == 0 })
	if !ok {
		t.Fatalf("not finished: produced %d, in flight %d", produced, s.InFlight())
	}
	for _, ep := range order {
		checkDelivery(t, ep, targeted[ep.id], failures[ep.id])
		if ep != leaver && len(failures[ep.id]) > 0 {
			t.Fatalf("%s: %d failures, though only the leaver should fail", ep.id, len(failures[ep.id]))
		}
		t.Logf("%s: %d targeted, %d delivered, %d failed, verdicts %v", ep.id, len(targeted[ep.id]), len(ep.delivered), len(failures[ep.id]), ep.verdicts)
	}
	if len(joiner.delivered) == 0 || len(leaver.delivered) >= n {
		t.Fatalf("joiner delivered %d, leaver %d", len(joiner.delivered), len(leaver.delivered))
	}
	t.Logf("modulo %d: %d messages to %d receivers in %v virtual, %d retransmissions", cfg.WithDefaults().Modulo, n, len(order), sm.now.Sub(t0), retransmits)
}

// Heavy loss with a small retry budget: many copies fail, the base skips
// them (within MaxSkip), receivers skip the holes, and the invariant holds.
func TestSimHeavyLoss(t *testing.T) {
	seed := testutil.Seed(t)
	tests := []struct {
		cfg      Config
		popEvery time.Duration
	}{
		{Config{Window: 10, Modulo: 20, InitialRTO: 50 * ms, MinRTO: 10 * ms, MaxRTO: 200 * ms, MaxRetries: 2}, 0},
		{Config{Window: 10, Modulo: 10000, InitialRTO: 50 * ms, MinRTO: 10 * ms, MaxRTO: 200 * ms, MaxRetries: 2}, 0},
		{Config{Window: 3, Modulo: 7, InitialRTO: 50 * ms, MinRTO: 10 * ms, MaxRTO: 200 * ms, MaxRetries: 1}, 0},
		{Config{Window: 10, Modulo: 20, InitialRTO: 50 * ms, MinRTO: 10 * ms, MaxRTO: 200 * ms, MaxRetries: 2}, 30 * ms},
	}
	for i, tc := range tests {
		ack := linkConfig{Loss: 0.35, Dup: 0.2, Delay: 5 * ms, Jitter: 3 * ms, FIFO: true}
		data := ack
		data.ReorderP, data.ReorderMax = 0.2, gap(tc.cfg)
		res := runUnicast(t, seed+uint64(i), uniParams{cfg: tc.cfg, n: simSize(t, 10000), data: data, ack: ack, popEvery: tc.popEvery, limit: 1000 * time.Hour})
		for _, f := range res.failures {
			if len(f) == 0 {
				t.Fatalf("case %d: no failures at 35%% loss with %d retries", i, tc.cfg.MaxRetries)
			}
		}
	}
}
