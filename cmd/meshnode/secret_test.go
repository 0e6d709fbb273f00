package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestSecretFileFlag(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("a cluster secret of 32 bytes...\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parseRun(t, []string{"--id-file", filepath.Join(dir, "id")}, map[string]string{"MESHNODE_SECRET_FILE": secret})
	if err != nil || c.SecretFile != secret {
		t.Fatalf("MESHNODE_SECRET_FILE: %q, %v", c.SecretFile, err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	id, opts, err := resolveIdentity(&c, log)
	if err != nil || id == uuid.Nil || len(opts) != 2 {
		t.Fatalf("first start: %v, %d options, %v", id, len(opts), err)
	}
	fi, err := os.Stat(c.IDFile + ".key")
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	if b, _ := os.ReadFile(c.IDFile); strings.TrimSpace(string(b)) != id.String() {
		t.Fatalf("id file holds %q, want %s", b, id)
	}
	again, _, err := resolveIdentity(&c, log)
	if err != nil || again != id {
		t.Fatalf("restart: %v, %v; want %v", again, err, id)
	}
	bad, err := parseRun(t, []string{"--secret-file", secret, "--id", uuid.NewString()}, nil)
	if err == nil {
		err = bad.validate()
	}
	if err == nil || !strings.Contains(err.Error(), "--id-file") {
		t.Fatalf("--secret-file with --id: %v", err)
	}
	if err := os.WriteFile(secret, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := resolveIdentity(&c, log); err == nil || strings.Contains(err.Error(), "short\n") {
		t.Fatalf("a short secret: %v", err)
	}
}
