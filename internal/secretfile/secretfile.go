// Package secretfile reads a cluster's secrets and a node's identity key
// from files, for the programs' --secret-file and --id-file flags. Its
// errors name files, never their contents.
package secretfile

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrFormat is a file that does not hold what it should.
var ErrFormat = errors.New("secretfile: bad format")

// MinLen is the shortest secret accepted, in bytes (node.WithClusterSecrets
// refuses shorter ones too).
const MinLen = 16

// Read returns the secrets in the file at path: one per line, the first
// the one a node proves with, the others accepted (rotation). Blank lines
// and lines starting with # are skipped; surrounding white space is
// dropped. It also reports whether other users may read the file.
func Read(path string) (secrets [][]byte, exposed bool, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false, fmt.Errorf("secret file: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		s := bytes.TrimSpace(sc.Bytes())
		if len(s) == 0 || s[0] == '#' {
			continue
		}
		if len(s) < MinLen {
			return nil, false, fmt.Errorf("%w: %s line %d: a secret needs at least %d bytes", ErrFormat, path, line, MinLen)
		}
		secrets = append(secrets, append([]byte(nil), s...))
	}
	if len(secrets) == 0 {
		return nil, false, fmt.Errorf("%w: %s holds no secret", ErrFormat, path)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		exposed = true
	}
	return secrets, exposed, nil
}

// LoadOrCreateKey returns the ed25519 key in the PEM (PKCS #8) file at
// path, or makes one and writes it there, readable by its owner only.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "PRIVATE KEY" {
			return nil, fmt.Errorf("%w: %s is not a PEM private key", ErrFormat, path)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: not a PKCS #8 key", ErrFormat, path)
		}
		key, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%w: %s is not an ed25519 key", ErrFormat, path)
		}
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	if err := WriteAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return nil, fmt.Errorf("identity key %s: %w", path, err)
	}
	return key, nil
}

// WriteAtomic writes b to path, mode 0600, through a temporary file and a
// rename, so that a crash leaves no file or the whole one.
func WriteAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
