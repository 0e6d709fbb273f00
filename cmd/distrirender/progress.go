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
	fill := p.Done * b.width / p.Total
	state := fmt.Sprintf("%d workers", p.Workers)
	if p.Workers == 0 && p.Done < p.Total {
		state = "waiting for workers"
	}
	fmt.Fprintf(b.w, "\r[%s%s] %3d%% %d/%d tiles  %s  %s ",
		strings.Repeat("#", fill), strings.Repeat(".", b.width-fill),
		p.Done*100/p.Total, p.Done, p.Total, p.Elapsed.Round(100*time.Millisecond), state)
	b.drawn = true
}

// finish ends the bar's line.
func (b *progressBar) finish() {
	if b.drawn {
		fmt.Fprintln(b.w)
		b.drawn = false
	}
}
