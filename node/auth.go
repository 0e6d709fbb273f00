package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/node/internal/core"
	"github.com/distrirender/distrirender/transport"
)

// The authenticated handshake of a cluster with a secret (docs/SECURITY.md,
// docs/PROTOCOL.md Part 2 §3.1): hello with the dialer's nonce and key,
// challenge with the acceptor's nonce, key and proofs, hello again with the
// dialer's proofs, then welcome or reject as without a secret. The node
// layer runs it, so it is the same on every transport.

// ErrAuth is returned by Connect when the other side did not prove the
// cluster secret or its identity, or refused this node's proof. Refused
// handshakes on both sides are counted in Stats.AuthFailures. Its messages
// never contain a secret or a key.
var ErrAuth = core.ErrAuth

// IDFromKey returns the UUID of the node whose ed25519 public key is pub. In
// a cluster with a secret every node's UUID is the one its identity key
// gives (see WithIdentity).
func IDFromKey(pub ed25519.PublicKey) uuid.UUID { return core.IDFromKey(pub) }

// WithClusterSecrets makes the node a member of a closed cluster: it proves
// that it holds the first secret in every handshake (by challenge and
// response, an HMAC-SHA256 over both nodes' nonces, UUIDs, epochs and keys;
// the secret is never sent), and accepts a neighbour that proves any of
// them, so a cluster rotates its secret without downtime: give every node
// [new, old], then [new]. A node without the secret, or with another one,
// is refused on both sides with ErrAuth. Each secret must have at least 16
// bytes (32 random bytes are best); at most 8 are accepted. The node copies
// them.
//
// A node with secrets has an identity key (WithIdentity, or one made at
// New) and signs its link state with it; its UUID is derived from the key,
// so WithID must agree with it or be left out.
func WithClusterSecrets(secrets ...[]byte) Option {
	return func(c *config) error {
		if len(secrets) == 0 || len(secrets) > message.MaxMACs {
			return fmt.Errorf("%w: %d cluster secrets, want 1 to %d", ErrInvalidOption, len(secrets), message.MaxMACs)
		}
		c.creds.Secrets = nil
		for i, s := range secrets {
			if len(s) < core.MinSecretLen {
				return fmt.Errorf("%w: cluster secret %d has %d bytes, want at least %d", ErrInvalidOption, i, len(s), core.MinSecretLen)
			}
			c.creds.Secrets = append(c.creds.Secrets, append([]byte(nil), s...))
		}
		return nil
	}
}

// WithIdentity sets the node's ed25519 identity key and its UUID, which is
// IDFromKey(key.Public()) (a later WithID must agree). With cluster secrets
// (WithClusterSecrets) the key proves the node's UUID in every handshake
// and signs its link state; keep it from one run to the next (meshnode
// stores it beside --id-file). Without secrets it only sets the UUID. The
// node keeps the key; it never logs it.
func WithIdentity(key ed25519.PrivateKey) Option {
	return func(c *config) error {
		if len(key) != ed25519.PrivateKeySize {
			return fmt.Errorf("%w: identity key of %d bytes, want %d", ErrInvalidOption, len(key), ed25519.PrivateKeySize)
		}
		c.creds.Key = key
		c.core.ID = core.IDFromKey(key.Public().(ed25519.PublicKey))
		return nil
	}
}

// identity settles the node's key and UUID in New: with secrets the UUID is
// the key's, and a key is made if none was given.
func (c *config) identity() error {
	if c.creds.Key == nil && c.creds.On() {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return fmt.Errorf("node: making an identity key: %w", err)
		}
		c.creds.Key = k
	}
	if c.creds.Key == nil {
		return nil
	}
	id := core.IDFromKey(c.creds.Key.Public().(ed25519.PublicKey))
	if c.core.ID != uuid.Nil && c.core.ID != id {
		return fmt.Errorf("%w: WithID %s is not the UUID of the identity key (%s)", ErrInvalidOption, c.core.ID, id)
	}
	c.core.ID = id
	return nil
}

// authFailed counts and logs a refused handshake, thinned to powers of two.
func (n *Node) authFailed(remote string, err error) {
	if c := n.authFailures.Add(1); c&(c-1) == 0 {
		n.log.Warn("handshake refused", "remote", remote, "err", err, "total", c)
	}
}

// nonce draws a fresh handshake nonce.
func nonce() (b [message.NonceSize]byte) {
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return b
}

// refuseAuth tells the other side of e that its proof failed.
func (n *Node) refuseAuth(ctx context.Context, e transport.Edge) {
	_ = e.Send(ctx, n.control(message.TypeReject, message.Reject{Reason: message.RejectAuth}.Append(nil)))
}

// maxAuthFrames bounds the frames the acceptor reads while it waits for the
// dialer's proof.
const maxAuthFrames = 64

