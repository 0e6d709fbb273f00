package memory_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distrirender/distrirender/internal/testutil"
	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/memory"
	"github.com/distrirender/distrirender/transport/transporttest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// conformance runs the transport suite on a network configured by cfg.
func conformance(t *testing.T, cfg memory.Config) {
	n := memory.NewNetwork(cfg)
	t.Cleanup(func() { _ = n.Close() })
	var next atomic.Int64
	transporttest.Run(t, transporttest.Factory{
		New: func(t *testing.T) transport.Transport {
			tr, err := n.Listen("t" + strconv.FormatInt(next.Add(1), 10))
			if err != nil {
				t.Fatal(err)
			}
			return tr
		},
		Unreachable: "nobody",
	})
}

func TestConformance(t *testing.T) { conformance(t, memory.Config{Seed: 1}) }

// TestConformanceSmall runs the suite with a small frame limit and queue, so
// that flow control blocks senders all the time.
func TestConformanceSmall(t *testing.T) {
	conformance(t, memory.Config{Seed: 1, MaxFrame: 4096, QueueLen: 2})
}

// TestConformanceDelayed runs the suite over links with a fixed delay, so that
// every frame goes through the delivery goroutines.
func TestConformanceDelayed(t *testing.T) {
	conformance(t, memory.Config{Seed: 1, QueueLen: 8, Faults: memory.Faults{Delay: 50 * time.Microsecond}})
}

// link listens at "a" and "b" and returns an edge between them, a's side
// first. Everything is closed with the network.
func link(t *testing.T, n *memory.Network) (ab, ba transport.Edge) {
	t.Helper()
	a := listen(t, n, "a")
	b := listen(t, n, "b")
	return dial(t, a, b)
}

func listen(t *testing.T, n *memory.Network, addr string) *memory.Transport {
	t.Helper()
	tr, err := n.Listen(addr)
	if err != nil {
		t.Fatalf("Listen(%q): %v", addr, err)
	}
	return tr
}

// dial connects a to b. A memory Dial completes before Accept, so no
// goroutine is needed.
func dial(t *testing.T, a, b *memory.Transport) (ab, ba transport.Edge) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ab, err := a.Dial(ctx, b.Addrs()[0])
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	ba, err = b.Accept(ctx)
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	return ab, ba
}

func numbered(i int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(i)) }

func number(t *testing.T, f []byte) int {
	t.Helper()
	if len(f) != 4 {
		t.Fatalf("frame %x is not a number", f)
	}
	return int(binary.BigEndian.Uint32(f))
}

// sendN sends frames 0..count-1 on e.
func sendN(t *testing.T, e transport.Edge, count int) {
	t.Helper()
	for i := range count {
		if err := e.Send(context.Background(), numbered(i)); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
}

// receiveN receives count frames from e, as numbers.
func receiveN(t *testing.T, e transport.Edge, count int) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make([]int, 0, count)
	for range count {
		f, err := e.Receive(ctx)
		if err != nil {
			t.Fatalf("Receive after %d frames: %v", len(got), err)
		}
		got = append(got, number(t, f))
	}
	return got
}

// assertQuiet checks that e has nothing to receive right now: Receive with a
// cancelled context returns a waiting frame if there is one.
func assertQuiet(t *testing.T, e transport.Edge) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if f, err := e.Receive(ctx); err == nil {
		t.Fatalf("unexpected frame %x", f)
	} else if !errors.Is(err, context.Canceled) {
		t.Fatalf("Receive: %v, want context.Canceled", err)
	}
}

// checkBalance checks the Stats invariant on an idle network.
func checkBalance(t *testing.T, s memory.Stats) {
	t.Helper()
	if s.Sent+s.Duplicated != s.Delivered+s.Dropped() {
		t.Errorf("stats do not balance: %+v", s)
	}
}

// within asserts that a measured rate is within tol of want.
func within(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s = %.4f, want %.4f ± %.4f", what, got, want, tol)
	} else {
		t.Logf("%s = %.4f (want %.4f ± %.4f)", what, got, want, tol)
	}
}

