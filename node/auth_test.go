package node_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/internal/testutil"
	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/node/internal/core"
	"github.com/distrirender/distrirender/transport/memory"
)

var (
	secretOld = []byte("old cluster secret, 32 bytes ok!")
	secretNew = []byte("new cluster secret, 32 bytes ok!")
	secretBad = []byte("a secret nobody else holds......")
)

// keyFrom draws a deterministic identity key from rng.
func keyFrom(rng *rand.Rand) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(rng.Uint32())
	}
	return ed25519.NewKeyFromSeed(seed)
}

// secured returns the options of a node with the given secrets (none: no
// secret) and an identity key drawn from rng.
func secured(rng *rand.Rand, secrets ...[]byte) []node.Option {
	opts := meshtest.Fast(node.WithIdentity(keyFrom(rng)))
	if len(secrets) > 0 {
		opts = append(opts, node.WithClusterSecrets(secrets...))
	}
	return opts
}

func TestClusterSecret(t *testing.T) {
	seed := meshtest.Seed(t)
	cases := []struct {
		name             string
		dialer, acceptor [][]byte
		ok               bool
	}{
		{"same secret", [][]byte{secretOld}, [][]byte{secretOld}, true},
		{"no secrets anywhere", nil, nil, true},
		{"dialer without secret", nil, [][]byte{secretOld}, false},
		{"acceptor without secret", [][]byte{secretOld}, nil, false},
		{"wrong secret", [][]byte{secretBad}, [][]byte{secretOld}, false},
		{"rotating dials old", [][]byte{secretNew, secretOld}, [][]byte{secretOld}, true},
		{"rotating dials new", [][]byte{secretNew, secretOld}, [][]byte{secretNew}, true},
		{"old dials rotating", [][]byte{secretOld}, [][]byte{secretNew, secretOld}, true},
		{"new dials rotating", [][]byte{secretNew}, [][]byte{secretNew, secretOld}, true},
		{"new dials old", [][]byte{secretNew}, [][]byte{secretOld}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newMesh(t, 0, seed)
			rng := rand.New(rand.NewPCG(seed, 1))
			a := m.Add(secured(rng, tc.dialer...)...)
			b := m.Add(secured(rng, tc.acceptor...)...)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := m.Node(a).Connect(ctx, m.Addr(b))
			if tc.ok {
				if err != nil {
					t.Fatalf("seed %d: connect: %v", seed, err)
				}
				meshtest.WaitFor(t, 5*time.Second, "neighbours both ways", func() bool {
					return len(m.Node(a).Neighbors()) == 1 && len(m.Node(b).Neighbors()) == 1
				})
				return
			}
			if !errors.Is(err, node.ErrAuth) {
				t.Fatalf("seed %d: connect: %v, want ErrAuth", seed, err)
			}
			if got := m.Node(a).Stats().AuthFailures; got == 0 {
				t.Errorf("dialer counted no auth failure")
			}
			meshtest.WaitFor(t, 5*time.Second, "the acceptor counting the refusal", func() bool {
				return m.Node(b).Stats().AuthFailures > 0
			})
			if n := len(m.Node(b).Neighbors()); n != 0 {
				t.Fatalf("acceptor has %d neighbours", n)
			}
		})
	}
}

// The authenticated handshake survives links that lose, duplicate and
// reorder frames, as the plain one does.
func TestClusterSecretLossyLink(t *testing.T) {
	seed := meshtest.Seed(t)
	m := newMesh(t, 0, seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	for range 6 {
		m.Add(secured(rng, secretOld)...)
	}
	for i := range 6 {
		for j := i + 1; j < 6; j++ {
			m.net.SetFaults(m.Addr(i), m.Addr(j), memory.Faults{Loss: 0.3, Duplicate: 0.2, Reorder: 0.2, Jitter: 2 * time.Millisecond})
		}
	}
	for i := 1; i < 6; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := m.Node(i).Connect(ctx, m.Addr(i-1))
		cancel()
		if err != nil {
			t.Fatalf("seed %d: connect %d to %d: %v", seed, i, i-1, err)
		}
	}
	for i := range 6 {
		if f := m.Node(i).Stats().AuthFailures; f != 0 {
			t.Fatalf("seed %d: node %d counted %d auth failures on a lossy link", seed, i, f)
		}
	}
}

