// Package transporttest is the conformance suite for transport.Transport
// implementations. A transport's test file runs it in one call:
//
//	func TestConformance(t *testing.T) {
//		transporttest.Run(t, transporttest.Factory{
//			New:         func(t *testing.T) transport.Transport { ... },
//			Unreachable: "an address nothing listens on",
//		})
//	}
//
// The suite checks the contract documented on transport.Transport and
// transport.Edge: dial and accept, whole frames in order both ways up to the
// frame limit, buffer ownership, concurrency, many edges between two
// transports, close in all its forms, and context cancellation. It waits on
// conditions with deadlines, never on sleeps, and every goroutine it starts
// has ended when a subtest returns, so it can run under goleak.
//
// The suite assumes a perfect link (no injected loss, duplication or
// reordering): give it a transport without faults.
package transporttest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/distrirender/distrirender/transport"
)

// Factory makes the transports under test.
type Factory struct {
	// New returns a fresh transport, listening and ready to accept, on the
	// network (or loopback) shared by every transport New returns. The suite
	// closes it; New may also register its own cleanup with t.
	New func(t *testing.T) transport.Transport
	// Unreachable is an address at which nothing listens.
	Unreachable string
}

// MaxFramer is implemented by transports whose frame limit is not
// transport.DefaultMaxFrame. The suite sends frames of exactly the limit and
// expects one byte more to fail with transport.ErrFrameTooLarge.
type MaxFramer interface {
	// MaxFrame returns the largest frame Edge.Send accepts.
	MaxFrame() int
}

// Timeout bounds every wait in the suite. A transport that needs longer for a
// dial or a frame on loopback fails.
const Timeout = 10 * time.Second

// promptly bounds how long a call may take to notice a cancelled context or a
// close.
const promptly = 5 * time.Second

// Run runs the conformance suite against the transports f makes, each check
// as a subtest.
func Run(t *testing.T, f Factory) {
	t.Helper()
	if f.New == nil {
		t.Fatal("transporttest: Factory.New is nil")
	}
	s := suite{f: f}
	tests := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"DialAccept", s.dialAccept},
		{"OrderAndContent", s.orderAndContent},
		{"FrameTooLarge", s.frameTooLarge},
		{"SenderReusesBuffer", s.senderReusesBuffer},
		{"Batch", s.batch},
		{"ReceiveBuffer", s.receiveBuffer},
		{"ConcurrentSendReceive", s.concurrentSendReceive},
		{"ManyEdges", s.manyEdges},
		{"RemoteClose", s.remoteClose},
		{"LocalClose", s.localClose},
		{"TransportClose", s.transportClose},
		{"DialUnreachable", s.dialUnreachable},
		{"ContextCancel", s.contextCancel},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.fn)
	}
}

type suite struct{ f Factory }

// newTransport returns a fresh transport that is closed when the test ends.
func (s suite) newTransport(t *testing.T) transport.Transport {
	t.Helper()
	tr := s.f.New(t)
	if tr == nil {
		t.Fatal("Factory.New returned nil")
	}
	t.Cleanup(func() { _ = tr.Close() })
	if len(tr.Addrs()) == 0 {
		t.Fatal("Addrs() is empty")
	}
	return tr
}

func maxFrame(tr transport.Transport) int {
	if m, ok := tr.(MaxFramer); ok {
		return m.MaxFrame()
	}
	return transport.DefaultMaxFrame
}

// connect dials b from a and accepts on b. It returns a's side and b's side;
// both are closed when the test ends.
func connect(t *testing.T, a, b transport.Transport) (ab, ba transport.Edge) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	type result struct {
		e   transport.Edge
		err error
	}
	// Dial and Accept run side by side: a transport's Dial may need the
	// other side to accept before it returns.
	dialed, accepted := make(chan result, 1), make(chan result, 1)
	go func() {
		e, err := a.Dial(ctx, b.Addrs()[0])
		dialed <- result{e, err}
	}()
	go func() {
		e, err := b.Accept(ctx)
		accepted <- result{e, err}
	}()
	d := <-dialed
	if d.err != nil {
		cancel() // no edge is coming: stop the Accept
	}
	r := <-accepted
	if r.err != nil {
		cancel()
	}
	for _, e := range []transport.Edge{d.e, r.e} {
		if e != nil {
			t.Cleanup(func() { _ = e.Close() })
		}
	}
	if d.err != nil {
		t.Fatalf("Dial(%q): %v", b.Addrs()[0], d.err)
	}
	if r.err != nil {
		t.Fatalf("Accept: %v", r.err)
	}
	return d.e, r.e
}