func TestLoss(t *testing.T) {
	const frames, p = 20000, 0.3
	n := memory.NewNetwork(memory.Config{Seed: int64(testutil.Seed(t)), QueueLen: frames, Faults: memory.Faults{Loss: p}})
	defer n.Close()
	ab, ba := link(t, n)
	sendN(t, ab, frames)
	s := n.Stats()
	got := receiveN(t, ba, int(s.Delivered))
	assertQuiet(t, ba)
	if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
		t.Error("a lossy link duplicated or reordered frames")
	}
	if s.Sent != frames || int(s.Lost)+len(got) != frames {
		t.Errorf("stats %+v with %d frames received", s, len(got))
	}
	// Six standard deviations: this never fails by chance.
	within(t, "loss rate", float64(s.Lost)/frames, p, 6*math.Sqrt(p*(1-p)/frames))
	checkBalance(t, s)
}

func TestDuplicate(t *testing.T) {
	const frames, p = 20000, 0.2
	n := memory.NewNetwork(memory.Config{Seed: int64(testutil.Seed(t)), QueueLen: 2 * frames, Faults: memory.Faults{Duplicate: p}})
	defer n.Close()
	ab, ba := link(t, n)
	sendN(t, ab, frames)
	s := n.Stats()
	got := receiveN(t, ba, frames+int(s.Duplicated))
	assertQuiet(t, ba)
	counts := make([]int, frames)
	for _, v := range got {
		counts[v]++
	}
	for i, c := range counts {
		if c != 1 && c != 2 {
			t.Fatalf("frame %d received %d times", i, c)
		}
	}
	if !slices.IsSorted(got) {
		t.Error("duplication without delay reordered frames")
	}
	within(t, "duplication rate", float64(s.Duplicated)/frames, p, 6*math.Sqrt(p*(1-p)/frames))
	checkBalance(t, s)
}

// TestReorder runs in a synctest bubble so that the held frames' timeout
// never fires while the sender is merely slow.
func TestReorder(t *testing.T) {
	seed := int64(testutil.Seed(t))
	synctest.Test(t, func(t *testing.T) {
		const frames, p = 20000, 0.1
		n := memory.NewNetwork(memory.Config{Seed: seed, Faults: memory.Faults{Reorder: p}})
		defer n.Close()
		ab, ba := link(t, n)
		var got []int
		done := make(chan struct{})
		go func() {
			defer close(done)
			got = receiveN(t, ba, frames)
		}()
		sendN(t, ab, frames)
		<-done
		assertQuiet(t, ba)

		seen := make([]bool, frames)
		inversions := 0
		for pos, v := range got {
			if seen[v] {
				t.Fatalf("frame %d received twice", v)
			}
			seen[v] = true
			// A held frame is overtaken by one frame only.
			if d := pos - v; d < -1 || d > 1 {
				t.Fatalf("frame %d received at position %d", v, pos)
			}
			if pos > 0 && got[pos-1] > v {
				inversions++
			}
		}
		s := n.Stats()
		within(t, "reorder rate", float64(s.Reordered)/frames, p, 6*math.Sqrt(p*(1-p)/frames))
		// Two holds in a row make one inversion, so inversions are fewer
		// than holds, but not many fewer.
		if inversions == 0 || uint64(inversions) > s.Reordered || float64(inversions) < 0.8*float64(s.Reordered) {
			t.Errorf("%d inversions for %d held frames", inversions, s.Reordered)
		}
		checkBalance(t, s)
	})
}

// TestReorderLastFrame checks that a held frame with no successor is
// delivered anyway, a little late.
func TestReorderLastFrame(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memory.NewNetwork(memory.Config{Seed: 1, Faults: memory.Faults{Reorder: 1}})
		defer n.Close()
		ab, ba := link(t, n)
		start := time.Now()
		sendN(t, ab, 1)
		if got := receiveN(t, ba, 1); got[0] != 0 {
			t.Fatalf("got frame %d", got[0])
		}
		if d := time.Since(start); d != 10*time.Millisecond {
			t.Errorf("held frame delivered after %v, want 10ms", d)
		}
	})
}