// acceptAuth runs the acceptor's side of the authenticated handshake after
// the first hello (m, h): it answers with a challenge, then waits for the
// hello that proves the dialer, which it returns.
func (n *Node) acceptAuth(ctx context.Context, e transport.Edge, m message.Message, h message.Hello) (message.Message, message.Hello, error) {
	if h.Auth == nil {
		n.refuseAuth(ctx, e)
		return m, h, fmt.Errorf("%w: %s has no cluster secret", ErrAuth, m.UID.Node)
	}
	pub := n.cfg.creds.Public()
	t := core.Transcript{
		Dialer: m.UID.Node, DialerEpoch: m.Header.Epoch, DialerAuth: h.Auth,
		Acceptor: n.id, AcceptorEpoch: n.epoch, AcceptorAuth: &message.Auth{Nonce: nonce(), Key: pub},
	}
	n.cfg.creds.Challenge(&t, t.AcceptorAuth)
	challenge := n.control(message.TypeChallenge, t.AcceptorAuth.Append(nil))
	first := *h.Auth
	for range maxAuthFrames {
		if !h.Auth.Proved() {
			// The first hello, or a copy of it: the challenge was lost or
			// is on its way.
			if err := e.Send(ctx, challenge); err != nil {
				return m, h, fmt.Errorf("%w: %w", ErrHandshake, err)
			}
		}
		var f []byte
		for f == nil {
			b, err := e.Receive(ctx)
			if err != nil {
				n.receiveFailed(err)
				return m, h, fmt.Errorf("%w: %w", ErrHandshake, err)
			}
			switch message.PeekType(b) {
			case message.TypeHello:
				f = b
			case message.TypeReject:
				return m, h, fmt.Errorf("%w: %s refused this node's proof", ErrAuth, m.UID.Node)
			}
		}
		m2, h2, err := n.parseHandshake(f, message.TypeHello)
		if err != nil {
			return m, h, err
		}
		if m2.UID.Node != m.UID.Node || m2.Header.Epoch != m.Header.Epoch || h2.Auth == nil ||
			h2.Auth.Nonce != first.Nonce || h2.Auth.Key != first.Key {
			n.refuseAuth(ctx, e)
			return m, h, fmt.Errorf("%w: %s changed its nonce, key or identity within the handshake", ErrAuth, m.UID.Node)
		}
		m, h = m2, h2
		if !h.Auth.Proved() {
			continue // a copy of the first hello: challenge again
		}
		t.DialerAuth = h.Auth
		if err := n.cfg.creds.CheckProof(&t); err != nil {
			n.refuseAuth(ctx, e)
			return m, h, err
		}
		return m, h, nil
	}
	return m, h, fmt.Errorf("%w: no proof from %s in %d frames", ErrHandshake, m.UID.Node, maxAuthFrames)
}

// dialAuth is the dialer's side of the authenticated handshake.
type dialAuth struct {
	n      *Node
	hello  message.Hello // this node's hello, its Auth the dialer's
	proved bool          // the challenge checked, the proof sent
	peer   uuid.UUID     // the acceptor, once its challenge checked
	epoch  uint64
}

// startDialAuth returns the first hello of an authenticated handshake,
// made from the plain hello frame.
func (n *Node) startDialAuth(plain []byte) (*dialAuth, []byte, error) {
	m, h, err := core.ParseHandshake(plain, message.TypeHello, 0)
	if err != nil {
		return nil, nil, err
	}
	h.Auth = &message.Auth{Nonce: nonce(), Key: n.cfg.creds.Public()}
	d := &dialAuth{n: n, hello: h}
	return d, core.HandshakeFrame(n.id, m.Header.Epoch, m.Header.HopLimit, message.TypeHello, h.Append(nil)), nil
}

// onChallenge checks the acceptor's challenge f and returns the hello that
// proves this node, or nil for a copy of a challenge already answered.
func (d *dialAuth) onChallenge(f []byte) ([]byte, error) {
	n := d.n
	m, err := message.Decode(f, n.cfg.core.MaxBody)
	if err != nil {
		n.hostileFrame(err)
		return nil, nil
	}
	if d.proved {
		return nil, nil
	}
	a, err := message.DecodeAuth(m.Body)
	if err != nil {
		n.hostileFrame(err)
		return nil, fmt.Errorf("%w: challenge: %w", ErrAuth, err)
	}
	t := core.Transcript{
		Dialer: n.id, DialerEpoch: n.epoch, DialerAuth: d.hello.Auth,
		Acceptor: m.UID.Node, AcceptorEpoch: m.Header.Epoch, AcceptorAuth: a,
	}
	secret, err := n.cfg.creds.CheckChallenge(&t)
	if err != nil {
		return nil, err
	}
	n.cfg.creds.Prove(&t, d.hello.Auth, secret)
	d.proved, d.peer, d.epoch = true, m.UID.Node, m.Header.Epoch
	return n.control(message.TypeHello, d.hello.Append(nil)), nil
}

// checkWelcome checks that a welcome comes from the acceptor whose
// challenge this node answered.
func (d *dialAuth) checkWelcome(m message.Message) error {
	switch {
	case !d.proved:
		return fmt.Errorf("%w: %s welcomed this node without a challenge: it has no cluster secret", ErrAuth, m.UID.Node)
	case m.UID.Node != d.peer || m.Header.Epoch != d.epoch:
		return fmt.Errorf("%w: welcome from %s, challenged by %s", ErrAuth, m.UID.Node, d.peer)
	}
	return nil
}

// admitAuth runs after the first hello of an incoming edge: with secrets,
// the authenticated handshake; without, it refuses a dialer that expects
// one.
func (n *Node) admitAuth(ctx context.Context, e transport.Edge, m message.Message, h message.Hello) (message.Message, message.Hello, error) {
	switch {
	case n.cfg.creds.On():
		return n.acceptAuth(ctx, e, m, h)
	case h.Auth != nil:
		n.refuseAuth(ctx, e)
		return m, h, fmt.Errorf("%w: %s expects a cluster secret and this node has none", ErrAuth, m.UID.Node)
	}
	return m, h, nil
}

// isAuth reports whether err is a refused authentication.
func isAuth(err error) bool { return errors.Is(err, ErrAuth) }
