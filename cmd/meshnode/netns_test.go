package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/meshapi"
)

// TestNetnsCluster runs real meshnode processes over QUIC, one per network
// namespace, on a bridge that exists only inside namespaces this test makes:
//
//	ns mesh-<r>-br:  br0, with one veth per node namespace
//	ns mesh-<r>-N:   eth0 = 10.213.<x>.N/24, lo; meshnode run --listen 10.213.<x>.N:4242
//	                 --api 127.0.0.1:7070 (each namespace has its own loopback)
//
// The test talks to each node through `ip netns exec NS meshnode status
// --json` and friends, so nothing leaves the namespaces but the process
// pipes. The scenario:
//
//  1. n5, n4, n3, n2 start before n1, each joining its predecessor (n2 joins
//     n1, the seed): a chain; `meshnode connect` adds n5-n1, making a ring.
//     Every node must see all five and the ring's routes.
//  2. n2 -> n5 goes through n1 (2 hops).
//  3. SIGKILL n1: n2 and n5 notice by keepalive, re-route through n3 and n4,
//     and n2 -> n5 gets through over 3 hops.
//  4. SIGTERM n3: it exits 0 and its neighbours drop it at once (goodbye).
//  5. n6..n8 start with --discover and no --join; n4 announces itself by
//     mDNS (it runs with --discover from the start): they find it and join
//     the mesh, and n8 -> n5 gets through.
//
// It needs root (network namespaces) and the ip command (iproute2).
func TestNetnsCluster(t *testing.T) {
	requireNetns(t)
	deadline := time.Now().Add(80 * time.Second)
	lab := newLab(t, 8)

	// 1. A chain started back to front, so that every node starts before the
	// node it joins; n4 also announces itself by mDNS for step 5.
	for i := 5; i >= 1; i-- {
		args := []string{"--min-connections", "0"}
		if i > 1 {
			args = append(args, "--join", lab.addr(i-1))
		}
		if i == 4 {
			args = append(args, "--discover", "--discover-interval", "2s")
		}
		lab.start(i, args...)
	}
	ids := lab.nodeIDs(deadline, 1, 2, 3, 4, 5)
	lab.eventually(deadline, "the chain n1-n2-n3-n4-n5", func() error {
		return lab.expectNeighbors(ids, map[int][]int{1: {2}, 2: {1, 3}, 3: {2, 4}, 4: {3, 5}, 5: {4}})
	})
	if out, err := lab.client(5, "connect", lab.addr(1)); err != nil {
		t.Fatalf("meshnode connect: %v\n%s", err, out)
	}
	lab.eventually(deadline, "every node to see the ring n1-n2-n3-n4-n5-n1", func() error {
		if err := lab.expectNeighbors(ids, map[int][]int{1: {2, 5}, 2: {1, 3}, 3: {2, 4}, 4: {3, 5}, 5: {1, 4}}); err != nil {
			return err
		}
		for i := 1; i <= 5; i++ {
			tp, err := lab.topology(i)
			if err != nil {
				return err
			}
			if len(tp.Nodes) != 5 || tp.Diameter != 2 {
				return fmt.Errorf("n%d sees %d nodes, diameter %d", i, len(tp.Nodes), tp.Diameter)
			}
			for _, ni := range tp.Nodes {
				if ni.Distance < 0 || len(ni.Neighbors) != 2 {
					return fmt.Errorf("n%d: %s at distance %d with %d neighbours", i, nodeName(ids, ni.ID), ni.Distance, len(ni.Neighbors))
				}
			}
		}
		return nil
	})
	route := func(from, to int) (int, string, error) { return lab.route(ids, from, to) }
	if d, via, err := route(2, 5); err != nil || d != 2 || via != "n1" {
		t.Fatalf("route n2 -> n5: distance %d via %s (%v), want 2 via n1", d, via, err)
	}

	// 2. n2 -> n5, forwarded by n1.
	rx := lab.recv(5)
	lab.send(2, ids[5], "hello through the seed")
	rx.expect(deadline, ids[2], "hello through the seed")
	if st, err := lab.status(1); err != nil || st.Stats.Forwarded == 0 {
		t.Fatalf("n1 forwarded nothing: %+v, %v", st.Stats, err)
	}

	// 3. Kill the seed: n2 re-routes through n3 and n4.
	lab.kill(1, syscall.SIGKILL)
	lab.eventually(deadline, "n2 to re-route to n5 through n3", func() error {
		if err := lab.expectNeighbors(ids, map[int][]int{2: {3}, 5: {4}}); err != nil {
			return err
		}
		if d, via, err := route(2, 5); err != nil || d != 3 || via != "n3" {
			return fmt.Errorf("route n2 -> n5: distance %d via %s (%v)", d, via, err)
		}
		return nil
	})
	lab.send(2, ids[5], "hello around the ring")
	rx.expect(deadline, ids[2], "hello around the ring")
	for _, i := range []int{3, 4} {
		if st, err := lab.status(i); err != nil || st.Stats.Forwarded == 0 {
			t.Fatalf("n%d forwarded nothing: %+v, %v", i, st.Stats, err)
		}
	}

	// 4. SIGTERM n3: a clean exit, and its neighbours drop it at once (the
	// keepalive limit is 3 s; a goodbye takes milliseconds).
	lab.kill(3, syscall.SIGTERM)
	if code := lab.wait(3, 10*time.Second); code != 0 {
		t.Fatalf("n3 exited with %d after SIGTERM, want 0", code)
	}
	left := time.Now()
	lab.eventually(left.Add(2*time.Second), "n2 and n4 to drop n3 within 2s", func() error {
		return lab.expectNeighbors(ids, map[int][]int{2: {}, 4: {5}})
	})
	t.Logf("n3's neighbours dropped it %v after it exited", time.Since(left).Round(time.Millisecond))

	// 5. mDNS: three nodes with --discover and no --join find n4 (and each
	// other) and join the mesh.
	for i := 6; i <= 8; i++ {
		lab.start(i, "--discover", "--discover-interval", "2s", "--min-connections", "0")
	}
	lab.eventually(deadline, "n6, n7 and n8 to join n4's mesh by mDNS", func() error {
		for i := 6; i <= 8; i++ {
			st, err := lab.status(i)
			if err != nil {
				return err
			}
			ids[i] = st.ID
			tp, err := lab.topology(i)
			if err != nil {
				return err
			}
			for _, want := range []int{4, 5} {
				if !slices.ContainsFunc(tp.Nodes, func(ni meshapi.NodeInfo) bool { return ni.ID == ids[want] && ni.Distance >= 0 }) {
					return fmt.Errorf("n%d does not reach n%d yet", i, want)
				}
			}
		}
		return nil
	})
	lab.send(8, ids[5], "found by mDNS")
	rx.expect(deadline, ids[8], "found by mDNS")

	// Everyone left stops cleanly.
	for _, i := range []int{2, 4, 5, 6, 7, 8} {
		lab.kill(i, syscall.SIGTERM)
	}
	for _, i := range []int{2, 4, 5, 6, 7, 8} {
		if code := lab.wait(i, 10*time.Second); code != 0 {
			t.Errorf("n%d exited with %d after SIGTERM, want 0", i, code)
		}
	}
}

