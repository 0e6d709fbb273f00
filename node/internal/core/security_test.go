package core

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/routing"
)

var testSecret = []byte("a cluster secret for the tests..")

// testKey is a fixed identity key per test node.
func testKey(id byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{id}, ed25519.SeedSize))
}

// securedCore is testCore in a cluster with a secret: its UUID is its key's.
func securedCore(id byte) *Core {
	return testCore(id, func(c *Config) {
		c.Auth = Credentials{Secrets: [][]byte{testSecret}, Key: testKey(id)}
		c.ID = IDFromKey(testKey(id).Public().(ed25519.PublicKey))
	})
}

// end is one side of an edge in a testNet.
type end struct {
	c    *Core
	link LinkID
}

// testNet joins cores with edges and carries their writes, in virtual time.
type testNet struct {
	t         testing.TB
	now       time.Time
	cores     []*Core
	wires     map[end]end
	delivered map[*Core][]Delivery
	link      LinkID
}

func newTestNet(t testing.TB, cores ...*Core) *testNet {
	return &testNet{t: t, now: t0, cores: cores, wires: map[end]end{}, delivered: map[*Core][]Delivery{}}
}

// join makes an edge dialled by a to b and returns a's end of it.
func (n *testNet) join(a, b *Core) end {
	n.t.Helper()
	n.link += 2
	ea, eb := end{a, n.link - 1}, end{b, n.link}
	n.wires[ea], n.wires[eb] = eb, ea
	ha, _ := message.DecodeHello(mustDecode(n.t, a.HelloFrame()).Body)
	if adm := b.Admit(n.now, eb.link, a.ID(), a.Epoch(), ha); !adm.Accepted {
		n.t.Fatalf("admit: %+v", adm)
	}
	hb, _ := message.DecodeHello(mustDecode(n.t, b.HelloFrame()).Body)
	if err := a.Register(n.now, ea.link, b.ID(), b.Epoch(), hb, "b"); err != nil {
		n.t.Fatal(err)
	}
	return ea
}

// settle carries frames until no core writes, a millisecond per round.
func (n *testNet) settle() {
	n.t.Helper()
	for range 500 {
		type inflight struct {
			to end
			f  []byte
		}
		var fly []inflight
		for _, c := range n.cores {
			rd := c.Ready()
			var links []LinkID
			for _, w := range rd.Writes {
				links = append(links, w.Link)
				for _, f := range w.Frames {
					fly = append(fly, inflight{n.wires[end{c, w.Link}], slices.Clone(f)})
				}
			}
			n.delivered[c] = append(n.delivered[c], rd.Deliveries...)
			c.Advance() // reuses rd's slices
			for _, l := range links {
				c.WriteDone(n.now, l)
			}
		}
		n.now = n.now.Add(time.Millisecond)
		for _, c := range n.cores {
			if !c.Deadline().After(n.now) {
				c.Tick(n.now)
			}
		}
		if len(fly) == 0 {
			return
		}
		for _, x := range fly {
			x.to.c.Frame(n.now, x.to.link, mustDecode(n.t, x.f), x.f)
		}
	}
	n.t.Fatal("never quiet")
}

// inject hands a frame to the core at e as if it came from the other end.
func (n *testNet) inject(e end, f []byte) {
	n.t.Helper()
	e.c.Frame(n.now, e.link, mustDecode(n.t, f), f)
}

// forgery is a record or change a malicious member M sends about B.
type forgery struct {
	name  string
	typ   message.Type
	build func(a, b, m *Core) []byte
}

// sign signs st with key, claiming pub as the record's key.
func signAs(st *message.State, pub ed25519.PublicKey, key ed25519.PrivateKey) {
	copy(st.Key[:], pub)
	st.Sig = ed25519.Sign(key, st.SigningBytes())
}

// hijackRecords is the attack seen on a LAN: a record for B with B's epoch
// + 1 listing the attacker M as B's only neighbour, and M's own record (well
// signed: M is a member) listing B, so that A routes to B through M.
func hijackRecords(sign func(st *message.State, m *Core)) func(a, b, m *Core) []byte {
	return func(a, b, m *Core) []byte {
		fb := message.State{Origin: b.ID(), Epoch: b.Epoch() + 1, Seq: 1, Neighbors: []uuid.UUID{m.ID()}}
		sign(&fb, m)
		mine := m.rt.Local()
		mine.Seq += 10
		mine.Neighbors = append(mine.Neighbors, b.ID())
		slices.SortFunc(mine.Neighbors, func(x, y uuid.UUID) int { return bytes.Compare(x[:], y[:]) })
		if m.cfg.Routing.Signer != nil {
			m.cfg.Routing.Signer.Sign(&mine)
		}
		return HandshakeFrame(m.ID(), m.Epoch(), 8, message.TypeNetworkState, message.StateList{fb, mine}.Append(nil))
	}
}

