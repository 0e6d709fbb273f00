package main

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// chart is a grouped bar chart: one group per transport, one bar per
// series (layer) in each.
type chart struct {
	file, title, ylabel string
	groups, series      []string
	values              [][]float64 // values[series][group]; 0 or NaN: no bar
	logY                bool
}

// clampedLog is a log scale that draws values below its axis minimum at
// the minimum, so that bars, which start at 0, can use it.
type clampedLog struct{}

// Normalize implements plot.Normalizer.
func (clampedLog) Normalize(min, max, x float64) float64 {
	return plot.LogScale{}.Normalize(min, max, math.Max(x, min))
}

// save writes the chart as SVG and PNG into dir.
func (c *chart) save(dir string) ([]string, error) {
	p := plot.New()
	p.Title.Text = c.title
	p.Y.Label.Text = c.ylabel
	p.Legend.Top = true
	p.Legend.Left = false
	width := vg.Points(min(14, 90/float64(max(1, len(c.series)))))
	lo, hi := math.Inf(1), 0.0
	for i, name := range c.series {
		vals := make(plotter.Values, len(c.groups))
		for j := range c.groups {
			v := c.values[i][j]
			if math.IsNaN(v) || v < 0 {
				v = 0
			}
			vals[j] = v
			if v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return nil, fmt.Errorf("meshbench: chart %s: %w", c.file, err)
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(i)
		bars.Offset = width * vg.Length(float64(i)-float64(len(c.series)-1)/2)
		p.Add(bars)
		p.Legend.Add(name, bars)
	}
	p.NominalX(c.groups...)
	p.X.Min, p.X.Max = -0.6, float64(len(c.groups))-0.4 // room for the outer groups' bars
	if c.logY && hi > 0 {
		p.Y.Scale = clampedLog{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		// Room above the tallest bar for the legend, top right.
		p.Y.Min = math.Pow(10, math.Floor(math.Log10(lo)))
		p.Y.Max = math.Pow(10, math.Ceil(math.Log10(hi*4)))
	} else {
		p.Y.Min = 0
		p.Y.Max = hi * 1.45
	}
	var files []string
	for _, ext := range []string{".svg", ".png"} {
		f := filepath.Join(dir, c.file+ext)
		if err := p.Save(10*vg.Inch, 4.5*vg.Inch, f); err != nil {
			return files, fmt.Errorf("meshbench: chart %s: %w", f, err)
		}
		files = append(files, f)
	}
	return files, nil
}

// charts makes the run's charts from its summaries: throughput per layer
// (log scale) and the ratios to raw, per path length and size, and the
// median latency.
func charts(r *Report) []*chart {
	var transports, layers []string
	for _, s := range r.Summaries {
		if s.Workload == wThroughput {
			if !slices.Contains(transports, s.Transport) {
				transports = append(transports, s.Transport)
			}
			if !slices.Contains(layers, s.Label()) {
				layers = append(layers, s.Label())
			}
		}
	}
	idx := func(list []string, v string) int { return slices.Index(list, v) }
	grid := func(series []string) [][]float64 {
		g := make([][]float64, len(series))
		for i := range g {
			g[i] = make([]float64, len(transports))
		}
		return g
	}
	var out []*chart
	for _, hops := range []int{1, 3} {
		for _, size := range r.Config.Sizes {
			tp := &chart{
				file:   fmt.Sprintf("throughput-%dhop-%d", hops, size),
				title:  fmt.Sprintf("One-way throughput, %s messages, %d hop(s) (median)", sizeName(size), hops),
				ylabel: "messages/s (log scale)", groups: transports, series: layers, values: grid(layers), logY: true,
			}
			ratioLayers := slices.DeleteFunc(slices.Clone(layers), func(l string) bool { return l == layerRaw })
			rt := &chart{
				file:   fmt.Sprintf("ratio-%dhop-%d", hops, size),
				title:  fmt.Sprintf("Throughput relative to the raw library, %s messages, %d hop(s) (median)", sizeName(size), hops),
				ylabel: "% of raw msgs/s", groups: transports, series: ratioLayers, values: grid(ratioLayers),
			}
			for _, s := range r.Summaries {
				if s.Workload == wThroughput && s.Hops == hops && s.Size == size {
					tp.values[idx(layers, s.Label())][idx(transports, s.Transport)] = s.Value.Median
				}
			}
			for _, x := range r.Ratios {
				if x.Hops == hops && x.Size == size {
					rt.values[idx(ratioLayers, x.Layer)][idx(transports, x.Transport)] = 100 * x.Median
				}
			}
			out = append(out, tp, rt)
		}
	}
	lat := &chart{
		file: "latency-1hop", title: "Round trip of 64 B, 1 hop (median)",
		ylabel: "µs (log scale)", groups: transports, series: layers, values: grid(layers), logY: true,
	}
	for _, s := range r.Summaries {
		if s.Workload == wLatency && s.Hops == 1 && idx(layers, s.Label()) >= 0 {
			lat.values[idx(layers, s.Label())][idx(transports, s.Transport)] = s.Value.Median
		}
	}
	return append(out, lat)
}