func TestDelayAndJitter(t *testing.T) {
	seed := int64(testutil.Seed(t))
	synctest.Test(t, func(t *testing.T) {
		const delay, jitter = 10 * time.Millisecond, 20 * time.Millisecond
		n := memory.NewNetwork(memory.Config{Seed: seed, Faults: memory.Faults{Delay: delay}})
		defer n.Close()
		ab, ba := link(t, n)

		// Fixed delay: exact in virtual time, order kept.
		start := time.Now()
		sendN(t, ab, 3)
		got := receiveN(t, ba, 3)
		if d := time.Since(start); d != delay {
			t.Errorf("frames arrived after %v, want %v", d, delay)
		}
		if !slices.Equal(got, []int{0, 1, 2}) {
			t.Errorf("fixed delay reordered frames: %v", got)
		}

		// Jitter: every latency in [delay, delay+jitter), and frames sent at
		// the same instant come out of order.
		n.SetFaults("a", "b", memory.Faults{Delay: delay, Jitter: jitter})
		const frames = 200
		start = time.Now()
		sendN(t, ab, frames)
		ctx := context.Background()
		var order []int
		for range frames {
			f, err := ba.Receive(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d < delay || d >= delay+jitter {
				t.Errorf("latency %v outside [%v, %v)", d, delay, delay+jitter)
			}
			order = append(order, number(t, f))
		}
		if slices.IsSorted(order) {
			t.Error("jitter did not reorder frames sent at the same instant")
		}
		checkBalance(t, n.Stats())
	})
}

func TestCutAndHeal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memory.NewNetwork(memory.Config{Seed: 1})
		defer n.Close()
		a, b, c := listen(t, n, "a"), listen(t, n, "b"), listen(t, n, "c")
		ab, ba := dial(t, a, b)
		ac, ca := dial(t, a, c)

		n.Cut("b", "a") // either order names the link
		ctx := context.Background()
		for _, e := range []transport.Edge{ab, ba} {
			if err := e.Send(ctx, []byte("lost")); err != nil {
				t.Fatalf("Send over a cut link: %v", err)
			}
		}
		// Neither side sees a close: Receive waits until its deadline.
		for _, e := range []transport.Edge{ab, ba} {
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			if _, err := e.Receive(rctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Receive over a cut link: %v, want DeadlineExceeded", err)
			}
			cancel()
		}
		if _, err := a.Dial(ctx, "b"); !errors.Is(err, transport.ErrUnreachable) {
			t.Errorf("Dial over a cut link: %v, want ErrUnreachable", err)
		}
		// Other links are unaffected.
		sendN(t, ac, 1)
		receiveN(t, ca, 1)

		n.Heal()
		sendN(t, ab, 1)
		sendN(t, ba, 1)
		receiveN(t, ba, 1)
		receiveN(t, ab, 1)
		if s := n.Stats(); s.Blocked != 2 {
			t.Errorf("Blocked = %d, want 2", s.Blocked)
		}
		e, err := a.Dial(ctx, "b")
		if err != nil {
			t.Fatalf("Dial after Heal: %v", err)
		}
		e.Close()
	})
}

// TestCutInFlight checks that frames delayed in flight when a link is cut are
// dropped when they fall due.
func TestCutInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memory.NewNetwork(memory.Config{Seed: 1, Faults: memory.Faults{Delay: time.Second}})
		defer n.Close()
		ab, ba := link(t, n)
		sendN(t, ab, 5)
		n.Cut("a", "b")
		time.Sleep(2 * time.Second) // virtual time: let the frames fall due
		synctest.Wait()
		n.Heal()
		assertQuiet(t, ba)
		if s := n.Stats(); s.Blocked != 5 {
			t.Errorf("Blocked = %d, want 5", s.Blocked)
		}
	})
}

func TestPartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memory.NewNetwork(memory.Config{Seed: 1})
		defer n.Close()
		tr := map[string]*memory.Transport{}
		for _, addr := range []string{"a", "b", "c", "d", "e"} {
			tr[addr] = listen(t, n, addr)
		}
		edges := map[[2]string][2]transport.Edge{}
		for _, p := range [][2]string{{"a", "b"}, {"a", "c"}, {"c", "d"}, {"d", "e"}} {
			x, y := dial(t, tr[p[0]], tr[p[1]])
			edges[p] = [2]transport.Edge{x, y}
		}
		// d and e are in no group: they form a group of their own.
		n.Partition([]string{"a", "b"}, []string{"c"})
		want := map[[2]string]bool{{"a", "b"}: true, {"a", "c"}: false, {"c", "d"}: false, {"d", "e"}: true}
		for p, e := range edges {
			sendN(t, e[0], 1)
			sendN(t, e[1], 1)
			rctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err1 := e[1].Receive(rctx)
			_, err2 := e[0].Receive(rctx)
			cancel()
			if got := err1 == nil && err2 == nil; got != want[p] {
				t.Errorf("link %v carries frames: %v, want %v (%v, %v)", p, got, want[p], err1, err2)
			}
		}
		ctx := context.Background()
		if _, err := tr["b"].Dial(ctx, "c"); !errors.Is(err, transport.ErrUnreachable) {
			t.Errorf("Dial across the partition: %v, want ErrUnreachable", err)
		}
		if _, err := tr["e"].Dial(ctx, "a"); !errors.Is(err, transport.ErrUnreachable) {
			t.Errorf("Dial from the unlisted group: %v, want ErrUnreachable", err)
		}
		n.Heal()
		for p, e := range edges {
			sendN(t, e[0], 1)
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			if _, err := e[1].Receive(rctx); err != nil {
				t.Errorf("link %v after Heal: %v", p, err)
			}
			cancel()
		}
		e, err := tr["b"].Dial(ctx, "c")
		if err != nil {
			t.Fatalf("Dial after Heal: %v", err)
		}
		e.Close()
		checkBalance(t, n.Stats())
	})
}

func TestKillAndRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memory.NewNetwork(memory.Config{Seed: 1})
		defer n.Close()
		a, b := listen(t, n, "a"), listen(t, n, "b")
		ab, ba := dial(t, a, b)
		sendN(t, ba, 1) // delivered before the crash: a still gets it

		n.Kill("b")
		ctx := context.Background()
		// The owner of b sees a closed transport.
		if _, err := b.Accept(ctx); !errors.Is(err, transport.ErrClosed) {
			t.Errorf("Accept on a killed transport: %v", err)
		}
		if err := ba.Send(ctx, []byte("x")); !errors.Is(err, transport.ErrClosed) {
			t.Errorf("Send on a killed transport's edge: %v", err)
		}
		if _, err := ba.Receive(ctx); !errors.Is(err, transport.ErrClosed) {
			t.Errorf("Receive on a killed transport's edge: %v", err)
		}
		// The peer sees silence, not a close.
		if err := ab.Send(ctx, []byte("into the void")); err != nil {
			t.Errorf("Send to a dead peer: %v", err)
		}
		receiveN(t, ab, 1)
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		if _, err := ab.Receive(rctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Receive from a dead peer: %v, want DeadlineExceeded", err)
		}
		cancel()
		if _, err := a.Dial(ctx, "b"); !errors.Is(err, transport.ErrUnreachable) {
			t.Errorf("Dial to a dead address: %v, want ErrUnreachable", err)
		}

		// Restart: b listens again and is reachable; the old edge stays dead.
		b2 := listen(t, n, "b")
		ab2, b2a := dial(t, a, b2)
		sendN(t, ab2, 1)
		receiveN(t, b2a, 1)
		sendN(t, ab, 1)
		assertQuiet(t, b2a)
		if s := n.Stats(); s.Discarded != 2 {
			t.Errorf("Discarded = %d, want 2", s.Discarded)
		}
	})
}

// TestKillStopsDelivery checks that killing a transport stops the delivery
// goroutines of its delayed edges, and that a Send blocked on a dead peer's
// full queue returns.
func TestKillStopsDelivery(t *testing.T) {
	n := memory.NewNetwork(memory.Config{Seed: 1, QueueLen: 1, Faults: memory.Faults{Delay: time.Hour}})
	defer n.Close()
	ab, _ := link(t, n)
	sendN(t, ab, 2) // one in the goroutine's heap, one in its input
	errc := make(chan error, 1)
	go func() { errc <- ab.Send(context.Background(), []byte("blocked")) }()
	n.Kill("b")
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Send blocked on a dead peer returned %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Send blocked on a dead peer did not return")
	}
	// a's side is still open, but the edge's goroutines are gone.
	goleak.VerifyNone(t)
}

func TestRemoteCloseDrains(t *testing.T) {
	n := memory.NewNetwork(memory.Config{Seed: 1})
	defer n.Close()
	ab, ba := link(t, n)
	sendN(t, ab, 3)
	ab.Close()
	if got := receiveN(t, ba, 3); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("drained %v", got)
	}
	if _, err := ba.Receive(context.Background()); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Receive after drain: %v, want ErrClosed", err)
	}
	if err := ba.Send(context.Background(), nil); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Send to a closed peer: %v, want ErrClosed", err)
	}
}