func (s suite) pair(t *testing.T) (ab, ba transport.Edge) {
	t.Helper()
	return connect(t, s.newTransport(t), s.newTransport(t))
}

// limitedPair is pair, with the largest frame both transports take.
func (s suite) limitedPair(t *testing.T) (ab, ba transport.Edge, limit int) {
	t.Helper()
	a, b := s.newTransport(t), s.newTransport(t)
	ab, ba = connect(t, a, b)
	return ab, ba, min(maxFrame(a), maxFrame(b))
}

func send(t *testing.T, e transport.Edge, frame []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := e.Send(ctx, frame); err != nil {
		t.Fatalf("Send(%d bytes): %v", len(frame), err)
	}
}

func receive(t *testing.T, e transport.Edge) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	f, err := e.Receive(ctx)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	return f
}

// within runs fn in a goroutine and fails the test if it has not returned
// after d. It waits for fn to return in any case, so no goroutine outlives the
// test; fn must therefore end eventually (use a context).
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Errorf("%s did not return within %v", what, d)
		<-done
	}
}

func (s suite) dialAccept(t *testing.T) {
	a, b := s.newTransport(t), s.newTransport(t)
	for _, tr := range []transport.Transport{a, b} {
		for _, addr := range tr.Addrs() {
			if addr == "" {
				t.Errorf("Addrs() = %q contains an empty address", tr.Addrs())
			}
		}
	}
	ab, ba := connect(t, a, b)
	for _, e := range []transport.Edge{ab, ba} {
		if e.LocalAddr() == "" || e.RemoteAddr() == "" {
			t.Errorf("edge LocalAddr %q, RemoteAddr %q: want non-empty", e.LocalAddr(), e.RemoteAddr())
		}
	}
	send(t, ab, []byte("hello"))
	if got := receive(t, ba); string(got) != "hello" {
		t.Fatalf("accepted side received %q, want %q", got, "hello")
	}
	send(t, ba, []byte("welcome"))
	if got := receive(t, ab); string(got) != "welcome" {
		t.Fatalf("dialling side received %q, want %q", got, "welcome")
	}
}

// frameSize returns the size of frame i of n: the first are 0 bytes, the
// maximum and 1 byte, some are large, most are small.
func frameSize(r *rand.Rand, i, limit int) int {
	switch {
	case i == 0:
		return 0
	case i == 1:
		return limit
	case i == 2:
		return 1
	case i%100 == 50:
		return r.IntN(limit + 1)
	default:
		return r.IntN(4097)
	}
}

// frameContent fills a frame of the given size for direction dir and index i:
// the index first (when it fits), then bytes from a generator seeded by both.
func frameContent(dir, i, size int) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(dir), uint64(i)))
	for j := 0; j < size; j += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		copy(b[j:], w[:])
	}
	if size >= 4 {
		binary.BigEndian.PutUint32(b, uint32(i))
	}
	return b
}

func (s suite) orderAndContent(t *testing.T) {
	a, b := s.newTransport(t), s.newTransport(t)
	ab, ba := connect(t, a, b)
	const frames = 1000
	limit := min(maxFrame(a), maxFrame(b))

	ctx, cancel := context.WithTimeout(context.Background(), 6*Timeout)
	defer cancel()
	var wg sync.WaitGroup
	run := func(fn func() error) {
		wg.Go(func() {
			if err := fn(); err != nil {
				t.Error(err)
				cancel()
			}
		})
	}
	for dir, e := range []transport.Edge{ab, ba} {
		sizes := rand.New(rand.NewPCG(1, uint64(dir)))
		run(func() error {
			for i := range frames {
				if err := e.Send(ctx, frameContent(dir, i, frameSize(sizes, i, limit))); err != nil {
					return fmt.Errorf("direction %d: Send frame %d: %w", dir, i, err)
				}
			}
			return nil
		})
	}
	for dir, e := range []transport.Edge{ba, ab} {
		sizes := rand.New(rand.NewPCG(1, uint64(dir)))
		run(func() error {
			for i := range frames {
				got, err := e.Receive(ctx)
				if err != nil {
					return fmt.Errorf("direction %d: Receive frame %d: %w", dir, i, err)
				}
				want := frameContent(dir, i, frameSize(sizes, i, limit))
				if !bytes.Equal(got, want) {
					return fmt.Errorf("direction %d: frame %d: got %d bytes %s, want %d bytes %s",
						dir, i, len(got), head(got), len(want), head(want))
				}
			}
			return nil
		})
	}
	wg.Wait()
}

