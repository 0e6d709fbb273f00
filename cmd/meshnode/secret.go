package main

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/secretfile"
	"github.com/distrirender/distrirender/node"
)

// resolveIdentity returns the node's ID and, with --secret-file, the
// options that make it a member of a closed cluster: its secrets and its
// identity key, kept in --id-file's path + ".key" (made on first start,
// mode 0600), whose UUID it is. The id file then holds that UUID. Without
// --id-file the key (and so the UUID) is new at every start.
func resolveIdentity(c *runConfig, log *slog.Logger) (uuid.UUID, []node.Option, error) {
	if c.SecretFile == "" {
		id, err := resolveID(c)
		return id, nil, err
	}
	secrets, exposed, err := secretfile.Read(c.SecretFile)
	if err != nil {
		return uuid.Nil, nil, fmt.Errorf("--secret-file: %w", err)
	}
	if exposed {
		log.Warn("the secret file may be read by other users: chmod 600 it", "path", c.SecretFile)
	}
	var key ed25519.PrivateKey
	if c.IDFile == "" {
		if _, key, err = ed25519.GenerateKey(nil); err != nil {
			return uuid.Nil, nil, fmt.Errorf("identity key: %w", err)
		}
	} else if key, err = secretfile.LoadOrCreateKey(c.IDFile + ".key"); err != nil {
		return uuid.Nil, nil, fmt.Errorf("--id-file: %w", err)
	}
	id := node.IDFromKey(key.Public().(ed25519.PublicKey))
	if c.IDFile != "" {
		if old, err := os.ReadFile(c.IDFile); err != nil || string(old) != id.String()+"\n" {
			if err := secretfile.WriteAtomic(c.IDFile, []byte(id.String()+"\n")); err != nil {
				return uuid.Nil, nil, fmt.Errorf("--id-file: %w", err)
			}
		}
	}
	return id, []node.Option{node.WithIdentity(key), node.WithClusterSecrets(secrets...)}, nil
}
