// Package testutil holds the few helpers every package's tests share: the
// replayable seed of randomised tests, waiting for a condition with a
// deadline, a buffer that a program under test writes while the test
// reads it, and an HTTP GET with a deadline. It imports nothing of the project, so that the tests of every
// package, the lowest included, can use it.
package testutil

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Seed returns the seed for a randomised test: MESH_SEED if set, else a
// fresh one. It is always logged, with the command that replays the test.
func Seed(t testing.TB) uint64 {
	t.Helper()
	if s := os.Getenv("MESH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("MESH_SEED=%q: %v", s, err)
		}
		t.Logf("seed %d (from MESH_SEED)", v)
		return v
	}
	v := uint64(time.Now().UnixNano())
	t.Logf("seed %d (replay: MESH_SEED=%d go test -run '^%s$' %s)", v, v, t.Name(), packageDir())
	return v
}

// packageDir is the directory of the package under test relative to its
// module's root ("./node/"), where go test runs the test binary, or "." if
// that cannot be told.
func packageDir() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			rel, err := filepath.Rel(dir, wd)
			if err != nil || rel == "." {
				return "."
			}
			return "./" + filepath.ToSlash(rel) + "/"
		}
		if filepath.Dir(dir) == dir {
			return "."
		}
	}
}

// WaitFor polls cond every 2 ms until it holds, and fails the test if it
// does not within timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// SyncBuffer is a bytes.Buffer that one goroutine may write while another
// reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Get fetches url with a 10-second deadline and returns the status code and
// the body; it fails the test if the request cannot be made.
func Get(t testing.TB, url string) (code int, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