func head(b []byte) string {
	if len(b) > 8 {
		return fmt.Sprintf("%x...", b[:8])
	}
	return fmt.Sprintf("%x", b)
}

func (s suite) frameTooLarge(t *testing.T) {
	a, b := s.newTransport(t), s.newTransport(t)
	ab, ba := connect(t, a, b)
	limit := maxFrame(a)
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	err := ab.Send(ctx, make([]byte, limit+1))
	if !errors.Is(err, transport.ErrFrameTooLarge) {
		t.Fatalf("Send(%d bytes) with limit %d: err = %v, want ErrFrameTooLarge", limit+1, limit, err)
	}
	// The edge is still usable.
	send(t, ab, []byte("after"))
	if got := receive(t, ba); string(got) != "after" {
		t.Fatalf("received %q after a refused frame, want %q", got, "after")
	}
}

// batch sends frames in batches with transport.SendBatch (the edge's own
// SendBatch when it is a transport.BatchSender): the peer must receive them
// one by one, in order, whatever the sizes mixed in one batch; the sender's
// buffers are its own again once SendBatch returns; and a batch holding a
// frame over the limit is refused whole by a BatchSender, the edge staying
// usable.
func (s suite) batch(t *testing.T) {
	ab, ba, limit := s.limitedPair(t)
	_, native := ab.(transport.BatchSender)
	t.Logf("edge implements transport.BatchSender: %v", native)
	ctx, cancel := context.WithTimeout(context.Background(), 6*Timeout)
	defer cancel()

	batches := [][]int{
		{5},
		{0, 1, 2, 3},
		{64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64},
		{4095, 4096, 4097, 10, 70000, 3},
		{limit, 1, limit / 3},
	}
	many := make([]int, 3000) // more than one write's worth of small frames
	for i := range many {
		many[i] = 1 + i%200
	}
	batches = append(batches, many)
	for _, sizes := range batches {
		for j := range sizes {
			sizes[j] = min(sizes[j], limit)
		}
	}
	var want [][]byte
	sent := make(chan struct{})
	defer func() { <-sent }()
	go func() {
		defer close(sent)
		i := 0
		for _, sizes := range batches {
			frames := make([][]byte, len(sizes))
			for j, n := range sizes {
				frames[j] = frameContent(7, i, n)
				i++
			}
			if err := transport.SendBatch(ctx, ab, frames); err != nil {
				t.Errorf("SendBatch of %d frames: %v", len(frames), err)
				cancel()
				return
			}
			for _, f := range frames {
				clear(f) // the transport must not hold on to them
			}
		}
	}()
	i := 0
	for _, sizes := range batches {
		for _, n := range sizes {
			want = append(want, frameContent(7, i, n))
			i++
		}
	}
	for i, w := range want {
		got, err := ba.Receive(ctx)
		if err != nil {
			t.Fatalf("Receive frame %d of %d: %v", i, len(want), err)
		}
		if !bytes.Equal(got, w) {
			t.Fatalf("frame %d: got %d bytes %s, want %d bytes %s", i, len(got), head(got), len(w), head(w))
		}
	}

	<-sent
	if native {
		err := transport.SendBatch(ctx, ab, [][]byte{[]byte("refused"), make([]byte, limit+1)})
		if !errors.Is(err, transport.ErrFrameTooLarge) {
			t.Fatalf("SendBatch with a frame of %d bytes, limit %d: err = %v, want ErrFrameTooLarge", limit+1, limit, err)
		}
	}
	if err := transport.SendBatch(ctx, ab, [][]byte{[]byte("after")}); err != nil {
		t.Fatalf("SendBatch after a refused batch: %v", err)
	}
	if got := receive(t, ba); string(got) != "after" {
		t.Fatalf("received %q after a refused batch, want %q", got, "after")
	}
}

