package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// Spread is the median and range of a figure over the repetitions.
type Spread struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// spread summarises vs; the zero Spread for none.
func spread(vs []float64) Spread {
	if len(vs) == 0 {
		return Spread{}
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{N: len(s), Median: med, Min: s[0], Max: s[len(s)-1]}
}

// Summary is one cell over the repetitions: the spread of its main figure
// (Measurement.value) and the medians of the others.
type Summary struct {
	Cell
	Value  Spread `json:"value"`
	Errors int    `json:"errors"`
	// Medians of the secondary figures.
	MBPerSec     float64 `json:"mb_per_s,omitempty"`
	CPUNsPerMsg  float64 `json:"cpu_ns_per_msg,omitempty"`
	AllocsPerMsg float64 `json:"allocs_per_msg,omitempty"`
	RetxPer1k    float64 `json:"retx_per_1k"`
	DropsPer1k   float64 `json:"drops_per_1k"`
	P99Us        float64 `json:"p99_us,omitempty"`
	BuildMs      float64 `json:"build_ms,omitempty"`
	BalancedMs   float64 `json:"balanced_ms,omitempty"`
	Edges        int     `json:"edges,omitempty"`
	// Sums over the repetitions (failover).
	Sent       int `json:"sent,omitempty"`
	Lost       int `json:"lost"`
	Duplicated int `json:"duplicated"`
	Reordered  int `json:"reordered"`
	Failed     int `json:"failed"`
	// FirstError is one of the errors, if any.
	FirstError string `json:"first_error,omitempty"`
}

// Ratio is a layer's throughput divided by the raw layer's on the same
// transport, path length and message size, computed within each repetition.
type Ratio struct {
	Transport string `json:"transport"`
	Hops      int    `json:"hops"`
	Size      int    `json:"size"`
	// Layer is "edge", "mesh w10", ...
	Layer string `json:"layer"`
	Spread
}

// summarize groups the measurements by cell, in the order of planned.
func summarize(planned []Cell, results []Measurement) []Summary {
	by := map[Cell][]Measurement{}
	for _, m := range results {
		by[m.Cell] = append(by[m.Cell], m)
	}
	out := make([]Summary, 0, len(planned))
	for _, c := range planned {
		s := Summary{Cell: c}
		var vals, mb, cpu, al, retx, drops, p99, build, bal []float64
		for _, m := range by[c] {
			if m.Err != "" {
				s.Errors++
				if s.FirstError == "" {
					s.FirstError = m.Err
				}
				continue
			}
			vals = append(vals, m.value())
			mb, cpu, al = append(mb, m.MBPerSec), append(cpu, m.CPUNsPerMsg), append(al, m.AllocsPerMsg)
			retx, drops = append(retx, m.RetxPer1k), append(drops, m.DropsPer1k)
			p99, build, bal = append(p99, m.P99Us), append(build, m.BuildMs), append(bal, m.BalancedMs)
			s.Sent += m.Sent
			s.Lost += m.Lost
			s.Duplicated += m.Duplicated
			s.Reordered += m.Reordered
			s.Failed += m.Failed
			s.Edges = m.Edges
		}
		s.Value = spread(vals)
		s.MBPerSec, s.CPUNsPerMsg, s.AllocsPerMsg = spread(mb).Median, spread(cpu).Median, spread(al).Median
		s.RetxPer1k, s.DropsPer1k, s.P99Us = spread(retx).Median, spread(drops).Median, spread(p99).Median
		s.BuildMs, s.BalancedMs = spread(build).Median, spread(bal).Median
		out = append(out, s)
	}
	return out
}

// ratios divides every edge and mesh throughput by the raw throughput of
// the same repetition, transport, hops and size.
func ratios(planned []Cell, results []Measurement) []Ratio {
	type key struct {
		transport  string
		hops, size int
		rep        int
	}
	raw := map[key]float64{}
	for _, m := range results {
		if m.Err == "" && m.Workload == wThroughput && m.Layer == layerRaw {
			raw[key{m.Transport, m.Hops, m.Size, m.Rep}] = m.MsgsPerSec
		}
	}
	by := map[Cell][]float64{}
	for _, m := range results {
		if m.Err != "" || m.Workload != wThroughput || m.Layer == layerRaw {
			continue
		}
		if r, ok := raw[key{m.Transport, m.Hops, m.Size, m.Rep}]; ok && r > 0 {
			by[m.Cell] = append(by[m.Cell], m.MsgsPerSec/r)
		}
	}
	var out []Ratio
	for _, c := range planned {
		if c.Workload != wThroughput || c.Layer == layerRaw {
			continue
		}
		out = append(out, Ratio{Transport: c.Transport, Hops: c.Hops, Size: c.Size, Layer: c.Label(), Spread: spread(by[c])})
	}
	return out
}

// Report is everything a run writes as JSON.
type Report struct {
	Env          Env           `json:"env"`
	Config       configJSON    `json:"config"`
	Summaries    []Summary     `json:"summaries"`
	Ratios       []Ratio       `json:"ratios"`
	Missing      []Cell        `json:"missing"`
	Measurements []Measurement `json:"measurements"`
}

// sizeName writes 64, 1024 and 65536 as 64 B, 1 KiB, 64 KiB.
func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// num formats a figure with about three significant digits and thousands
// separators.
func num(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "–"
	case v == 0:
		return "0"
	case math.Abs(v) >= 100:
		return group(fmt.Sprintf("%.0f", v))
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	case math.Abs(v) >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

// group puts thousands separators into an integer's digits.
func group(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// pct writes a ratio as a percentage.
func pct(v float64) string {
	switch {
	case v >= 10:
		return fmt.Sprintf("%.0f%%", 100*v)
	case v >= 0.1:
		return fmt.Sprintf("%.0f%%", 100*v)
	}
	return fmt.Sprintf("%.1f%%", 100*v)
}

// spreadPct writes a ratio's median and range.
func spreadPct(s Spread) string {
	if s.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%s (%s–%s)", pct(s.Median), pct(s.Min), pct(s.Max))
}

// spreadNum writes a figure's median and range.
func spreadNum(s Spread) string {
	if s.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%s (%s–%s)", num(s.Median), num(s.Min), num(s.Max))
}

// failedCell writes the value column of a cell with no measurement.
func failedCell(s Summary) string {
	if s.Value.N > 0 {
		return ""
	}
	msg := s.FirstError
	if len(msg) > 60 {
		msg = msg[:60] + "…"
	}
	return "**not measured**: " + strings.ReplaceAll(msg, "|", "/")
}

// writeMarkdown writes the run's tables.
func writeMarkdown(w io.Writer, r *Report) {
	e := r.Env
	fmt.Fprintf(w, "## meshbench results\n\n")
	fmt.Fprintf(w, "`%s` — %s, %s, %d CPUs (GOMAXPROCS %d), %s, kernel %s; started %s, load average %.2f → %.2f.\n",
		e.Command, e.CPUModel, e.OS, e.NumCPU, e.GOMAXPROCS, e.GoVersion, e.Kernel, e.Start.Format("2006-01-02 15:04 UTC"), e.LoadStart, e.LoadEnd)
	var vs []string
	for _, k := range depsOfInterest() {
		if v, ok := e.Versions[k]; ok {
			vs = append(vs, k+" "+v)
		}
	}
	fmt.Fprintf(w, "Versions: %s. UDP buffers obtained %d / %d bytes (rmem_max %d, wmem_max %d), GSO %v. %d repetitions in random order, seed %d.\n\n",
		strings.Join(vs, ", "), e.UDPRecvBuffer, e.UDPSendBuffer, e.RmemMax, e.WmemMax, onOff(e.GSO), r.Config.Reps, r.Config.Seed)

	writeRatios(w, r)

	fmt.Fprintf(w, "### Throughput, one way\n\nMedian over the repetitions (range in brackets where it matters); CPU is the process's user+system time per delivered message, allocations are the process's heap allocations per message; retx and drops are end-to-end retransmissions and forward-buffer drops per 1000 messages.\n\n")
	fmt.Fprintf(w, "| transport | layer | hops | size | msgs/s (range) | MB/s | CPU µs/msg | allocs/msg | ×raw | retx/1k | drops/1k |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	rat := map[Cell]Spread{}
	for _, x := range r.Ratios {
		rat[Cell{Transport: x.Transport, Hops: x.Hops, Size: x.Size, Workload: wThroughput, Layer: x.Layer}] = x.Spread
	}
	for _, s := range r.Summaries {
		if s.Workload != wThroughput {
			continue
		}
		if f := failedCell(s); f != "" {
			fmt.Fprintf(w, "| %s | %s | %d | %s | %s | | | | | | |\n", s.Transport, s.Label(), s.Hops, sizeName(s.Size), f)
			continue
		}
		ratio, retx, drops := "", "", ""
		if s.Layer != layerRaw {
			k := s.Cell
			k.Layer, k.Window, k.Sealed = s.Label(), 0, false
			ratio = spreadPct(rat[k])
		}
		if s.Layer == layerMesh {
			retx, drops = num(s.RetxPer1k), num(s.DropsPer1k)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", s.Transport, s.Label(), s.Hops, sizeName(s.Size),
			spreadNum(s.Value), num(s.MBPerSec), num(s.CPUNsPerMsg/1e3), num(s.AllocsPerMsg), ratio, retx, drops)
	}

	fmt.Fprintf(w, "\n### Latency (64 B request and response) and connection setup\n\nRound trips one at a time (retx: end-to-end retransmissions per 1000 messages, requests and responses); setup is Dial (raw, edge) or Connect (mesh) until the first message came back, at 1 hop.\n\n")
	fmt.Fprintf(w, "| transport | layer | hops | p50 µs (range) | p99 µs | retx/1k | setup ms (range) |\n|---|---|---|---|---|---|---|\n")
	setups := map[Cell]Summary{}
	for _, s := range r.Summaries {
		if s.Workload == wSetup {
			k := s.Cell
			k.Workload, k.Size = wLatency, latencySize
			setups[k] = s
		}
	}
	for _, s := range r.Summaries {
		if s.Workload != wLatency {
			continue
		}
		setup := ""
		if su, ok := setups[s.Cell]; ok {
			setup = spreadNum(su.Value)
			if f := failedCell(su); f != "" {
				setup = f
			}
		}
		if f := failedCell(s); f != "" {
			fmt.Fprintf(w, "| %s | %s | %d | %s | | | %s |\n", s.Transport, s.Label(), s.Hops, f, setup)
			continue
		}
		retx := ""
		if s.Layer == layerMesh {
			retx = num(s.RetxPer1k)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s |\n", s.Transport, s.Label(), s.Hops, spreadNum(s.Value), num(s.P99Us), retx, setup)
	}

	fmt.Fprintf(w, "\n### Failover\n\nA stream of 64 B messages from node 0 to node 3 over two 3-hop paths (0-1-2-3, 0-4-2-3, default window); the transport of node 0's next hop is closed under its node (no goodbye). Gap: from the close until a message sent after it arrived. Lost, duplicated, reordered must be 0.\n\n")
	fmt.Fprintf(w, "| transport | gap ms (range) | messages | lost | duplicated | reordered | reported failed | retx/1k |\n|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.Summaries {
		if s.Workload != wFailover {
			continue
		}
		if f := failedCell(s); f != "" {
			fmt.Fprintf(w, "| %s | %s | | | | | | |\n", s.Transport, f)
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d | %d | %d | %d | %s |\n", s.Transport, spreadNum(s.Value), group(fmt.Sprint(s.Sent)), s.Lost, s.Duplicated, s.Reordered, s.Failed, num(s.RetxPer1k))
	}

	for _, s := range r.Summaries {
		if s.Workload != wJoin {
			continue
		}
		fmt.Fprintf(w, "\n### Join\n\nA mesh of %d nodes on the memory transport with the default options (balancing to 5–10 neighbours), built by joining through random members until balanced and converged; then one more node joins through a random member. Reached: Connect until it and every member route to each other; balanced: until it has 5 neighbours.\n\n", r.Config.JoinNodes)
		fmt.Fprintf(w, "| nodes | edges | build s | reached ms (range) | balanced ms |\n|---|---|---|---|---|\n")
		if f := failedCell(s); f != "" {
			fmt.Fprintf(w, "| %d | | | %s | |\n", r.Config.JoinNodes, f)
			continue
		}
		fmt.Fprintf(w, "| %d | %d | %s | %s | %s |\n", r.Config.JoinNodes, s.Edges, num(s.BuildMs/1e3), spreadNum(s.Value), num(s.BalancedMs))
	}

	if len(r.Missing) > 0 {
		fmt.Fprintf(w, "\n**%d cells were not measured:**\n\n", len(r.Missing))
		for _, c := range r.Missing {
			fmt.Fprintf(w, "- %s %s %d hops %s %s\n", c.Transport, c.Label(), c.Hops, c.Workload, sizeName(c.Size))
		}
	}
}

// writeRatios writes the table of ratios to raw: the result of a run.
func writeRatios(w io.Writer, r *Report) {
	fmt.Fprintf(w, "### Throughput relative to the raw library\n\nmsgs/s of a layer divided by msgs/s of the raw library (same transport, hops and size) within each repetition: median (range).\n\n")
	var layers []string
	for _, x := range r.Ratios {
		if !slices.Contains(layers, x.Layer) {
			layers = append(layers, x.Layer)
		}
	}
	fmt.Fprintf(w, "| transport | hops | size |")
	for _, l := range layers {
		fmt.Fprintf(w, " %s/raw |", l)
	}
	fmt.Fprintf(w, "\n|---|---|---|%s\n", strings.Repeat("---|", len(layers)))
	type row struct {
		transport  string
		hops, size int
	}
	var rows []row
	cells := map[row]map[string]Spread{}
	for _, x := range r.Ratios {
		k := row{x.Transport, x.Hops, x.Size}
		if cells[k] == nil {
			cells[k] = map[string]Spread{}
			rows = append(rows, k)
		}
		cells[k][x.Layer] = x.Spread
	}
	for _, k := range rows {
		fmt.Fprintf(w, "| %s | %d | %s |", k.transport, k.hops, sizeName(k.size))
		for _, l := range layers {
			fmt.Fprintf(w, " %s |", spreadPct(cells[k][l]))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
