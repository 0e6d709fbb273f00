package ops_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"go.uber.org/goleak"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/internal/ops"
	"github.com/distrirender/distrirender/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	return testutil.Get(t, srv.URL+path)
}

// TestNodeMetrics scrapes a node of a three-node line and checks the
// exposition: lint-clean, and the counters and gauges of what happened.
func TestNodeMetrics(t *testing.T) {
	m := meshtest.OnMemory(t, 3, meshtest.Seed(t), meshtest.Fast()...)
	m.Link(0, 1)
	m.Link(1, 2)
	m.WaitConverged(10 * time.Second)

	reg := ops.NewRegistry()
	reg.MustRegister(ops.NewNodeCollector(m.Node(1)))
	mux := http.NewServeMux()
	ops.Mount(mux, ops.Endpoints{Registry: reg})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	code, body := get(t, srv, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, ops.Namespace+"_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
	for _, want := range []string{
		"mesh_neighbors 2\n",
		"mesh_nodes_known 3\n",
		"mesh_nodes_reachable 3\n",
		"mesh_diameter_hops 2\n",
		`mesh_frames_dropped_total{reason="no_route"} `,
		`mesh_node_info{epoch="`,
		`id="` + m.Node(1).ID().String() + `"} 1`,
		"mesh_neighbors_up_total 2\n",
		"go_goroutines ",
		"process_cpu_seconds_total ",
		"go_build_info{",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "mesh_frames_received_total 0\n") {
		t.Error("mesh_frames_received_total is 0 on a node with two neighbours")
	}
}

// TestProbes checks /healthz and /readyz for each state, and that pprof is
// mounted only when asked for.
func TestProbes(t *testing.T) {
	errDown := func() error { return io.ErrClosedPipe }
	cases := []struct {
		name              string
		e                 ops.Endpoints
		health, readiness int
		readyErr          string
		pprof             int
	}{
		{"defaults", ops.Endpoints{}, 200, 200, "", 404},
		{"not ready", ops.Endpoints{Ready: errDown}, 200, 503, io.ErrClosedPipe.Error(), 404},
		{"down", ops.Endpoints{Live: errDown, Ready: func() error { return nil }}, 503, 503, io.ErrClosedPipe.Error(), 404},
		{"pprof", ops.Endpoints{Pprof: true}, 200, 200, "", 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mux := http.NewServeMux()
			ops.Mount(mux, c.e)
			srv := httptest.NewServer(mux)
			defer srv.Close()
			if code, body := get(t, srv, "/healthz"); code != c.health {
				t.Errorf("/healthz: %d %s, want %d", code, body, c.health)
			}
			code, body := get(t, srv, "/readyz")
			if code != c.readiness {
				t.Errorf("/readyz: %d %s, want %d", code, body, c.readiness)
			}
			var res ops.ProbeResult
			if err := json.Unmarshal([]byte(body), &res); err != nil || res.Error != c.readyErr {
				t.Errorf("/readyz body %s (%v), want error %q", body, err, c.readyErr)
			}
			if code, _ := get(t, srv, "/debug/pprof/"); code != c.pprof {
				t.Errorf("/debug/pprof/: %d, want %d", code, c.pprof)
			}
			if code, _ := get(t, srv, "/metrics"); code != 404 {
				t.Errorf("/metrics without a registry: %d, want 404", code)
			}
			if got := len(ops.Routes(c.e)); got != 2+map[bool]int{true: 1}[c.e.Pprof] {
				t.Errorf("Routes: %v", ops.Routes(c.e))
			}
		})
	}
}