// receiveBuffer receives frames of every size with transport.ReceiveBuffer
// (the edge's own ReceiveBuffer when it is a transport.BufferReceiver), all
// into one reused buffer: each must arrive whole, in the caller's buffer
// when the edge is a BufferReceiver, and stay the caller's (overwriting it
// does not disturb the next frame). A buffer of the wrong length is not
// used.
func (s suite) receiveBuffer(t *testing.T) {
	ab, ba, limit := s.limitedPair(t)
	_, native := ba.(transport.BufferReceiver)
	t.Logf("edge implements transport.BufferReceiver: %v", native)
	ctx, cancel := context.WithTimeout(context.Background(), 6*Timeout)
	defer cancel()

	sizes := []int{1, 0, 3, 4096, 70000, 64, limit, 17, 70000}
	for j := range sizes {
		sizes[j] = min(sizes[j], limit)
	}
	sent := make(chan struct{})
	defer func() { <-sent }()
	go func() {
		defer close(sent)
		for i, n := range sizes {
			if err := ab.Send(ctx, frameContent(9, i, n)); err != nil {
				t.Errorf("Send frame %d (%d bytes): %v", i, n, err)
				cancel()
				return
			}
		}
		if err := ab.Send(ctx, []byte("wrong length")); err != nil {
			t.Errorf("Send: %v", err)
			cancel()
		}
	}()
	var reused []byte
	asked := 0
	buf := func(n int) []byte {
		asked++
		if cap(reused) < n {
			reused = make([]byte, n)
		}
		return reused[:n]
	}
	for i, n := range sizes {
		got, err := transport.ReceiveBuffer(ctx, ba, buf)
		if err != nil {
			t.Fatalf("ReceiveBuffer frame %d of %d: %v", i, len(sizes), err)
		}
		if want := frameContent(9, i, n); !bytes.Equal(got, want) {
			t.Fatalf("frame %d: got %d bytes %s, want %d bytes %s", i, len(got), head(got), len(want), head(want))
		}
		if native && n > 0 && &got[0] != &reused[0] {
			t.Fatalf("frame %d (%d bytes) is not in the buffer ReceiveBuffer was given", i, n)
		}
		clear(reused) // the frame is the caller's: the edge must not read it again
	}
	if native && asked < len(sizes)-1 {
		t.Fatalf("buf called %d times for %d frames", asked, len(sizes))
	}
	short := make([]byte, 1)
	got, err := transport.ReceiveBuffer(ctx, ba, func(int) []byte { return short })
	if err != nil {
		t.Fatalf("ReceiveBuffer with a buffer of the wrong length: %v", err)
	}
	if string(got) != "wrong length" {
		t.Fatalf("ReceiveBuffer with a buffer of the wrong length: got %q, want %q", got, "wrong length")
	}
}

func (s suite) senderReusesBuffer(t *testing.T) {
	ab, ba := s.pair(t)
	buf := []byte("first frame")
	send(t, ab, buf)
	copy(buf, "XXXXXXXXXXX")
	send(t, ab, buf)
	if got := receive(t, ba); string(got) != "first frame" {
		t.Fatalf("first frame received as %q: the transport kept the sender's buffer", got)
	}
	if got := receive(t, ba); string(got) != "XXXXXXXXXXX" {
		t.Fatalf("second frame received as %q", got)
	}
	// The receiver owns what Receive returned: changing it must not affect
	// later frames.
	send(t, ab, []byte("third"))
	got := receive(t, ba)
	copy(got, "33333")
	send(t, ab, []byte("fourth"))
	if got := receive(t, ba); string(got) != "fourth" {
		t.Fatalf("frame received as %q after the receiver modified the previous one", got)
	}
}