// requireNetns skips t in -short mode and when it cannot make network
// namespaces (not root), and fails it if the ip command is missing.
func requireNetns(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("network namespace cluster test skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		// A failure, not a skip: CI must not pass without these tests.
		t.Fatal("the ip command (iproute2) is missing: .ci/run installs it (apt-get install -y iproute2)")
	}
}

// lab is a set of network namespaces on one bridge, and the meshnode
// processes in them. Everything is removed by t.Cleanup.
type lab struct {
	t      *testing.T
	bin    string
	prefix string // mesh-<random>
	subnet int    // x in 10.213.x.0/24
	dir    string

	mu    sync.Mutex
	procs map[int]*proc
}

type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	code int
}

func newLab(t *testing.T, nodes int) *lab {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "meshnode")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	build := exec.Command(goBin, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, bin: bin, prefix: "mesh-" + hex.EncodeToString(r[:3]), subnet: int(r[3]), dir: dir, procs: map[int]*proc{}}
	t.Logf("namespaces %s-br and %s-1..%d, subnet 10.213.%d.0/24", l.prefix, l.prefix, nodes, l.subnet)

	// Cleanup runs last-in first-out: processes die before their namespaces go.
	var made []string
	t.Cleanup(func() {
		for _, ns := range made {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v %s", ns, err, out)
			}
		}
	})
	t.Cleanup(l.stopAll)
	br := l.prefix + "-br"
	if out, err := exec.Command("ip", "netns", "add", br).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s\n(root is not enough in a container: it needs CAP_SYS_ADMIN and CAP_NET_ADMIN, e.g. docker run --privileged)", br, err, out)
	}
	made = append(made, br)
	// Without IGMP snooping the bridge floods all multicast, like a plain
	// switch. (mDNS's 224.0.0.251 is link-local and flooded either way.)
	l.ip("-n", br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	l.ip("-n", br, "link", "set", "br0", "up")
	for i := 1; i <= nodes; i++ {
		ns := l.ns(i)
		l.ip("netns", "add", ns)
		made = append(made, ns)
		veth := fmt.Sprintf("veth%d", i)
		// Both ends are made inside the namespaces: nothing appears in the
		// host's namespace, not even for a moment.
		l.ip("-n", br, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
		l.ip("-n", br, "link", "set", veth, "master", "br0", "up")
		l.ip("-n", ns, "link", "set", "lo", "up")
		l.ip("-n", ns, "addr", "add", fmt.Sprintf("10.213.%d.%d/24", l.subnet, i), "dev", "eth0")
		// Multicast is on for veth devices by default; say so anyway, as
		// zeroconf only uses interfaces flagged MULTICAST (lo is not).
		l.ip("-n", ns, "link", "set", "eth0", "multicast", "on", "up")
		// The namespace has no default route. zeroconf names the outgoing
		// interface of every mDNS packet, which works without a route (this
		// test passes without the next line), but a sender that relies on
		// the routing table for 224.0.0.251 would get ENETUNREACH.
		l.ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
	}
	return l
}

// ip runs the ip command and fails the test if it fails.
func (l *lab) ip(args ...string) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (l *lab) ns(i int) string { return fmt.Sprintf("%s-%d", l.prefix, i) }

// host is node i's address on the bridge, and cidr the bridge's subnet.
func (l *lab) host(i int) string { return fmt.Sprintf("10.213.%d.%d", l.subnet, i) }
func (l *lab) cidr() string      { return fmt.Sprintf("10.213.%d.0/24", l.subnet) }

// addr is node i's QUIC address.
func (l *lab) addr(i int) string { return l.host(i) + ":4242" }

// start runs `meshnode run` over QUIC as node i in its namespace.
func (l *lab) start(i int, args ...string) {
	l.t.Helper()
	l.run(i, append([]string{"--listen", l.addr(i), "--join-timeout", "2s"}, args...)...)
}

// run runs `meshnode run args...` as node i in its namespace, with its API
// on the namespace's loopback and debug logs.
func (l *lab) run(i int, args ...string) {
	l.t.Helper()
	logPath := filepath.Join(l.dir, fmt.Sprintf("n%d.log", i))
	f, err := os.Create(logPath)
	if err != nil {
		l.t.Fatal(err)
	}
	defer f.Close()
	argv := append([]string{"netns", "exec", l.ns(i), l.bin, "run",
		"--api", "127.0.0.1:7070", "--log-level", "debug"}, args...)
	cmd := exec.Command("ip", argv...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so that cleanup can kill everything it
	// started; and killed if this test process dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		if err != nil && p.code == 0 {
			p.code = -1
		}
		close(p.done)
	}()
	l.mu.Lock()
	l.procs[i] = p
	l.mu.Unlock()
}

