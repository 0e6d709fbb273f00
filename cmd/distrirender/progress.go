package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/distrirender/distrirender/render"
)

// progressBar draws a one-line bar, redrawn in place with \r, on a terminal.
// It is fed by the coordinator's Progress callback, so it must not block.
type progressBar struct {
	w      io.Writer
	on     bool
	last   time.Time
	drawn  bool
	width  int
	prefix string
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func newProgressBar(w io.Writer, on bool) *progressBar {
	return &progressBar{w: w, on: on, width: 30}
}

// update redraws the bar at most every 100 ms, and always for the last tile.
func (b *progressBar) update(p render.Progress) {
	if !b.on || p.Total == 0 {
		return
	}
	now := time.Now()
	if p.Done < p.Total && now.Sub(b.last) < 100*time.Millisecond {
		return
	}
	b.last = now
	fmt.Fprintf(b.w, "\r%s ", progressLine(p, b.width))
	b.drawn = true
}

// finish ends the bar's line.
func (b *progressBar) finish() {
	if b.drawn {
		fmt.Fprintln(b.w)
		b.drawn = false
	}
}

// progressLine is the bar's text for p: the bar, the tiles done, the rate
// so far and the time left at that rate, the time since the start and the
// workers.
func progressLine(p render.Progress, width int) string {
	fill := p.Done * width / p.Total
	state := fmt.Sprintf("%d workers", p.Workers)
	if p.Workers == 0 && p.Done < p.Total {
		state = "waiting for workers"
	}
	rate, eta := "-- tiles/s", "ETA --"
	if secs := p.Elapsed.Seconds(); p.Done > 0 && secs > 0 {
		r := float64(p.Done) / secs
		rate = fmt.Sprintf("%.1f tiles/s", r)
		left := time.Duration(float64(p.Total-p.Done) / r * float64(time.Second))
		eta = "ETA " + left.Round(time.Second).String()
	}
	return fmt.Sprintf("[%s%s] %3d%% %d/%d tiles  %s  %s  elapsed %s  %s",
		strings.Repeat("#", fill), strings.Repeat(".", width-fill),
		p.Done*100/p.Total, p.Done, p.Total, rate, eta, p.Elapsed.Round(100*time.Millisecond), state)
}
