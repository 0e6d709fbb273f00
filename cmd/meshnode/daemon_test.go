package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/libp2p/zeroconf/v2"
	"go.uber.org/goleak"

	"github.com/distrirender/distrirender/internal/testutil"
	"github.com/distrirender/distrirender/meshapi"
	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// logWriter sends a daemon's log lines to t.Log, prefixed with its name,
// until the test ends.
type logWriter struct {
	t    testing.TB
	name string
	mu   sync.Mutex
	done bool
	all  strings.Builder
}

func (w *logWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(b)
	if !w.done {
		w.t.Log(w.name + ": " + strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

// count returns how many times s occurs in the log so far.
func (w *logWriter) count(s string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Count(w.all.String(), s)
}

// inproc is a daemon running in this process on the memory transport.
type inproc struct {
	log    *logWriter
	n      *node.Node
	api    *meshapi.Client
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startInproc(t *testing.T, mem *memory.Network, name string, c runConfig) *inproc {
	t.Helper()
	c.API = "127.0.0.1:0"
	c.LogFormat = "text"
	c.LogLevel = slog.LevelInfo
	if c.JoinTimeout == 0 {
		c.JoinTimeout = time.Second
	}
	c.ShutdownTimeout = time.Second
	c.DiscoverInterval = time.Second
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	lw := &logWriter{t: t, name: name}
	t.Cleanup(func() { lw.mu.Lock(); lw.done = true; lw.mu.Unlock() })
	ctx, cancel := context.WithCancel(context.Background())
	d := &inproc{log: lw, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan struct{})
	deps := daemonDeps{
		listen: func(_ context.Context, s listenSpec, _ *slog.Logger) (transport.Transport, error) {
			return mem.Listen(s.addr)
		},
		logOut: lw,
		ready: func(n *node.Node, apiAddr string) {
			d.n, d.api = n, meshapi.NewClient(apiAddr)
			close(ready)
		},
	}
	go func() { d.done <- runDaemon(ctx, &c, deps) }()
	select {
	case <-ready:
	case err := <-d.done:
		t.Fatalf("%s did not start: %v", name, err)
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not start", name)
	}
	t.Cleanup(func() { d.stop(t) })
	return d
}

// stop ends the daemon as SIGTERM would and checks that it returns nil.
func (d *inproc) stop(t *testing.T) {
	t.Helper()
	d.once.Do(func() {
		d.cancel()
		select {
		case err := <-d.done:
			if err != nil {
				t.Errorf("daemon returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("daemon did not stop within 10s")
		}
	})
}

func (d *inproc) neighbors(t *testing.T) []uuid.UUID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := d.api.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st.Neighbors
}

// TestDaemonJoin runs daemons in-process on the memory transport: a daemon
// started before its seed joins once the seed is up, sees the seed leave
// cleanly, and joins again when the seed comes back.
func TestDaemonJoin(t *testing.T) {
	mem := memory.NewNetwork(memory.Config{Seed: 1})
	defer mem.Close()
	joiner := startInproc(t, mem, "joiner", runConfig{Listen: "joiner", Join: listFlag{"nowhere", "seed"}, MaxConnections: 10})
	// The seed is not there yet: the joiner keeps trying.
	testutil.WaitFor(t, 5*time.Second, "the joiner to fail twice", func() bool { return joiner.log.count("could not join yet") >= 2 })
	if nb := joiner.neighbors(t); len(nb) != 0 {
		t.Fatalf("neighbours before the seed exists: %v", nb)
	}
	seedID := uuid.New()
	seed := startInproc(t, mem, "seed", runConfig{Listen: "seed", ID: seedID.String(), MaxConnections: 10})
	testutil.WaitFor(t, 5*time.Second, "the joiner to join the late seed", func() bool {
		nb := joiner.neighbors(t)
		return len(nb) == 1 && nb[0] == seedID
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs := make(chan meshapi.StreamEvent, 16)
	streamDone := make(chan struct{})
	defer func() { cancel(); <-streamDone }()
	go func() {
		defer close(streamDone)
		joiner.api.Stream(ctx, true, func(ev meshapi.StreamEvent) error {
			select {
			case evs <- ev:
			case <-ctx.Done():
			}
			return nil
		})
	}()
	select {
	case ev := <-evs:
		if ev.Type != "ready" {
			t.Fatalf("first event %q", ev.Type)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no ready event")
	}

	seed.stop(t)
	testutil.WaitFor(t, 5*time.Second, "a neighbor-down event for the seed", func() bool {
		select {
		case ev := <-evs:
			return ev.Type == "neighbor-down" && strings.Contains(string(ev.Data), "goodbye")
		default:
			return false
		}
	})

	// The seed restarts with the same ID: the joiner joins again by itself.
	startInproc(t, mem, "seed2", runConfig{Listen: "seed", ID: seedID.String(), MaxConnections: 10})
	testutil.WaitFor(t, 10*time.Second, "the joiner to rejoin the restarted seed", func() bool {
		nb := joiner.neighbors(t)
		return len(nb) == 1 && nb[0] == seedID
	})
}

func TestDaemonStartErrors(t *testing.T) {
	mem := memory.NewNetwork(memory.Config{Seed: 1})
	defer mem.Close()
	listen := func(_ context.Context, s listenSpec, _ *slog.Logger) (transport.Transport, error) {
		return mem.Listen(s.addr)
	}
	c := runConfig{Listen: "a", API: "127.0.0.1:0", MaxConnections: 10, LogFormat: "text", IDFile: t.TempDir()} // a directory
	err := runDaemon(context.Background(), &c, daemonDeps{listen: listen, logOut: &logWriter{t: t}})
	if err == nil || !strings.Contains(err.Error(), "--id-file") {
		t.Errorf("unreadable id file: %v", err)
	}
	c = runConfig{Listen: "a", API: "256.0.0.1:1", MaxConnections: 10, LogFormat: "text"}
	err = runDaemon(context.Background(), &c, daemonDeps{listen: listen, logOut: &logWriter{t: t}})
	if err == nil || !strings.Contains(err.Error(), "API") {
		t.Errorf("bad API address: %v", err)
	}
	// The failed start released the transport address.
	if tr, err := mem.Listen("a"); err != nil {
		t.Errorf("address still taken: %v", err)
	} else {
		tr.Close()
	}
	boom := errors.New("boom")
	c = runConfig{Listen: "b", API: "", MaxConnections: 10, LogFormat: "text"}
	err = runDaemon(context.Background(), &c, daemonDeps{
		listen: func(context.Context, listenSpec, *slog.Logger) (transport.Transport, error) { return nil, boom }, logOut: &logWriter{t: t},
	})
	if !errors.Is(err, boom) {
		t.Errorf("listen failure: %v", err)
	}
}

func TestWarnIfExposed(t *testing.T) {
	for _, tc := range []struct {
		bound string
		warn  bool
	}{
		{"127.0.0.1:7070", false},
		{"[::1]:7070", false},
		{"0.0.0.0:7070", true},
		{"[::]:7070", true},
		{"10.1.2.3:7070", true},
	} {
		var b strings.Builder
		warnIfExposed(slog.New(slog.NewTextHandler(&b, nil)), tc.bound, tc.bound)
		if got := strings.Contains(b.String(), "NOT ON LOOPBACK"); got != tc.warn {
			t.Errorf("%s: warned %v, want %v", tc.bound, got, tc.warn)
		}
	}
}

// TestClientCommands runs the client subcommands, human-readable and JSON,
// against in-process daemons, named alpha and beta: send takes a node's
// UUID, a prefix of it or its name.
func TestClientCommands(t *testing.T) {
	mem := memory.NewNetwork(memory.Config{Seed: 1})
	defer mem.Close()
	a := startInproc(t, mem, "a", runConfig{Listen: "a", Name: "alpha", MaxConnections: 10})
	b := startInproc(t, mem, "b", runConfig{Listen: "b", Name: "beta", Join: listFlag{"a"}, MaxConnections: 10})
	testutil.WaitFor(t, 5*time.Second, "b to join a", func() bool { return len(b.neighbors(t)) == 1 })
	env := []string{"MESHNODE_API=" + strings.TrimPrefix(b.api.BaseURL, "http://")} // b's API unless --api says otherwise
	run := func(args ...string) (string, int) {
		var out, errb strings.Builder
		code := realMain(context.Background(), args, strings.NewReader("from\nstdin"), &out, &errb, env)
		return out.String() + errb.String(), code
	}
	aAPI := strings.TrimPrefix(a.api.BaseURL, "http://")

	// recv on a, human-readable, until its context ends.
	rctx, stopRecv := context.WithCancel(context.Background())
	var recvOut testutil.SyncBuffer
	recvDone := make(chan int)
	go func() {
		recvDone <- realMain(rctx, []string{"recv", "--events", "--api", aAPI}, nil, &recvOut, &recvOut, env)
	}()
	testutil.WaitFor(t, 5*time.Second, "recv to open its stream", func() bool { return strings.Contains(recvOut.String(), "# receiving as") })

	aID := a.n.ID().String()
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"status"}, "id          " + b.n.ID().String(), exitOK},
		{[]string{"status"}, "name        beta\n", exitOK},
		{[]string{"status"}, "            " + aID + "  alpha\n", exitOK}, // its neighbour
		{[]string{"status", "--api", aAPI}, "id          " + aID, exitOK},
		{[]string{"status", "--json"}, `"name": "beta"`, exitOK},
		{[]string{"topology"}, b.n.ID().String() + " (self)  beta ", exitOK},
		{[]string{"topology"}, aID + "         alpha  1 ", exitOK},
		{[]string{"topology", "--json"}, `"name": "alpha"`, exitOK},
		{[]string{"send", aID, "hello a"}, "accepted for " + aID, exitOK},
		{[]string{"send", "--json", aID, "-"}, `"reachable": true`, exitOK},
		// The 8-character prefixes topology shows, and names.
		{[]string{"send", "alpha", "by name"}, "accepted for " + aID, exitOK},
		{[]string{"send", aID[:8], "by prefix"}, "accepted for " + aID, exitOK},
		{[]string{"send", "omega", "x"}, `meshnode send: 400 Bad Request: to: no such node: "omega" is neither a UUID`, exitError},
		{[]string{"send", aID[:3], "x"}, "at least 4 hex digits", exitError},
		{[]string{"send", "beta", "x"}, "400 Bad Request: to is this node", exitError},
		{[]string{"broadcast", "hello all"}, "accepted for 1 nodes", exitOK},
		{[]string{"connect", "a"}, "is already a neighbour", exitError},
		{[]string{"connect", "nowhere"}, "502 Bad Gateway", exitError},
	} {
		out, code := run(tc.args...)
		if !strings.Contains(out, tc.want) || code != tc.code {
			t.Errorf("%q: exit %d, output %q; want %d and %q", tc.args, code, out, tc.code, tc.want)
		}
	}
	from := b.n.ID().String()
	testutil.WaitFor(t, 5*time.Second, "the five messages at a", func() bool {
		o := recvOut.String()
		return strings.Contains(o, "from "+from+" #0: hello a") &&
			strings.Contains(o, "from "+from+` #1: from\nstdin`) &&
			strings.Contains(o, "from "+from+" #2: by name") &&
			strings.Contains(o, "from "+from+" #3: by prefix") &&
			strings.Contains(o, "broadcast from "+from+" #0: hello all")
	})
	stopRecv()
	if code := <-recvDone; code != exitOK {
		t.Errorf("recv exit code %d after interrupt, want 0", code)
	}
}

func TestParseEntry(t *testing.T) {
	id := uuid.New()
	cases := []struct {
		name  string
		e     zeroconf.ServiceEntry
		ok    bool
		addrs []string
	}{
		{"txt addrs", zeroconf.ServiceEntry{Text: []string{"id=" + id.String(), "addr=10.0.0.1:4242", "addr=junk"}, Port: 1}, true, []string{"10.0.0.1:4242"}},
		{"A records", zeroconf.ServiceEntry{Text: []string{"id=" + id.String()}, Port: 4242, AddrIPv4: []net.IP{net.IPv4(10, 0, 0, 2)}}, true, []string{"10.0.0.2:4242"}},
		{"no id", zeroconf.ServiceEntry{Text: []string{"addr=10.0.0.1:4242"}}, false, nil},
		{"bad id", zeroconf.ServiceEntry{Text: []string{"id=xyz", "addr=10.0.0.1:4242"}}, false, nil},
		{"no address", zeroconf.ServiceEntry{Text: []string{"id=" + id.String()}}, false, nil},
	}
	for _, tc := range cases {
		f, ok := parseEntry(&tc.e)
		if ok != tc.ok || (ok && (f.id != id || !slices.Equal(f.addrs, tc.addrs))) {
			t.Errorf("%s: %+v %v", tc.name, f, ok)
		}
	}
}