// destroyBA is a destroy_edge "from B" removing A: B would be cut off.
func destroyBA(sign func(ch *message.EdgeChange, b, m *Core)) func(a, b, m *Core) []byte {
	return func(a, b, m *Core) []byte {
		rec := a.rt.States([]uuid.UUID{b.ID()})[0]
		ch := message.EdgeChange{Origin: b.ID(), Epoch: rec.Epoch, Seq: rec.Seq + 1, Peer: a.ID(), FreeSlots: 3}
		sign(&ch, b, m)
		return HandshakeFrame(m.ID(), m.Epoch(), 8, message.TypeDestroyEdge, ch.Append(nil))
	}
}

// TestForgedLinkStateRefused reproduces the route hijack and the forged
// edge removal of issue 13 between members A, B and a malicious member M
// (edges A–B and A–M): without a secret each forgery moves A's route to B
// (through M, or nowhere); with signed link state each is refused, counted
// as hostile, and A's messages keep reaching B.
func TestForgedLinkStateRefused(t *testing.T) {
	unsigned := func(*message.State, *Core) {}
	byM := func(st *message.State, m *Core) { signAs(st, testKey(3).Public().(ed25519.PublicKey), testKey(3)) }
	claimB := func(st *message.State, m *Core) { signAs(st, testKey(2).Public().(ed25519.PublicKey), testKey(3)) }
	cases := []forgery{
		{"hijack, unsigned", message.TypeNetworkState, hijackRecords(unsigned)},
		{"hijack, signed by M", message.TypeNetworkState, hijackRecords(byM)},
		{"hijack, B's key with M's signature", message.TypeNetworkState, hijackRecords(claimB)},
		{"destroy_edge, unsigned", message.TypeDestroyEdge, destroyBA(func(*message.EdgeChange, *Core, *Core) {})},
		{"destroy_edge, signed by M", message.TypeDestroyEdge, destroyBA(func(ch *message.EdgeChange, b, m *Core) {
			st := b.rt.Local() // what B's record would become, signed by the wrong key
			st.Seq, st.FreeSlots, st.Neighbors = ch.Seq, ch.FreeSlots, nil
			signAs(&st, testKey(2).Public().(ed25519.PublicKey), testKey(3))
			copy(ch.Sig[:], st.Sig)
		})},
	}
	for _, secure := range []bool{false, true} {
		for _, tc := range cases {
			name := tc.name + map[bool]string{false: " (open cluster: attack works)", true: " (signed: refused)"}[secure]
			t.Run(name, func(t *testing.T) {
				mk := func(id byte) *Core { return testCore(id, nil) }
				if secure {
					mk = securedCore
				}
				a, b, m := mk(1), mk(2), mk(3)
				n := newTestNet(t, a, b, m)
				n.join(a, b)
				am := n.join(m, a) // M's end of the edge M–A
				n.settle()
				if hop, ok := a.rt.NextHop(b.ID()); !ok || hop != b.ID() {
					t.Fatalf("before: A's next hop to B is %v, %v", hop, ok)
				}
				hostile := a.Stats().Hostile
				n.inject(n.wires[am], tc.build(a, b, m))
				n.settle()
				hop, ok := a.rt.NextHop(b.ID())
				if !secure {
					if ok && hop == b.ID() {
						t.Fatalf("the attack did not work without signatures: the test proves nothing")
					}
					return
				}
				if !ok || hop != b.ID() {
					t.Fatalf("A's next hop to B is %v, %v: the forgery was applied", hop, ok)
				}
				if a.Stats().Hostile == hostile || a.Stats().Forged == 0 {
					t.Errorf("the forgery was not counted as hostile and forged")
				}
				a.Send(n.now, sendReq(1, b.ID(), "still B's"))
				n.settle()
				if d := n.delivered[b]; len(d) != 1 || d[0].From != a.ID() || string(d[0].Body) != "still B's" {
					t.Fatalf("B got %+v", d)
				}
			})
		}
	}
}

