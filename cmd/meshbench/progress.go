package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// progress draws a one-line bar with an estimate of the time left, redrawn
// in place on a terminal at most every 200 ms. The estimate assumes the
// measurements left cost what the ones done cost on average: every
// repetition has the same mix, so it settles after the first.
type progress struct {
	w           io.Writer
	on          bool
	total, done int
	start, last time.Time
	drawn       bool
}

// onTerminal reports whether w is a terminal.
func onTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func newProgress(w io.Writer, on bool, total int) *progress {
	return &progress{w: w, on: on, total: total, start: time.Now()}
}

// step counts one measurement done; what names the next.
func (p *progress) step(what string) {
	p.done++
	if !p.on {
		return
	}
	now := time.Now()
	if p.done < p.total && now.Sub(p.last) < 200*time.Millisecond {
		return
	}
	p.last = now
	const width = 30
	fill := min(width, p.done*width/max(1, p.total))
	elapsed := now.Sub(p.start)
	eta := time.Duration(float64(elapsed) * float64(p.total-p.done) / float64(p.done))
	fmt.Fprintf(p.w, "\r\033[K[%s%s] %3d%% %d/%d  %s  ETA %s  %s",
		strings.Repeat("#", fill), strings.Repeat(".", width-fill), p.done*100/max(1, p.total),
		p.done, p.total, elapsed.Round(time.Second), eta.Round(time.Second), what)
	p.drawn = true
}

// finish ends the bar's line.
func (p *progress) finish() {
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}
