package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestQuickMeasuresEveryCell runs --quick on a reduced matrix, every
// transport but one size, and checks that every cell of the plan has a
// measurement, that the report names every transport, and that the charts
// were drawn.
func TestQuickMeasuresEveryCell(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--quick", "--sizes", "64", "--reps", "1", "--duration", "20ms", "--join-nodes", "8",
		"--seed", "7", "--progress", "off", "--out", dir}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	if err := run(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("meshbench %s: %v\n%s\n%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	t.Logf("quick run of the reduced matrix: %v", time.Since(start).Round(time.Millisecond))

	js, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(js, &r); err != nil {
		t.Fatal(err)
	}
	cfg, err := parse(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	planned := cfg.plannedCells()
	measured := map[Cell]bool{}
	for _, m := range r.Measurements {
		if m.Err != "" {
			t.Errorf("%+v: %s", m.Cell, m.Err)
			continue
		}
		if m.value() <= 0 {
			t.Errorf("%+v: no figure", m.Cell)
		}
		measured[m.Cell] = true
	}
	transports, workloads := map[string]bool{}, map[string]bool{}
	for _, c := range planned {
		transports[c.Transport], workloads[c.Workload] = true, true
		if !measured[c] {
			t.Errorf("cell not measured: %+v", c)
		}
	}
	if len(transports) != len(allTransports()) || len(workloads) != 5 {
		t.Errorf("the plan has transports %v and workloads %v", transports, workloads)
	}
	if len(r.Missing) != 0 {
		t.Errorf("report lists %d missing cells", len(r.Missing))
	}
	for _, name := range allTransports() {
		if !strings.Contains(stdout.String(), "| "+name+" |") {
			t.Errorf("the report on stdout has no row for %s", name)
		}
	}
	for _, f := range []string{"results.md", "throughput-1hop-64.svg", "throughput-1hop-64.png", "ratio-3hop-64.svg", "latency-1hop.png"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestMissing(t *testing.T) {
	a := Cell{Transport: tQUIC, Layer: layerRaw, Hops: 1, Workload: wThroughput, Size: 64}
	b := Cell{Transport: tWebRTC, Layer: layerEdge, Hops: 1, Workload: wSetup}
	for _, tc := range []struct {
		name    string
		results []Measurement
		want    int
	}{
		{"none measured", nil, 2},
		{"all measured", []Measurement{{Cell: a, MsgsPerSec: 1}, {Cell: b, SetupMs: 1}}, 0},
		{"one failed every time", []Measurement{{Cell: a, MsgsPerSec: 1}, {Cell: b, Err: "boom"}, {Cell: b, Err: "again"}}, 1},
		{"one failed once", []Measurement{{Cell: a, MsgsPerSec: 1}, {Cell: b, Err: "boom"}, {Cell: b, SetupMs: 2}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := missing([]Cell{a, b}, tc.results); len(got) != tc.want {
				t.Errorf("missing = %v, want %d cells", got, tc.want)
			}
		})
	}
}

// TestRatiosWithinRepetition checks that a layer is divided by the raw
// layer of its own repetition, not by a median of raw.
func TestRatiosWithinRepetition(t *testing.T) {
	raw := Cell{Transport: tQUIC, Layer: layerRaw, Hops: 1, Workload: wThroughput, Size: 64}
	mesh := raw
	mesh.Layer, mesh.Window = layerMesh, 10
	results := []Measurement{
		{Cell: raw, Rep: 0, MsgsPerSec: 100}, {Cell: mesh, Rep: 0, MsgsPerSec: 50},
		{Cell: raw, Rep: 1, MsgsPerSec: 400}, {Cell: mesh, Rep: 1, MsgsPerSec: 100},
		{Cell: raw, Rep: 2, MsgsPerSec: 200}, {Cell: mesh, Rep: 2, MsgsPerSec: 60},
	}
	rs := ratios([]Cell{raw, mesh}, results)
	if len(rs) != 1 {
		t.Fatalf("ratios = %+v, want one", rs)
	}
	want := Spread{N: 3, Median: 0.3, Min: 0.25, Max: 0.5}
	if rs[0].Spread != want || rs[0].Layer != "mesh w10" {
		t.Errorf("ratio = %+v, want %s %+v", rs[0], "mesh w10", want)
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"--quick"}, true},
		{[]string{"--transports", "quic,webrtc", "--sizes", "64,1k,64KiB", "--reps", "3"}, true},
		{[]string{"--transports", "tcp"}, false},
		{[]string{"--transports", ""}, false},
		{[]string{"--sizes", "0"}, false},
		{[]string{"--sizes", "2048k"}, false},
		{[]string{"--reps", "0"}, false},
		{[]string{"--progress", "sometimes"}, false},
		{[]string{"extra"}, false},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cfg, err := parse(tc.args, io.Discard)
			if (err == nil) != tc.ok {
				t.Fatalf("parse: %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && (cfg.reps < 1 || len(cfg.sizes) == 0 || len(cfg.transports) == 0) {
				t.Errorf("config %+v", cfg)
			}
		})
	}
	if _, err := parse([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}