func TestFlowControl(t *testing.T) {
	for _, f := range []memory.Faults{{}, {Delay: time.Millisecond}} {
		t.Run(fmt.Sprintf("delay=%v", f.Delay), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := memory.NewNetwork(memory.Config{Seed: 1, QueueLen: 2, Faults: f})
				defer n.Close()
				ab, ba := link(t, n)
				ctx := context.Background()
				// Fill every buffer on the way: with a delay the goroutine
				// holds QueueLen more and its input QueueLen more.
				sent := 0
				for {
					sctx, cancel := context.WithTimeout(ctx, time.Second)
					err := ab.Send(sctx, numbered(sent))
					cancel()
					if errors.Is(err, context.DeadlineExceeded) {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					if sent++; sent > 100 {
						t.Fatal("Send never blocked")
					}
				}
				t.Logf("%d frames buffered before Send blocked", sent)
				if got := receiveN(t, ba, 1); got[0] != 0 {
					t.Fatalf("got %d", got[0])
				}
				sendN(t, ab, 1) // room again (frame number 0 again)
				got := receiveN(t, ba, sent)
				if !slices.Equal(got[:sent-1], seq(1, sent)) || got[sent-1] != 0 {
					t.Fatalf("got %v", got)
				}
			})
		})
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func TestSetFaultsOnExistingEdge(t *testing.T) {
	n := memory.NewNetwork(memory.Config{Seed: 1})
	defer n.Close()
	ab, ba := link(t, n)
	n.SetFaults("a", "b", memory.Faults{Loss: 1})
	sendN(t, ab, 10)
	assertQuiet(t, ba)
	n.SetFaults("a", "b", memory.Faults{})
	sendN(t, ab, 1)
	receiveN(t, ba, 1)
	// Faults set before a dial apply to the new edge too.
	n.SetFaults("a", "c", memory.Faults{Loss: 1})
	ac, ca := dial(t, n2(t, n, "a"), listen(t, n, "c"))
	sendN(t, ac, 10)
	assertQuiet(t, ca)
	if s := n.Stats(); s.Lost != 20 {
		t.Errorf("Lost = %d, want 20", s.Lost)
	}
}

// n2 returns a second listener standing for address name: a fresh name would
// change the link, so it kills the current one and listens again.
func n2(t *testing.T, n *memory.Network, name string) *memory.Transport {
	n.Kill(name)
	return listen(t, n, name)
}

// faultTrace sends frames over a faulty link in a synctest bubble and returns the
// numbers of the frames in the order they arrive.
func faultTrace(t *testing.T, seed int64) []int {
	var trace []int
	synctest.Test(t, func(t *testing.T) {
		f := memory.Faults{Loss: 0.1, Duplicate: 0.1, Reorder: 0.1, Delay: time.Millisecond, Jitter: 3 * time.Millisecond}
		n := memory.NewNetwork(memory.Config{Seed: seed, Faults: f})
		defer n.Close()
		ab, ba := link(t, n)
		const frames = 2000
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				f, err := ba.Receive(context.Background())
				if err != nil {
					return
				}
				trace = append(trace, number(t, f))
			}
		}()
		for i := range frames {
			if err := ab.Send(context.Background(), numbered(i)); err != nil {
				t.Error(err)
			}
			if i%10 == 9 {
				time.Sleep(time.Millisecond) // virtual: spread the frames out
			}
		}
		time.Sleep(time.Second) // virtual: let everything in flight land
		ab.Close()
		<-done
		s := n.Stats()
		checkBalance(t, s)
		t.Logf("seed %d: %+v", seed, s)
	})
	return trace
}

// TestSameSeedSameFaults checks reproducibility: with one seed the same
// frames on one link meet the same faults and, in virtual time, arrive in the
// same order.
func TestSameSeedSameFaults(t *testing.T) {
	seed := int64(testutil.Seed(t))
	first := faultTrace(t, seed)
	second := faultTrace(t, seed)
	if !slices.Equal(first, second) {
		t.Fatalf("same seed, different traces:\n%v\n%v", first[:min(50, len(first))], second[:min(50, len(second))])
	}
	if other := faultTrace(t, seed+1); slices.Equal(first, other) {
		t.Fatal("a different seed gave the same trace")
	}
}