func (l *lab) proc(i int) *proc {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.procs[i]
}

// kill signals node i (ip netns exec execs meshnode, so the pid is
// meshnode's).
func (l *lab) kill(i int, sig syscall.Signal) {
	l.t.Helper()
	if err := l.proc(i).cmd.Process.Signal(sig); err != nil {
		l.t.Fatalf("signal n%d: %v", i, err)
	}
}

// wait waits for node i to exit and returns its exit code.
func (l *lab) wait(i int, timeout time.Duration) int {
	l.t.Helper()
	p := l.proc(i)
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		l.t.Fatalf("n%d did not exit within %v", i, timeout)
		return -1
	}
}

// stopAll kills every process group the lab started, waits for them, and
// prints their logs if the test failed.
func (l *lab) stopAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.procs {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	for i, p := range l.procs {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			l.t.Errorf("n%d did not die", i)
		}
		if l.t.Failed() {
			b, _ := os.ReadFile(p.log)
			l.t.Logf("---- n%d log (exit %d) ----\n%s", i, p.code, tail(string(b), 120))
		}
	}
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// client runs a client subcommand against node i's API, inside its namespace.
func (l *lab) client(i int, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	argv := append([]string{"netns", "exec", l.ns(i), l.bin}, args...)
	cmd := exec.CommandContext(ctx, "ip", append(argv, "--api", "127.0.0.1:7070", "--json")...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("meshnode %s on n%d: %w: %s", args[0], i, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (l *lab) status(i int) (meshapi.Status, error) {
	var st meshapi.Status
	out, err := l.client(i, "status")
	if err == nil {
		err = json.Unmarshal(out, &st)
	}
	return st, err
}

func (l *lab) topology(i int) (meshapi.Topology, error) {
	var tp meshapi.Topology
	out, err := l.client(i, "topology")
	if err == nil {
		err = json.Unmarshal(out, &tp)
	}
	return tp, err
}

func (l *lab) send(from int, to uuid.UUID, text string) {
	l.t.Helper()
	if out, err := l.client(from, "send", to.String(), text); err != nil {
		l.t.Fatalf("%v\n%s", err, out)
	}
}

// nodeIDs waits for nodes to answer on their API and returns their IDs.
func (l *lab) nodeIDs(deadline time.Time, nodes ...int) map[int]uuid.UUID {
	l.t.Helper()
	ids := map[int]uuid.UUID{}
	l.eventually(deadline, fmt.Sprintf("nodes %v to answer with their IDs", nodes), func() error {
		for _, i := range nodes {
			st, err := l.status(i)
			if err != nil {
				return err
			}
			ids[i] = st.ID
		}
		return nil
	})
	return ids
}

// nodeName is "nI" for the node with ID id in ids.
func nodeName(ids map[int]uuid.UUID, id uuid.UUID) string {
	for i, v := range ids {
		if v == id {
			return fmt.Sprintf("n%d", i)
		}
	}
	return id.String()[:8]
}

// route returns node from's route to node to: its distance and the name
// of its next hop (-1 and "" without a route).
func (l *lab) route(ids map[int]uuid.UUID, from, to int) (dist int, via string, err error) {
	tp, err := l.topology(from)
	if err != nil {
		return 0, "", err
	}
	for _, ni := range tp.Nodes {
		if ni.ID == ids[to] && ni.NextHop != nil {
			return ni.Distance, nodeName(ids, *ni.NextHop), nil
		}
	}
	return -1, "", nil
}

// expectNeighbors checks that each node i in want has exactly the
// neighbours want[i] (node numbers).
func (l *lab) expectNeighbors(ids map[int]uuid.UUID, want map[int][]int) error {
	for i, nbs := range want {
		st, err := l.status(i)
		if err != nil {
			return err
		}
		var exp []uuid.UUID
		for _, j := range nbs {
			exp = append(exp, ids[j])
		}
		if len(st.Neighbors) != len(exp) {
			return fmt.Errorf("n%d has %d neighbours, want %v", i, len(st.Neighbors), nbs)
		}
		for _, id := range exp {
			if !slices.Contains(st.Neighbors, id) {
				return fmt.Errorf("n%d's neighbours %v lack %s (want %v)", i, st.Neighbors, id, nbs)
			}
		}
	}
	return nil
}

// eventually polls cond until it returns nil or the deadline passes, and
// then fails with cond's last error.
func (l *lab) eventually(deadline time.Time, what string, cond func() error) {
	l.t.Helper()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// receiver is a `meshnode recv --json` process.
type receiver struct {
	l     *lab
	lines chan meshapi.StreamEvent
}

// recv starts `meshnode recv` on node i and waits for its stream to open.
func (l *lab) recv(i int) *receiver {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.ns(i), l.bin, "recv", "--json", "--api", "127.0.0.1:7070")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	r := &receiver{l: l, lines: make(chan meshapi.StreamEvent, 100)}
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev struct {
				Type string          `json:"type"`
				Data json.RawMessage `json:"data"`
			}
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				r.lines <- meshapi.StreamEvent{Type: ev.Type, Data: ev.Data}
			}
		}
	}()
	l.t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-scanDone
		_ = cmd.Wait()
	})
	select {
	case ev := <-r.lines:
		if ev.Type != "ready" {
			l.t.Fatalf("recv on n%d: first event %q", i, ev.Type)
		}
	case <-time.After(10 * time.Second):
		l.t.Fatalf("recv on n%d did not open its stream", i)
	}
	return r
}

// expect waits for a message from `from` with body text.
func (r *receiver) expect(deadline time.Time, from uuid.UUID, text string) {
	r.l.t.Helper()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case ev := <-r.lines:
			if ev.Type != "message" {
				continue
			}
			var m meshapi.Message
			if err := json.Unmarshal(ev.Data, &m); err != nil {
				r.l.t.Fatal(err)
			}
			if m.From == from && m.Body != nil && *m.Body == text {
				return
			}
		case <-timer.C:
			r.l.t.Fatal(errors.New("timed out waiting for message " + fmt.Sprintf("%q from %s", text, from)))
		}
	}
}
