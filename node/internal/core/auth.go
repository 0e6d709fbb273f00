package core

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
)

// ErrAuth is a handshake refused because one side did not prove the
// cluster secret or its identity (node.ErrAuth is the same error). Its
// messages never contain a secret or a key.
var ErrAuth = errors.New("node: authentication failed")

// MinSecretLen is the shortest cluster secret accepted, in bytes.
const MinSecretLen = 16

// IDFromKey derives a node's UUID from its ed25519 public key: the first 16
// bytes of SHA-256("distrirender node id v2" ‖ key), marked as a version 8
// (custom) RFC 9562 UUID. In a cluster with a secret a node's UUID must be
// the one its key gives, so that nobody can claim another node's UUID
// without its private key.
func IDFromKey(pub []byte) uuid.UUID {
	h := sha256.New()
	h.Write([]byte("distrirender node id v2"))
	h.Write(pub)
	var id uuid.UUID
	copy(id[:], h.Sum(nil))
	id[6] = id[6]&0x0f | 0x80 // version 8
	id[8] = id[8]&0x3f | 0x80 // RFC 9562 variant
	return id
}

// Credentials are what a node of a cluster with a secret proves itself
// with. The zero value (no secrets) turns authentication off.
type Credentials struct {
	// Secrets are the accepted cluster secrets; the first is used to
	// prove (the others are accepted, so that a cluster rotates its
	// secret without downtime). At most message.MaxMACs.
	Secrets [][]byte
	// Key is the node's identity key; its UUID must be IDFromKey of its
	// public half.
	Key ed25519.PrivateKey
}

// On reports whether the node authenticates its handshakes.
func (cr *Credentials) On() bool { return cr != nil && len(cr.Secrets) > 0 }

// Public returns the public half of the identity key.
func (cr *Credentials) Public() (k [message.KeySize]byte) {
	copy(k[:], cr.Key.Public().(ed25519.PublicKey))
	return k
}

// Transcript is what both sides of one handshake prove: both UUIDs, both
// epochs, both identity keys and both fresh nonces. Any change to any field
// changes every MAC and signature over it.
type Transcript struct {
	Dialer, Acceptor           uuid.UUID
	DialerEpoch, AcceptorEpoch uint64
	DialerAuth, AcceptorAuth   *message.Auth // nonce and key of each side
}

// roles separate the dialer's proof from the acceptor's, so that one can
// never be replayed as the other.
const (
	roleAcceptor = "distrirender handshake v2 acceptor"
	roleDialer   = "distrirender handshake v2 dialer"
)

func (t *Transcript) bytes(role string) []byte {
	b := make([]byte, 0, len(role)+2*(16+8+message.NonceSize+message.KeySize))
	b = append(b, role...)
	b = append(b, t.Dialer[:]...)
	b = binary.BigEndian.AppendUint64(b, t.DialerEpoch)
	b = append(b, t.DialerAuth.Key[:]...)
	b = append(b, t.DialerAuth.Nonce[:]...)
	b = append(b, t.Acceptor[:]...)
	b = binary.BigEndian.AppendUint64(b, t.AcceptorEpoch)
	b = append(b, t.AcceptorAuth.Key[:]...)
	return append(b, t.AcceptorAuth.Nonce[:]...)
}

func mac(secret, msg []byte) (out [message.MACSize]byte) {
	h := hmac.New(sha256.New, secret)
	h.Write(msg)
	copy(out[:], h.Sum(nil))
	return out
}

// Challenge fills the acceptor's Auth a (its nonce and key already set) with
// a MAC under every accepted secret, since it cannot know which of them the
// dialer holds, and its signature.
func (cr *Credentials) Challenge(t *Transcript, a *message.Auth) {
	msg := t.bytes(roleAcceptor)
	a.MACs = a.MACs[:0]
	for _, s := range cr.Secrets[:min(len(cr.Secrets), message.MaxMACs)] {
		a.MACs = append(a.MACs, mac(s, msg))
	}
	a.Sig = ed25519.Sign(cr.Key, msg)
}

// Prove fills the dialer's Auth a with a MAC under the secret that checked
// the acceptor's challenge (CheckChallenge's answer), and its signature.
func (cr *Credentials) Prove(t *Transcript, a *message.Auth, secret int) {
	msg := t.bytes(roleDialer)
	a.MACs = [][message.MACSize]byte{mac(cr.Secrets[secret], msg)}
	a.Sig = ed25519.Sign(cr.Key, msg)
}

// CheckChallenge checks the acceptor's part of t on the dialer's side and
// returns the index of the accepted secret that it proved.
func (cr *Credentials) CheckChallenge(t *Transcript) (int, error) {
	return cr.check(t, t.Acceptor, t.AcceptorAuth, roleAcceptor)
}

// CheckProof checks the dialer's part of t on the acceptor's side.
func (cr *Credentials) CheckProof(t *Transcript) error {
	_, err := cr.check(t, t.Dialer, t.DialerAuth, roleDialer)
	return err
}

func (cr *Credentials) check(t *Transcript, id uuid.UUID, a *message.Auth, role string) (int, error) {
	switch {
	case !a.Proved():
		return 0, fmt.Errorf("%w: %s sent no proof", ErrAuth, id)
	case IDFromKey(a.Key[:]) != id:
		return 0, fmt.Errorf("%w: %s is not the ID of the key it presented", ErrAuth, id)
	}
	msg := t.bytes(role)
	if !ed25519.Verify(a.Key[:], msg, a.Sig) {
		return 0, fmt.Errorf("%w: %s: bad identity signature", ErrAuth, id)
	}
	for i, s := range cr.Secrets {
		want := mac(s, msg)
		for _, m := range a.MACs {
			if hmac.Equal(m[:], want[:]) {
				return i, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: %s does not hold an accepted cluster secret", ErrAuth, id)
}

// signer signs this node's link state and checks other nodes' (a
// routing.Signer): a record counts only if signed by the key whose
// IDFromKey is its origin.
type signer struct {
	key ed25519.PrivateKey
	pub [message.KeySize]byte
}

func newSigner(key ed25519.PrivateKey) *signer {
	s := &signer{key: key}
	copy(s.pub[:], key.Public().(ed25519.PublicKey))
	return s
}

// Sign signs the local record.
func (s *signer) Sign(st *message.State) {
	st.Key = s.pub
	st.Sig = ed25519.Sign(s.key, st.SigningBytes())
}

// Errors of Verify, wrapped by routing.ErrForged.
var (
	errUnsigned = errors.New("unsigned")
	errNotOwner = errors.New("signed with a key that is not the origin's")
	errBadSig   = errors.New("bad signature")
)

// Verify checks a remote record.
func (*signer) Verify(st *message.State) error {
	switch {
	case len(st.Sig) != message.SigSize:
		return errUnsigned
	case IDFromKey(st.Key[:]) != st.Origin:
		return errNotOwner
	case !ed25519.Verify(st.Key[:], st.SigningBytes(), st.Sig):
		return errBadSig
	}
	return nil
}
