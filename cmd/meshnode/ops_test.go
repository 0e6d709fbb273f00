package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/distrirender/distrirender/internal/testutil"
	"github.com/distrirender/distrirender/transport/memory"
)

// httpGet fetches path from d's API and returns the status and body.
func (d *inproc) httpGet(t *testing.T, path string) (int, string) {
	t.Helper()
	return testutil.Get(t, d.api.BaseURL+path)
}

// TestDaemonOps checks the operations endpoints of a daemon: /readyz fails
// until a joining node has a neighbour, /healthz holds throughout, /metrics
// shows the node's counters and events, pprof is there only with --pprof.
func TestDaemonOps(t *testing.T) {
	mem := memory.NewNetwork(memory.Config{Seed: 1})
	defer mem.Close()
	joiner := startInproc(t, mem, "joiner", runConfig{Listen: "joiner", Join: listFlag{"seed"}, MaxConnections: 10, Pprof: true})
	if code, body := joiner.httpGet(t, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no neighbours") {
		t.Errorf("/readyz before the seed is up: %d %s", code, body)
	}
	if code, body := joiner.httpGet(t, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	seed := startInproc(t, mem, "seed", runConfig{Listen: "seed", MaxConnections: 10})
	testutil.WaitFor(t, 10*time.Second, "/readyz to answer 200", func() bool {
		code, _ := joiner.httpGet(t, "/readyz")
		return code == http.StatusOK
	})
	if code, body := seed.httpGet(t, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz of a node with nowhere to join: %d %s", code, body)
	}
	code, body := joiner.httpGet(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	for _, want := range []string{"mesh_neighbors 1\n", `mesh_events_total{kind="neighbor-up"} 1`, "meshapi_streams 0\n", "mesh_frames_received_total "} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	cases := []struct {
		d    *inproc
		path string
		code int
	}{
		{joiner, "/debug/pprof/", http.StatusOK},
		{joiner, "/debug/pprof/cmdline", http.StatusOK},
		{seed, "/debug/pprof/", http.StatusNotFound},
		{seed, "/metricz", http.StatusNotFound},
		{seed, "/ui/", http.StatusOK},
		{seed, "/v1/openapi.json", http.StatusOK},
	}
	for _, c := range cases {
		if code, body := c.d.httpGet(t, c.path); code != c.code {
			t.Errorf("%s: %d, want %d: %.200s", c.path, code, c.code, body)
		}
	}
}

// TestRecvDaemonStops checks that recv ends cleanly, saying why, when its
// daemon stops.
func TestRecvDaemonStops(t *testing.T) {
	mem := memory.NewNetwork(memory.Config{Seed: 1})
	defer mem.Close()
	d := startInproc(t, mem, "a", runConfig{Listen: "a", MaxConnections: 10})
	var out, errb testutil.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- realMain(context.Background(), []string{"recv", "--api", strings.TrimPrefix(d.api.BaseURL, "http://")}, nil, &out, &errb, nil)
	}()
	testutil.WaitFor(t, 5*time.Second, "recv to open its stream", func() bool { return strings.Contains(out.String(), "# receiving as") })
	d.stop(t)
	select {
	case code := <-done:
		if code != exitOK || !strings.Contains(errb.String(), "the node ended the stream") {
			t.Errorf("exit %d, stderr %q", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("recv did not end when its daemon stopped")
	}
}