// An outsider speaking the wire protocol by hand, with no secret, gets a
// reject with reason auth and nothing else: no link state, no addresses.
func TestOutsiderGetsNothing(t *testing.T) {
	seed := meshtest.Seed(t)
	m := newMesh(t, 0, seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	m.Add(secured(rng, secretOld)...)
	m.Add(secured(rng, secretOld)...)
	m.Link(1, 0)
	tr, err := m.net.Listen("outsider")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	edge, err := tr.Dial(ctx, m.Addr(0))
	if err != nil {
		t.Fatal(err)
	}
	ev := &evil{id: uuid.New(), epoch: 1, edge: edge}
	ev.send(t, ev.frame(message.TypeHello, 0, uuid.Nil, 0, message.Hello{Addrs: []string{"outsider"}}.Append(nil)))
	for {
		f, err := edge.Receive(ctx)
		if err != nil {
			break // closed after the reject
		}
		got, err := message.Decode(f, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got.Header.Type != message.TypeReject {
			t.Fatalf("outsider got a %s", got.Header.Type)
		}
		if r, _ := message.DecodeReject(got.Body); r.Reason != message.RejectAuth || len(r.EntryPoints) > 0 {
			t.Fatalf("outsider got reject %+v", r)
		}
	}
	meshtest.WaitFor(t, 5*time.Second, "the refusal counted", func() bool { return m.Node(0).Stats().AuthFailures == 1 })
}

// Neither secrets nor private keys appear in logs (at debug level) or in
// errors, in any usual encoding.
func TestSecretsNeverLogged(t *testing.T) {
	seed := meshtest.Seed(t)
	m := newMesh(t, 0, seed)
	rng := rand.New(rand.NewPCG(seed, 4))
	var logs testutil.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ka, kb := keyFrom(rng), keyFrom(rng)
	a := m.Add(append(meshtest.Fast(), node.WithIdentity(ka), node.WithClusterSecrets(secretBad), node.WithLogger(logger))...)
	b := m.Add(append(meshtest.Fast(), node.WithIdentity(kb), node.WithClusterSecrets(secretOld), node.WithLogger(logger))...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := m.Node(a).Connect(ctx, m.Addr(b))
	if !errors.Is(err, node.ErrAuth) {
		t.Fatalf("connect: %v, want ErrAuth", err)
	}
	meshtest.WaitFor(t, 5*time.Second, "the acceptor's refusal", func() bool { return m.Node(b).Stats().AuthFailures > 0 })
	text := logs.String() + err.Error()
	if !strings.Contains(text, "handshake refused") {
		t.Fatalf("no refusal logged:\n%s", text)
	}
	for _, s := range [][]byte{secretBad, secretOld, ka.Seed(), kb.Seed(), ka, kb} {
		for _, enc := range []string{string(s), hex.EncodeToString(s), base64.StdEncoding.EncodeToString(s), base64.RawURLEncoding.EncodeToString(s)} {
			if strings.Contains(text, enc) {
				t.Fatalf("a secret appears in the logs or errors as %q", enc)
			}
		}
	}
}

func TestSecretOptions(t *testing.T) {
	net := memory.NewNetwork(memory.Config{})
	defer net.Close()
	key := keyFrom(rand.New(rand.NewPCG(1, 1)))
	cases := []struct {
		name string
		opts []node.Option
	}{
		{"no secret", []node.Option{node.WithClusterSecrets()}},
		{"short secret", []node.Option{node.WithClusterSecrets([]byte("short"))}},
		{"nine secrets", []node.Option{node.WithClusterSecrets(secretOld, secretOld, secretOld, secretOld, secretOld, secretOld, secretOld, secretOld, secretOld)}},
		{"short key", []node.Option{node.WithIdentity(key[:10])}},
		{"ID not the key's", []node.Option{node.WithIdentity(key), node.WithID(uuid.New())}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := net.Listen(tc.name)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			if _, err := node.New(tr, tc.opts...); !errors.Is(err, node.ErrInvalidOption) {
				t.Fatalf("New: %v, want ErrInvalidOption", err)
			}
		})
	}
	tr, err := net.Listen("ok")
	if err != nil {
		t.Fatal(err)
	}
	nd, err := node.New(tr, node.WithIdentity(key), node.WithClusterSecrets(secretOld))
	if err != nil {
		t.Fatal(err)
	}
	defer nd.Close()
	if nd.ID() != node.IDFromKey(key.Public().(ed25519.PublicKey)) {
		t.Fatalf("ID %s is not the key's", nd.ID())
	}
}

// A closed cluster routes as an open one: signed link state converges over
// several hops, with lossy links, and messages and broadcasts arrive.
func TestSecuredMeshDelivers(t *testing.T) {
	const size, count = 5, 500
	seed := meshtest.Seed(t)
	m := newMesh(t, 0, seed)
	rng := rand.New(rand.NewPCG(seed, 5))
	for range size {
		m.Add(append(secured(rng, secretNew, secretOld), meshtest.Lossy()...)...)
	}
	for i := range size - 1 {
		m.net.SetFaults(m.Addr(i), m.Addr(i+1), memory.Faults{Loss: 0.1, Duplicate: 0.1, Reorder: 0.1})
		m.Link(i, i+1)
	}
	m.WaitConverged(20 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	col := m.Collect(ctx, size-1)
	if err := m.SendAll(ctx, 0, m.Node(size-1).ID(), count, 64); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	meshtest.WaitFor(t, time.Minute, "all messages", func() bool { return len(col.Got(0, false)) == count })
	meshtest.CheckStream(t, "secured line", col.Got(0, false), nil, count)
	for i := range size {
		if h := m.Node(i).Stats().Hostile; h != 0 {
			t.Errorf("seed %d: node %d counted %d hostile frames among members", seed, i, h)
		}
	}
}

// A member holding the secret and its own key cannot claim another
// member's UUID in the handshake: the UUID is not its key's, and the
// acceptor refuses it (counted) while the real owner stays connected.
func TestMemberCannotClaimAnotherUUID(t *testing.T) {
	seed := meshtest.Seed(t)
	m := newMesh(t, 0, seed)
	rng := rand.New(rand.NewPCG(seed, 6))
	a := m.Add(secured(rng, secretOld)...)
	victim := m.Add(secured(rng, secretOld)...)
	m.Link(victim, a)
	tr, err := m.net.Listen("impostor")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	edge, err := tr.Dial(ctx, m.Addr(a))
	if err != nil {
		t.Fatal(err)
	}
	creds := core.Credentials{Secrets: [][]byte{secretOld}, Key: keyFrom(rng)}
	ev := &evil{id: m.Node(victim).ID(), epoch: m.Node(victim).Epoch() + 1, edge: edge}
	mine := &message.Auth{Nonce: [message.NonceSize]byte{7}, Key: creds.Public()}
	ev.send(t, ev.frame(message.TypeHello, 0, uuid.Nil, 0, message.Hello{Auth: mine}.Append(nil)))
	f, err := edge.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := message.Decode(f, 0)
	if err != nil || cm.Header.Type != message.TypeChallenge {
		t.Fatalf("got %v, %v; want a challenge", cm.Header.Type, err)
	}
	theirs, err := message.DecodeAuth(cm.Body)
	if err != nil {
		t.Fatal(err)
	}
	tr2 := core.Transcript{Dialer: ev.id, DialerEpoch: ev.epoch, DialerAuth: mine,
		Acceptor: cm.UID.Node, AcceptorEpoch: cm.Header.Epoch, AcceptorAuth: theirs}
	if _, err := creds.CheckChallenge(&tr2); err != nil {
		t.Fatalf("the member could not check a real challenge: %v", err)
	}
	creds.Prove(&tr2, mine, 0)
	ev.send(t, ev.frame(message.TypeHello, 0, uuid.Nil, 0, message.Hello{Auth: mine}.Append(nil)))
	for {
		f, err := edge.Receive(ctx)
		if err != nil {
			t.Fatalf("no answer to the impostor: %v", err)
		}
		got, err := message.Decode(f, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got.Header.Type == message.TypeChallenge {
			continue // a copy
		}
		r, _ := message.DecodeReject(got.Body)
		if got.Header.Type != message.TypeReject || r.Reason != message.RejectAuth {
			t.Fatalf("the impostor got %s %+v", got.Header.Type, r)
		}
		break
	}
	meshtest.WaitFor(t, 5*time.Second, "the refusal counted", func() bool { return m.Node(a).Stats().AuthFailures == 1 })
	if nb := m.Node(a).Neighbors(); len(nb) != 1 || nb[0] != m.Node(victim).ID() {
		t.Fatalf("a's neighbours: %v", nb)
	}
}