// A member cannot claim another UUID in link state: its record under a
// UUID that is not its key's is refused, and so is any unsigned record.
func TestSignerChecksOwnership(t *testing.T) {
	s := newSigner(testKey(1))
	mine := message.State{Origin: IDFromKey(testKey(1).Public().(ed25519.PublicKey)), Epoch: 1, Seq: 1}
	s.Sign(&mine)
	if err := s.Verify(&mine); err != nil {
		t.Fatalf("own record: %v", err)
	}
	other := mine
	other.Origin = IDFromKey(testKey(2).Public().(ed25519.PublicKey))
	s.Sign(&other)
	tampered := mine
	tampered.Seq++
	unsigned := mine
	unsigned.Sig = nil
	for name, tc := range map[string]struct {
		st   message.State
		want error
	}{
		"another UUID": {other, errNotOwner},
		"tampered":     {tampered, errBadSig},
		"unsigned":     {unsigned, errUnsigned},
	} {
		if err := s.Verify(&tc.st); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	rt := routing.New(uuid.UUID{9}, 1, t0, routing.Config{Signer: s})
	if v, err := rt.ApplyState(t0, other); v != routing.Rejected || !errors.Is(err, routing.ErrForged) {
		t.Fatalf("routing took another UUID's record: %v %v", v, err)
	}
}

// TestRateLimits floods a neighbour with frames that cost it work: bulk
// requests (answered with the whole database) past their own small limit,
// and any control frame past the control limit. Those over the limit are
// dropped and counted, the edge stays up, and the limit refills with time.
func TestRateLimits(t *testing.T) {
	full := func(b *Core) []byte {
		return HandshakeFrame(b.ID(), b.Epoch(), 8, message.TypeNetworkStateRequest, message.StateRequest{}.Append(nil))
	}
	keepalive := func(b *Core) []byte { return HandshakeFrame(b.ID(), b.Epoch(), 8, message.TypeKeepalive, nil) }
	cases := []struct {
		name  string
		frame func(b *Core) []byte
		l     limit
		asks  int
		slack uint64 // tokens b's own frames of the handshake may have taken
	}{
		{"empty network_state_request", full, bulkLimit, 100, 1},
		{"keepalive", keepalive, ctrlLimit, 6000, 64},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := testCore(1, nil), testCore(2, nil)
			n := newTestNet(t, a, b)
			ba := n.join(b, a)
			n.settle()
			f := tc.frame(b)
			for range tc.asks {
				n.inject(n.wires[ba], f)
			}
			over := uint64(tc.asks - tc.l.burst)
			got := a.Stats().RateLimited
			if got < over || got > over+tc.slack {
				t.Fatalf("%d of %d frames rate-limited, want %d (+%d)", got, tc.asks, over, tc.slack)
			}
			if len(a.Neighbors()) != 1 {
				t.Fatal("the flood cost the edge")
			}
			n.now = n.now.Add(10 * tc.l.every)
			for range 20 {
				n.inject(n.wires[ba], f)
			}
			if d := a.Stats().RateLimited - got; d != 10 {
				t.Fatalf("after 10 refills: %d of 20 rate-limited, want 10", d)
			}
		})
	}
}

