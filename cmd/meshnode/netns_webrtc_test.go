package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestNetnsWebRTC runs meshnode processes over WebRTC, one per network
// namespace of a lab (see TestNetnsCluster), so that every edge is ICE and
// DTLS between two network stacks that share nothing but the bridge:
//
//	ns mesh-<r>-1: meshnode run --transport webrtc --peer-id n1
//	               --serve-signal 10.213.<x>.1:9000 (its bridge address: the
//	               other namespaces cannot reach its loopback)
//	ns mesh-<r>-N: meshnode run --transport webrtc --peer-id nN
//	               --signal http://10.213.<x>.1:9000/ --join n<N-1>
//
// and --ice-net 10.213.<x>.0/24 everywhere, so that ICE offers and accepts
// the bridge addresses only: not loopback, which each namespace has its own
// of. The scenario:
//
//  1. n1..n4 start in turn, each joining its predecessor by peer ID: a
//     chain. Every node must see all four, with their peer IDs as
//     addresses, and the chain's links.
//  2. n1 -> n4 goes through n2 and n3 (3 hops).
//  3. `meshnode connect n1` on n4, a WebRTC dial by peer ID through the
//     signalling server: a ring.
//  4. SIGKILL n2: n1 and n3 notice by keepalive, and n1 -> n3 gets through
//     n4.
//  5. SIGTERM the rest: they exit 0.
func TestNetnsWebRTC(t *testing.T) {
	requireNetns(t)
	const nodes = 4
	lab := newLab(t, nodes)
	start := time.Now()
	// Every wait is bounded by this deadline (a run takes some 5 s), so a
	// failing run ends within half a minute too.
	deadline := start.Add(25 * time.Second)
	signal := fmt.Sprintf("http://%s:9000/", lab.host(1))
	ids := map[int]uuid.UUID{}

	// 1. The chain, started in order: each node's API answers once its
	// transport is registered with the signalling server, so the node it
	// joins is there when it starts and no join waits for a retry.
	for i := 1; i <= nodes; i++ {
		args := []string{"--transport", "webrtc", "--peer-id", fmt.Sprintf("n%d", i),
			"--ice-net", lab.cidr(), "--min-connections", "0", "--join-timeout", "5s"}
		if i == 1 {
			args = append(args, "--serve-signal", lab.host(1)+":9000")
		} else {
			args = append(args, "--signal", signal, "--join", fmt.Sprintf("n%d", i-1))
		}
		lab.run(i, args...)
		ids[i] = lab.nodeIDs(deadline, i)[i]
	}
	chain := map[int][]int{1: {2}, 2: {1, 3}, 3: {2, 4}, 4: {3}}
	lab.eventually(deadline, "every node to see the chain n1-n2-n3-n4", func() error {
		return lab.expectTopology(ids, chain, 1, 2, 3, 4)
	})
	t.Logf("chain of %d WebRTC nodes up in %v", nodes, time.Since(start).Round(time.Millisecond))

	// 2. n1 -> n4, forwarded by n2 and n3.
	if d, via, err := lab.route(ids, 1, 4); err != nil || d != 3 || via != "n2" {
		t.Fatalf("route n1 -> n4: distance %d via %s (%v), want 3 via n2", d, via, err)
	}
	rx4 := lab.recv(4)
	sent := time.Now()
	lab.send(1, ids[4], "forwarded twice over webrtc")
	rx4.expect(deadline, ids[1], "forwarded twice over webrtc")
	t.Logf("n1 -> n4 over 3 hops in %v", time.Since(sent).Round(time.Millisecond))
	for _, i := range []int{2, 3} {
		if st, err := lab.status(i); err != nil || st.Stats.Forwarded == 0 {
			t.Fatalf("n%d forwarded nothing: %+v, %v", i, st.Stats, err)
		}
	}

	// 3. Close the ring: n4 dials n1 by peer ID.
	if out, err := lab.client(4, "connect", "n1"); err != nil {
		t.Fatalf("meshnode connect: %v\n%s", err, out)
	}
	ring := map[int][]int{1: {2, 4}, 2: {1, 3}, 3: {2, 4}, 4: {1, 3}}
	lab.eventually(deadline, "every node to see the ring n1-n2-n3-n4-n1", func() error {
		return lab.expectTopology(ids, ring, 1, 2, 3, 4)
	})

	// The edges' UDP sockets are on the bridge addresses. (They could not
	// be anywhere else and work, loopback being each namespace's own, but
	// this shows that --ice-net kept ICE from gathering anything else.)
	if _, err := exec.LookPath("ss"); err != nil {
		t.Log("no ss command (iproute2): not checking the nodes' UDP sockets")
	} else {
		for i := 1; i <= nodes; i++ {
			if err := lab.expectUDPOn(i, lab.host(i)); err != nil {
				t.Fatal(err)
			}
		}
	}

	// 4. Kill n2: n1 -> n3 goes round through n4.
	killed := time.Now()
	lab.kill(2, syscall.SIGKILL)
	lab.eventually(deadline, "n1 to re-route to n3 through n4", func() error {
		if err := lab.expectTopology(ids, map[int][]int{1: {4}, 3: {4}, 4: {1, 3}}, 1, 3, 4); err != nil {
			return err
		}
		if d, via, err := lab.route(ids, 1, 3); err != nil || d != 2 || via != "n4" {
			return fmt.Errorf("route n1 -> n3: distance %d via %s (%v)", d, via, err)
		}
		return nil
	})
	t.Logf("n2's neighbours dropped it %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
	rx3 := lab.recv(3)
	lab.send(1, ids[3], "around the ring")
	rx3.expect(deadline, ids[1], "around the ring")
	if st, err := lab.status(4); err != nil || st.Stats.Forwarded == 0 {
		t.Fatalf("n4 forwarded nothing: %+v, %v", st.Stats, err)
	}

	// 5. The others stop cleanly, the signalling server with them.
	for _, i := range []int{1, 3, 4} {
		lab.kill(i, syscall.SIGTERM)
	}
	stopped := time.Now().Add(10 * time.Second)
	for _, i := range []int{1, 3, 4} {
		if code := lab.wait(i, time.Until(stopped)); code != 0 {
			t.Errorf("n%d exited with %d after SIGTERM, want 0", i, code)
		}
	}
	t.Logf("scenario took %v", time.Since(start).Round(time.Millisecond))
}

// expectTopology checks that each node of observers sees exactly the nodes
// of want, all reachable, each with the neighbours want gives it, and each
// addressed by its peer ID "nI".
func (l *lab) expectTopology(ids map[int]uuid.UUID, want map[int][]int, observers ...int) error {
	for _, o := range observers {
		tp, err := l.topology(o)
		if err != nil {
			return err
		}
		seen := 0
		for _, ni := range tp.Nodes {
			name := nodeName(ids, ni.ID)
			var j int
			if _, err := fmt.Sscanf(name, "n%d", &j); err != nil || want[j] == nil {
				if ni.Distance < 0 {
					continue // a dead node's link state, not yet expired
				}
				return fmt.Errorf("n%d has a route to %s, which it should not", o, name)
			}
			if ni.Distance < 0 {
				return fmt.Errorf("n%d has no route to %s", o, name)
			}
			seen++
			if !slices.Equal(ni.Addrs, []string{name}) {
				return fmt.Errorf("n%d sees %s at addresses %q, want its peer ID", o, name, ni.Addrs)
			}
			var nbs []string
			for _, nb := range ni.Neighbors {
				nbs = append(nbs, nodeName(ids, nb))
			}
			var exp []string
			for _, k := range want[j] {
				exp = append(exp, fmt.Sprintf("n%d", k))
			}
			slices.Sort(nbs)
			slices.Sort(exp)
			if !slices.Equal(nbs, exp) {
				return fmt.Errorf("n%d sees %s with neighbours %v, want %v", o, name, nbs, exp)
			}
		}
		if seen != len(want) {
			return fmt.Errorf("n%d reaches %d of the %d nodes", o, seen, len(want))
		}
	}
	return nil
}

// expectUDPOn checks that node i's namespace has UDP sockets, all of them
// bound to host (only meshnode runs there).
func (l *lab) expectUDPOn(i int, host string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", l.ns(i), "ss", "-H", "-u", "-a", "-n").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ss on n%d: %v\n%s", i, err, out)
	}
	var locals []string
	for line := range strings.Lines(string(out)) {
		// State Recv-Q Send-Q Local:Port Peer:Port
		if f := strings.Fields(line); len(f) >= 5 {
			locals = append(locals, f[3])
		}
	}
	if len(locals) == 0 {
		return fmt.Errorf("n%d has no UDP socket:\n%s", i, out)
	}
	for _, a := range locals {
		if h, _, err := net.SplitHostPort(a); err != nil || h != host {
			return fmt.Errorf("n%d has a UDP socket on %s, not on its bridge address %s:\n%s", i, a, host, out)
		}
	}
	return nil
}
