//go:build race

package sim_test

// raceEnabled: the race detector slows the single-goroutine simulator ten
// times and finds nothing in it, so the largest runs are left to the run
// without it (make test runs TestSimScale once more without -race).
const raceEnabled = true