func TestListen(t *testing.T) {
	n := memory.NewNetwork(memory.Config{})
	if n.Seed() == 0 {
		t.Error("a zero Config.Seed was not replaced by a random one")
	}
	if _, err := n.Listen(""); err == nil {
		t.Error("Listen(\"\") succeeded")
	}
	a := listen(t, n, "a")
	if _, err := n.Listen("a"); !errors.Is(err, memory.ErrAddrInUse) {
		t.Errorf("second Listen(a): %v, want ErrAddrInUse", err)
	}
	a.Close()
	a = listen(t, n, "a") // free again after Close
	if got := a.Addrs(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("Addrs = %q", got)
	}
	if a.MaxFrame() != transport.DefaultMaxFrame {
		t.Errorf("MaxFrame = %d", a.MaxFrame())
	}
	n.Close()
	if _, err := n.Listen("b"); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Listen on a closed network: %v, want ErrClosed", err)
	}
	if _, err := a.Accept(context.Background()); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Accept after Network.Close: %v, want ErrClosed", err)
	}
}

// TestDialBacklog checks that Dial waits, honouring ctx, while the listener's
// accept backlog is full, and that the waiting edges go away cleanly.
func TestDialBacklog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memory.NewNetwork(memory.Config{Seed: 1})
		defer n.Close()
		a, b := listen(t, n, "a"), listen(t, n, "b")
		ctx := context.Background()
		dialled := 0
		for {
			dctx, cancel := context.WithTimeout(ctx, time.Second)
			e, err := a.Dial(dctx, "b")
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			if dialled++; dialled > 1000 {
				t.Fatal("Dial never blocked on a full backlog")
			}
		}
		t.Logf("backlog of %d", dialled)
		e, err := b.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		e.Close()
		e, err = a.Dial(ctx, "b")
		if err != nil {
			t.Fatalf("Dial after Accept made room: %v", err)
		}
		e.Close()
	})
}

// TestConcurrentChaos hammers a small network from many goroutines while
// faults, cuts, partitions and kills change underneath: for -race, goleak and
// the Stats balance. Killed nodes listen again at once, as restarted nodes do.
func TestConcurrentChaos(t *testing.T) {
	seed := int64(testutil.Seed(t))
	r := rand.New(rand.NewPCG(uint64(seed), 0))
	n := memory.NewNetwork(memory.Config{Seed: seed, QueueLen: 16})
	defer n.Close()
	addrs := []string{"a", "b", "c", "d"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	serve := func(tr *memory.Transport, me int) {
		defer tr.Close()
		wg.Go(func() { // accept and echo until the transport dies
			for {
				e, err := tr.Accept(ctx)
				if err != nil {
					return
				}
				wg.Go(func() {
					defer e.Close()
					for {
						f, err := e.Receive(ctx)
						if err != nil || e.Send(ctx, f) != nil {
							return
						}
					}
				})
			}
		})
		for i := 0; ctx.Err() == nil; i++ { // dial and exchange
			e, err := tr.Dial(ctx, addrs[(me+1+i%3)%len(addrs)])
			if errors.Is(err, transport.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			for j := range 10 {
				sctx, scancel := context.WithTimeout(ctx, 5*time.Millisecond)
				_ = e.Send(sctx, numbered(j))
				_, _ = e.Receive(sctx)
				scancel()
			}
			e.Close()
		}
	}
	for me, addr := range addrs {
		wg.Go(func() {
			for ctx.Err() == nil {
				tr, err := n.Listen(addr)
				if err != nil {
					t.Errorf("Listen(%q): %v", addr, err)
					return
				}
				serve(tr, me)
			}
		})
	}

	// waitProgress waits until more frames have been delivered, or a while.
	waitProgress := func() {
		start := n.Stats().Delivered
		deadline := time.Now().Add(200 * time.Millisecond)
		for n.Stats().Delivered < start+20 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Microsecond) // polling a condition
		}
	}
	for range 100 {
		a, b := addrs[r.IntN(4)], addrs[r.IntN(4)]
		switch r.IntN(6) {
		case 0:
			n.SetFaults(a, b, memory.Faults{Loss: 0.2, Duplicate: 0.2, Reorder: 0.2, Jitter: time.Duration(r.IntN(2)) * time.Millisecond})
		case 1:
			n.SetFaults(a, b, memory.Faults{})
		case 2:
			n.Cut(a, b)
		case 3:
			n.Partition(addrs[:1+r.IntN(3)])
		case 4:
			n.Heal()
		case 5:
			n.Kill(a)
		}
		waitProgress()
	}
	cancel()
	wg.Wait()
	n.Close()
	s := n.Stats()
	t.Logf("%+v", s)
	if s.Delivered == 0 {
		t.Error("no frame delivered")
	}
	checkBalance(t, s)
}
