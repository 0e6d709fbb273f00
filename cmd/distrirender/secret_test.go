package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distrirender/distrirender/internal/testutil"
)

// TestClusterSecretFile runs a closed cluster over QUIC on loopback: a
// worker with --secret-file; a coordinator without it is refused, one with
// it renders the frame.
func TestClusterSecretFile(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("a render cluster's secret, 32 b.\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var wout, werr testutil.SyncBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"worker", "--listen", "127.0.0.1:0", "--slots", "1", "--secret-file", secret}, &wout, &werr)
	}()
	addr := listeningAt(t, &werr)
	dir := t.TempDir()
	var out, errb bytes.Buffer
	outsider := append([]string{"render", "--join", addr, "--listen", "127.0.0.1:0", "--out", filepath.Join(dir, "no.png")}, small...)
	if c := run(ctx, outsider, &out, &errb); c == 0 || !strings.Contains(errb.String(), "authentication") {
		t.Fatalf("a coordinator without the secret: exit %d, %s", c, errb.String())
	}
	path := filepath.Join(dir, "frame.png")
	out.Reset()
	errb.Reset()
	member := append([]string{"render", "--join", addr, "--listen", "127.0.0.1:0", "--out", path, "--secret-file", secret}, small...)
	if c := run(ctx, member, &out, &errb); c != 0 {
		t.Fatalf("render exit %d: %s%s", c, out.String(), errb.String())
	}
	if got := readPNG(t, path); !bytes.Equal(got.Pix, want(t).Pix) {
		t.Fatal("the closed cluster's frame differs from a single-node render")
	}
	cancel()
	if got := <-code; got != 0 {
		t.Fatalf("worker exit %d: %s", got, werr.String())
	}
}
