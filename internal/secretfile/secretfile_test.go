package secretfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, text string
		want       int
		err        error
	}{
		{"one", "0123456789abcdef0123\n", 1, nil},
		{"rotation", "# new first\nnew-secret-0123456789\n\n  old-secret-0123456789  \n", 2, nil},
		{"short", "short\n", 0, ErrFormat},
		{"empty", "# nothing\n\n", 0, ErrFormat},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			got, exposed, err := Read(p)
			if !errors.Is(err, tc.err) || len(got) != tc.want || exposed {
				t.Fatalf("Read: %d secrets, exposed %v, %v", len(got), exposed, err)
			}
			if err != nil && strings.Contains(err.Error(), tc.text) {
				t.Fatal("the error quotes the file")
			}
			if tc.name == "rotation" && string(got[1]) != "old-secret-0123456789" {
				t.Fatalf("second secret %q", got[1])
			}
		})
	}
	p := filepath.Join(dir, "open")
	if err := os.WriteFile(p, []byte("0123456789abcdef0123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, exposed, err := Read(p); err != nil || !exposed {
		t.Fatalf("a world-readable file: exposed %v, %v", exposed, err)
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "node.key")
	k, err := LoadOrCreateKey(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}
	again, err := LoadOrCreateKey(p)
	if err != nil || !again.Equal(k) {
		t.Fatalf("reloaded key differs: %v", err)
	}
	if err := os.WriteFile(p, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(p); !errors.Is(err, ErrFormat) {
		t.Fatalf("garbage: %v", err)
	}
}