// concurrentSendReceive has b echo every frame while a sends and receives at
// the same time on its one edge.
func (s suite) concurrentSendReceive(t *testing.T) {
	ab, ba := s.pair(t)
	const frames = 2000
	ctx, cancel := context.WithTimeout(context.Background(), 3*Timeout)
	defer cancel()
	var wg sync.WaitGroup
	fail := func(err error) {
		t.Error(err)
		cancel()
	}
	wg.Go(func() { // echo
		for range frames {
			f, err := ba.Receive(ctx)
			if err != nil {
				fail(fmt.Errorf("echo Receive: %w", err))
				return
			}
			if err := ba.Send(ctx, f); err != nil {
				fail(fmt.Errorf("echo Send: %w", err))
				return
			}
		}
	})
	wg.Go(func() {
		var b [4]byte
		for i := range frames {
			binary.BigEndian.PutUint32(b[:], uint32(i))
			if err := ab.Send(ctx, b[:]); err != nil {
				fail(fmt.Errorf("Send %d: %w", i, err))
				return
			}
		}
	})
	wg.Go(func() {
		for i := range frames {
			f, err := ab.Receive(ctx)
			if err != nil {
				fail(fmt.Errorf("Receive %d: %w", i, err))
				return
			}
			if len(f) != 4 || binary.BigEndian.Uint32(f) != uint32(i) {
				fail(fmt.Errorf("echo %d: got %x", i, f))
				return
			}
		}
	})
	wg.Wait()
}

// manyEdges opens 20 edges between the same two transports and checks that
// each carries its own frames only.
func (s suite) manyEdges(t *testing.T) {
	a, b := s.newTransport(t), s.newTransport(t)
	const edges, frames = 20, 50
	dialed := make([]transport.Edge, edges)
	byID := make(map[byte]transport.Edge)
	for i := range edges {
		ab, ba := connect(t, a, b)
		dialed[i] = ab
		// Identify the accepted side by a first frame: a transport may hand
		// out accepted edges in any order.
		send(t, ab, []byte{byte(i)})
		f := receive(t, ba)
		if len(f) != 1 || int(f[0]) >= edges || byID[f[0]] != nil {
			t.Fatalf("edge %d: bad or repeated id frame %x", i, f)
		}
		byID[f[0]] = ba
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*Timeout)
	defer cancel()
	var wg sync.WaitGroup
	for i := range edges {
		for dir, pair := range [][2]transport.Edge{{dialed[i], byID[byte(i)]}, {byID[byte(i)], dialed[i]}} {
			from, to := pair[0], pair[1]
			wg.Go(func() {
				for k := range frames {
					if err := from.Send(ctx, []byte{byte(i), byte(dir), byte(k)}); err != nil {
						t.Errorf("edge %d dir %d: Send: %v", i, dir, err)
						cancel()
						return
					}
				}
			})
			wg.Go(func() {
				for k := range frames {
					f, err := to.Receive(ctx)
					if err != nil {
						t.Errorf("edge %d dir %d: Receive: %v", i, dir, err)
						cancel()
						return
					}
					if want := []byte{byte(i), byte(dir), byte(k)}; !bytes.Equal(f, want) {
						t.Errorf("edge %d dir %d: frame %d is %x, want %x", i, dir, k, f, want)
						cancel()
						return
					}
				}
			})
		}
	}
	wg.Wait()
}

func wantClosed(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, transport.ErrClosed) {
		t.Errorf("%s: err = %v, want one wrapping transport.ErrClosed", what, err)
	}
}

func (s suite) remoteClose(t *testing.T) {
	ab, ba := s.pair(t)
	// A Receive already waiting when the peer closes returns, as does one
	// started afterwards.
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := ba.Receive(ctx)
		errc <- err
	}()
	if err := ab.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		wantClosed(t, "pending Receive after the peer closed", err)
	case <-time.After(promptly):
		t.Errorf("pending Receive did not return within %v of the peer closing", promptly)
		cancel()
		<-errc
	}
	within(t, promptly, "Receive after the peer closed", func() {
		_, err := ba.Receive(ctx)
		wantClosed(t, "Receive after the peer closed", err)
	})
}

