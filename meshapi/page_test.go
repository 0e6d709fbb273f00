package meshapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/testutil"
)

// pageReport is what the topology page reports, with ?report=PATH, each
// time it draws: what it shows.
type pageReport struct {
	Nodes  []uuid.UUID    `json:"nodes"`
	Edges  [][2]uuid.UUID `json:"edges"`
	Path   []uuid.UUID    `json:"path"`
	Events []string       `json:"events"`
	Rate   string         `json:"rate"`
	Labels []string       `json:"labels"`
}

// reports serves the API of srv with a same-origin POST /test/report that
// keeps the page's latest report.
type reports struct {
	srv  *Server
	mu   sync.Mutex
	last pageReport
	n    int
}

func (rs *reports) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/test/report" {
		rs.srv.ServeHTTP(w, r)
		return
	}
	var rep pageReport
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(b, &rep)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rs.mu.Lock()
	rs.last, rs.n = rep, rs.n+1
	rs.mu.Unlock()
}

// wait waits until the latest report satisfies ok.
func (rs *reports) wait(t *testing.T, what string, ok func(pageReport) bool) {
	t.Helper()
	testutil.WaitFor(t, 30*time.Second, "the page to show "+what, func() bool {
		rs.mu.Lock()
		defer rs.mu.Unlock()
		return rs.n > 0 && ok(rs.last)
	})
}

// TestTopologyPage opens the live topology page of the first node of a
// four-node line in headless Chromium, and checks what it draws as the mesh
// changes: the nodes and edges, labelled by name (by UUID prefix for the
// unnamed n2), the path of a unicast to the far end (selected by its name),
// the events and the message rates.
func TestTopologyPage(t *testing.T) {
	testutil.ChromiumPath(t)
	nodes := namedLine(t, 4, Options{LiveInterval: 200 * time.Millisecond}, func(i int) string {
		if i == 2 {
			return ""
		}
		return fmt.Sprintf("n%d", i)
	})
	ids := make([]uuid.UUID, len(nodes))
	for i, a := range nodes {
		ids[i] = a.n.ID()
	}
	rs := &reports{srv: nodes[0].srv}
	ts := httptest.NewServer(rs)
	t.Cleanup(ts.Close) // after Chromium's cleanup ends its stream
	testutil.StartChromium(t, ts.URL+"/ui/?report=/test/report&to=n3")

	edges := func(pairs ...[2]int) [][2]uuid.UUID {
		var out [][2]uuid.UUID
		for _, p := range pairs {
			a, b := ids[p[0]], ids[p[1]]
			if b.String() < a.String() {
				a, b = b, a
			}
			out = append(out, [2]uuid.UUID{a, b})
		}
		slices.SortFunc(out, func(x, y [2]uuid.UUID) int { return compareIDs(x[0], y[0])*2 + compareIDs(x[1], y[1]) })
		return out
	}
	same := func(got [][2]uuid.UUID, want [][2]uuid.UUID) bool {
		got = slices.Clone(got)
		slices.SortFunc(got, func(x, y [2]uuid.UUID) int { return compareIDs(x[0], y[0])*2 + compareIDs(x[1], y[1]) })
		return slices.Equal(got, want)
	}

	// The line n0 - n1 - n2 - n3: a unicast to n3 takes three hops.
	rs.wait(t, "the line", func(r pageReport) bool {
		return len(r.Nodes) == 4 && same(r.Edges, edges([2]int{0, 1}, [2]int{1, 2}, [2]int{2, 3})) &&
			slices.Equal(r.Path, ids)
	})
	rs.wait(t, "the names", func(r pageReport) bool {
		got := slices.Sorted(slices.Values(r.Labels))
		want := slices.Sorted(slices.Values([]string{"n0 (this node)", "n1", ids[2].String()[:8], "n3"}))
		return slices.Equal(got, want)
	})
	// Traffic through n0 shows as a rate.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 20 {
		if err := nodes[0].n.Send(ctx, ids[3], []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	rs.wait(t, "a frame rate", func(r pageReport) bool { return r.Rate != "–" && r.Rate != "0.0" })

	// n3 connects to n0: a ring, and the unicast goes straight there.
	if err := nodes[3].n.Connect(ctx, nodes[0].addr); err != nil {
		t.Fatal(err)
	}
	rs.wait(t, "the ring, the one-hop path and the neighbour-up event", func(r pageReport) bool {
		return same(r.Edges, edges([2]int{0, 1}, [2]int{1, 2}, [2]int{2, 3}, [2]int{0, 3})) &&
			slices.Equal(r.Path, []uuid.UUID{ids[0], ids[3]}) && slices.Contains(r.Events, "neighbor-up")
	})

	// n2 leaves: its edges go, and the page says the topology changed.
	nodes[2].n.Close()
	rs.wait(t, "n2 gone", func(r pageReport) bool {
		return same(r.Edges, edges([2]int{0, 1}, [2]int{0, 3})) && slices.Contains(r.Events, "topology-changed")
	})

	if path := os.Getenv("MESH_SCREENSHOT"); path != "" {
		screenshot(t, path)
	}
}

func compareIDs(a, b uuid.UUID) int {
	return slices.Compare(a[:], b[:])
}

// screenshot writes a screenshot of the page of the first node of a larger
// mesh to path (MESH_SCREENSHOT=$PWD/docs/topology.png go test -run
// TestTopologyPage ./meshapi/ makes the README's picture).
func screenshot(t *testing.T, path string) {
	// Named as machines might be, but for two nodes left unnamed.
	names := []string{"render-01", "render-02", "", "render-04", "gw-east", "render-06", "render-07", "", "storage", "render-10", "gw-west", "laptop"}
	nodes := namedLine(t, 12, Options{}, func(i int) string { return names[i] })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, l := range [][2]int{{0, 5}, {2, 8}, {4, 11}, {6, 10}, {1, 9}, {3, 7}} {
		if err := nodes[l[0]].n.Connect(ctx, nodes[l[1]].addr); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 10*time.Second, "the chords to be known", func() bool {
		edges := 0
		for _, ni := range nodes[0].n.Topology().Nodes {
			edges += len(ni.Neighbors)
		}
		return edges == 2*(11+6)
	})
	// Some traffic, for the rates.
	go func() {
		for i := range 400 {
			if nodes[0].n.Send(ctx, nodes[i%11+1].n.ID(), []byte("x")) != nil {
				return
			}
		}
	}()
	far := nodes[0].n.ID()
	best := 0
	for _, ni := range nodes[0].n.Topology().Nodes {
		if ni.Distance > best {
			far, best = ni.ID, ni.Distance
		}
	}
	ts := httptest.NewServer(nodes[0].srv)
	defer ts.Close()
	testutil.RunChromium(t, time.Minute, "--screenshot="+path, "--window-size=1280,800", "--hide-scrollbars",
		"--virtual-time-budget=3000", ts.URL+"/ui/?snapshots=3&to="+far.String())
	t.Logf("wrote %s", path)
}