// TestSpoofedStreamRefused is issue 13's stream spoofing: on the line
// A – M – B, the member M injects a msg "from A" with a higher stream epoch
// towards B, and an ack "from B" towards A. Without a secret B delivers the
// forgery as A's (and A's real stream to B then stalls); with one, data and
// acks are sealed end to end for their (origin, target) pair, M's frames are
// refused and counted, and A's messages keep reaching B.
func TestSpoofedStreamRefused(t *testing.T) {
	for _, secure := range []bool{false, true} {
		for _, sealWith := range []string{"unsealed", "sealed with M's own pair key"} {
			if !secure && sealWith != "unsealed" {
				continue
			}
			t.Run(fmt.Sprintf("secure=%v/%s", secure, sealWith), func(t *testing.T) {
				mk := func(id byte) *Core { return testCore(id, nil) }
				if secure {
					mk = securedCore
				}
				a, m, b := mk(1), mk(3), mk(2)
				n := newTestNet(t, a, m, b)
				am := n.join(a, m) // A's end of A–M
				mb := n.join(m, b) // M's end of M–B
				n.settle()
				a.Send(n.now, sendReq(1, b.ID(), "first"))
				n.settle()
				forge := func(typ message.Type, from, to *Core, index int32, body []byte) []byte {
					msg := &message.Message{
						UID:    message.UID{Node: from.ID(), Index: index},
						Header: message.Header{Type: typ, HopLimit: 8, Target: to.ID(), Epoch: from.Epoch() + 1000},
						Body:   body,
					}
					f := msg.Encode()
					if sealWith != "unsealed" {
						sf, err := m.sealer.seal(m, to.ID(), f) // keyed M–B: the only key M has for B
						if err != nil {
							t.Fatal(err)
						}
						f = sf
					}
					return f
				}
				hostile := b.Stats().Hostile
				n.inject(n.wires[mb], forge(message.TypeMsg, a, b, 0, []byte("spoofed")))
				n.settle()
				got := n.delivered[b]
				if !secure {
					if len(got) < 2 || string(got[len(got)-1].Body) != "spoofed" {
						t.Fatalf("the spoofing did not work without a secret: the test proves nothing (%+v)", got)
					}
					return
				}
				if b.Stats().Hostile == hostile || b.Stats().Forged == 0 {
					t.Errorf("the forged msg was not counted as hostile and forged")
				}
				// An ack "from B" for what A has not sent yet.
				hostile = a.Stats().Hostile
				ack := message.Ack{StreamEpoch: a.Epoch(), Cum: 5}
				n.inject(am, forge(message.TypeAck, b, a, message.AckIndex, ack.Append(nil)))
				if a.Stats().Hostile == hostile {
					t.Errorf("the forged ack was not counted as hostile")
				}
				a.Send(n.now, sendReq(2, b.ID(), "second"))
				n.settle()
				var bodies []string
				for _, d := range n.delivered[b] {
					if d.From != a.ID() {
						t.Fatalf("B got a message from %s", d.From)
					}
					bodies = append(bodies, string(d.Body))
				}
				if !slices.Equal(bodies, []string{"first", "second"}) {
					t.Fatalf("B got %q, want first and second", bodies)
				}
			})
		}
	}
}

// A flooded broadcast "from A" injected by the member M on the line
// A – M – B is delivered as A's without a secret; with one, floods are
// signed by their origin, the forgery (unsigned, or signed with M's key) is
// refused and counted, and A's own broadcasts still reach B.
func TestSpoofedBroadcastRefused(t *testing.T) {
	for _, secure := range []bool{false, true} {
		for _, signer := range []string{"unsigned", "signed by M"} {
			if !secure && signer != "unsigned" {
				continue
			}
			t.Run(fmt.Sprintf("secure=%v/%s", secure, signer), func(t *testing.T) {
				mk := func(id byte) *Core { return testCore(id, nil) }
				if secure {
					mk = securedCore
				}
				a, m, b := mk(1), mk(3), mk(2)
				n := newTestNet(t, a, m, b)
				n.join(a, m)
				mb := n.join(m, b)
				n.settle()
				bcast := func(body string) *SendRequest {
					r := sendReq(1, uuid.Nil, body)
					r.Dsts, r.Bcast = nil, true
					return r
				}
				a.Send(n.now, bcast("from A"))
				n.settle()
				f := (&message.Message{
					UID:    message.UID{Node: a.ID(), Index: 1},
					Header: message.Header{Type: message.TypeMsgBroadcast, HopLimit: 8, Epoch: a.Epoch(), Ref: 1},
					Body:   []byte("spoofed"),
				}).Encode()
				if signer != "unsigned" {
					f = m.sealer.signFlood(f) // signs with M's key
				}
				n.inject(n.wires[mb], f)
				n.settle()
				var bodies []string
				for _, d := range n.delivered[b] {
					bodies = append(bodies, string(d.Body))
				}
				if !secure {
					if !slices.Contains(bodies, "spoofed") {
						t.Fatalf("the spoofing did not work without a secret: the test proves nothing (%q)", bodies)
					}
					return
				}
				if !slices.Equal(bodies, []string{"from A"}) || b.Stats().Forged == 0 {
					t.Fatalf("B got %q, %d forged", bodies, b.Stats().Forged)
				}
			})
		}
	}
}
