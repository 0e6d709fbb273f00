package main

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCommandLine(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string // in stdout or stderr
	}{
		{[]string{"-h"}, 0, "-nodes"},
		{[]string{"--version"}, 0, "meshdemo "},
		{[]string{"-nodes", "2"}, 2, "want 3 to 200"},
		{[]string{"-nodes", "201"}, 2, "want 3 to 200"},
		{[]string{"-loss", "0.9"}, 2, "-loss"},
		{[]string{"-messages", "-1"}, 2, "negative"},
		{[]string{"-frobnicate"}, 2, "flag provided but not defined"},
		{[]string{"stray"}, 2, `unexpected argument "stray"`},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := realMain(c.args, &out, &errb); code != c.code || !strings.Contains(out.String()+errb.String(), c.want) {
				t.Errorf("exit %d (want %d), output %q %q, want %q in it", code, c.code, out.String(), errb.String(), c.want)
			}
		})
	}
}

// TestMeshSizes runs the demo at the bottom of its range and at a size
// where balancing fills nodes' slots while others join, with little
// traffic and no loss. (150 and 200 nodes, where the hand-wired ring used to
// fail with "every connection slot is taken", take tens of seconds on two
// cores without the race detector: see the CHANGELOG for the numbers.)
func TestMeshSizes(t *testing.T) {
	for _, size := range []string{"3", "40"} {
		t.Run(size, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := realMain([]string{"-nodes", size, "-messages", "20", "-broadcasts", "1", "-loss", "0"}, &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s%s", code, out.String(), errb.String())
			}
			if got := len(regexp.MustCompile(`(?m)^  n\d+ `).FindAllString(out.String(), -1)); strconv.Itoa(got) != size {
				t.Errorf("the topology lists %d nodes, want %s:\n%s", got, size, out.String())
			}
			if !strings.Contains(out.String(), "20 messages delivered, in order: true") {
				t.Errorf("output:\n%s", out.String())
			}
		})
	}
}

// TestTopologyIsFinal checks that the printed topology is the converged one:
// every neighbour listed is listed back.
func TestTopologyIsFinal(t *testing.T) {
	var out, errb bytes.Buffer
	if code := realMain([]string{"-nodes", "12", "-messages", "10", "-broadcasts", "1", "-seed", "3"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errb.String())
	}
	re := regexp.MustCompile(`(?m)^  (n\d+) .* neighbours (.*)$`)
	nbs := map[string][]string{}
	for _, m := range re.FindAllStringSubmatch(out.String(), -1) {
		nbs[m[1]] = strings.Fields(m[2])
	}
	if len(nbs) != 12 {
		t.Fatalf("%d nodes listed:\n%s", len(nbs), out.String())
	}
	for a, list := range nbs {
		if len(list) < demoMinConnections {
			t.Errorf("%s has %d neighbours, fewer than the minimum %d", a, len(list), demoMinConnections)
		}
		for _, b := range list {
			found := false
			for _, c := range nbs[b] {
				found = found || c == a
			}
			if !found {
				t.Errorf("%s lists %s as a neighbour, but not the other way round:\n%s", a, b, out.String())
			}
		}
	}
}