func (s suite) localClose(t *testing.T) {
	ab, _ := s.pair(t)
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := ab.Receive(ctx)
		errc <- err
	}()
	if err := ab.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		wantClosed(t, "pending Receive after Close", err)
	case <-time.After(promptly):
		t.Errorf("pending Receive did not return within %v of Close", promptly)
		cancel()
		<-errc
	}
	within(t, promptly, "Send and Receive after Close", func() {
		wantClosed(t, "Send after Close", ab.Send(ctx, []byte("x")))
		_, err := ab.Receive(ctx)
		wantClosed(t, "Receive after Close", err)
	})
	_ = ab.Close() // a second Close must not panic
}

func (s suite) transportClose(t *testing.T) {
	a, b := s.newTransport(t), s.newTransport(t)
	ab, ba := connect(t, a, b)
	ba2, ab2 := connect(t, b, a) // an edge a accepted

	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	accepted := make(chan error, 1)
	go func() {
		e, err := a.Accept(ctx)
		if e != nil {
			_ = e.Close()
		}
		accepted <- err
	}()
	if err := a.Close(); err != nil {
		t.Fatalf("Transport.Close: %v", err)
	}
	select {
	case err := <-accepted:
		wantClosed(t, "pending Accept after Transport.Close", err)
	case <-time.After(promptly):
		t.Errorf("pending Accept did not return within %v of Transport.Close", promptly)
		cancel()
		<-accepted
	}
	within(t, promptly, "calls after Transport.Close", func() {
		_, err := a.Accept(ctx)
		wantClosed(t, "Accept after Transport.Close", err)
		for name, e := range map[string]transport.Edge{"dialled": ab, "accepted": ab2} {
			wantClosed(t, name+" edge Send after Transport.Close", e.Send(ctx, []byte("x")))
			_, err := e.Receive(ctx)
			wantClosed(t, name+" edge Receive after Transport.Close", err)
		}
		e, err := a.Dial(ctx, b.Addrs()[0])
		if err == nil {
			_ = e.Close()
			t.Error("Dial after Transport.Close succeeded")
		}
		// The peers see their edges end.
		for name, e := range map[string]transport.Edge{"dialled": ba, "accepted": ba2} {
			if _, err := e.Receive(ctx); err == nil {
				t.Errorf("peer of the %s edge: Receive succeeded after Transport.Close", name)
			}
		}
	})
	_ = a.Close() // a second Close must not panic
}

func (s suite) dialUnreachable(t *testing.T) {
	if s.f.Unreachable == "" {
		t.Skip("Factory.Unreachable not set")
	}
	a := s.newTransport(t)
	const budget = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	within(t, budget+promptly, "Dial to an unreachable address", func() {
		e, err := a.Dial(ctx, s.f.Unreachable)
		if err == nil {
			_ = e.Close()
			t.Errorf("Dial(%q) succeeded, want an error", s.f.Unreachable)
		}
	})
}

func (s suite) contextCancel(t *testing.T) {
	a, b := s.newTransport(t), s.newTransport(t)
	ab, ba := connect(t, a, b)
	wantCanceled := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: err = %v, want context.Canceled", what, err)
		}
	}
	cancelled := func(what string, call func(context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- call(ctx) }()
		cancel()
		select {
		case err := <-errc:
			wantCanceled(what, err)
		case <-time.After(promptly):
			t.Errorf("%s did not return within %v of cancellation", what, promptly)
			_ = a.Close() // unblock it, then collect it
			<-errc
		}
	}
	cancelled("Receive", func(ctx context.Context) error {
		_, err := ab.Receive(ctx)
		return err
	})
	cancelled("Accept", func(ctx context.Context) error {
		e, err := a.Accept(ctx)
		if e != nil {
			_ = e.Close()
		}
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	within(t, promptly, "Dial with a cancelled context", func() {
		e, err := a.Dial(ctx, b.Addrs()[0])
		if e != nil {
			_ = e.Close()
		}
		wantCanceled("Dial with a cancelled context", err)
	})
	// The edge still works after a cancelled Receive.
	send(t, ba, []byte("still there"))
	if got := receive(t, ab); string(got) != "still there" {
		t.Fatalf("Receive after a cancelled Receive got %q", got)
	}
}
