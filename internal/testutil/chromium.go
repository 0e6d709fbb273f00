package testutil

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// chromiumFlags are the flags of every headless Chromium a test runs: no
// sandbox (tests may run as root), no GPU, and nothing that reaches the
// network by itself.
func chromiumFlags(t testing.TB) []string {
	return []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
		"--user-data-dir=" + t.TempDir(),
	}
}

// ChromiumPath returns the path of Debian's chromium, or skips the test if
// it is not installed (.ci/run installs it).
func ChromiumPath(t testing.TB) string {
	t.Helper()
	for _, n := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed: skipping this browser test (on Debian: apt-get install -y chromium)")
	return ""
}

// StartChromium starts headless Chromium with a fresh profile and args (a
// URL among them), in a process group of its own that is ended when the
// test ends. Its output is logged if the test fails.
func StartChromium(t testing.TB, args ...string) {
	t.Helper()
	cmd := exec.Command(ChromiumPath(t), append(chromiumFlags(t), args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.CreateTemp(t.TempDir(), "chromium-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		pgid := -cmd.Process.Pid // the group Setpgid made: Chromium and its children
		_ = syscall.Kill(pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(pgid, syscall.SIGKILL)
			<-exited
		}
		_ = out.Close()
		if t.Failed() {
			if b, err := os.ReadFile(out.Name()); err == nil {
				t.Logf("chromium output:\n%s", b)
			}
		}
	})
}

// RunChromium runs headless Chromium with a fresh profile and args until it
// exits by itself (--screenshot, --dump-dom), within timeout, and returns
// its output.
func RunChromium(t testing.TB, timeout time.Duration, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, ChromiumPath(t), append(chromiumFlags(t), args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chromium %q: %v\n%s", args, err, out)
	}
	return out
}
