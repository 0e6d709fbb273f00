package core

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
)

// End-to-end protection of data and acknowledgements in a cluster with a
// secret (docs/SECURITY.md, "Streams"). Every msg, ack and msg_broadcast
// repair copy that a node originates for one target is sealed: its body is
// encrypted with AES-256-GCM, the header (but the hop limit) authenticated
// with it, under a key of the pair (origin, target) and of the direction and
// the origin's life. The pair key comes from X25519 between the two nodes'
// identity keys, converted from ed25519, and the target reads the origin's
// key from its signed link-state record. A forwarder holds neither key, so
// it can neither read nor inject nor acknowledge on behalf of another node.
// Flooded broadcasts (no single target) are signed instead: the body ends
// with the origin's ed25519ph signature of the frame (hop limit aside),
// which every node checks before it delivers or floods the copy on.

// peerKeys is what a node keeps for one other node: their pair key and the
// AEADs of both directions, each for the sender's current life.
type peerKeys struct {
	key      []byte
	out      cipher.AEAD // this node → the other, for outEpoch
	outEpoch uint64
	in       cipher.AEAD // the other → this node, for inEpoch
	inEpoch  uint64
}

// errNoKey: the other end's signed record is not known yet.
var errNoKey = errors.New("no signed record for the other end")

// sealer keeps the pair keys of this node.
type sealer struct {
	self    uuid.UUID
	key     ed25519.PrivateKey
	priv    *ecdh.PrivateKey
	pairs   map[uuid.UUID]*peerKeys // bounded by the known records (forget)
	scratch [message.HeaderSize]byte
	iv      [12]byte // the first 4 bytes stay zero
	// next is the nonce counter of every frame this node seals, in this
	// life: one counter for all pairs, so that forgetting a pair (and
	// making its keys again) never reuses a nonce under a key.
	next uint64

	// seen remembers the digests of flooded broadcasts whose signature
	// checked, with the signature: a flood arrives once per neighbour, and
	// only the first copy pays for the check. order bounds it (FIFO).
	seen  map[[sha512.Size]byte][message.SigSize]byte
	order [][sha512.Size]byte
}

// maxSeen bounds the checked flood digests remembered.
const maxSeen = 1024

// floodOptions sign broadcasts: Ed25519ph, so that the frame is hashed in
// two runs without a copy, with a context of its own.
var floodOptions = &ed25519.Options{Hash: crypto.SHA512, Context: "distrirender broadcast v2"}

// floodDigest hashes what a flooded broadcast's signature covers.
func floodDigest(f []byte) [sha512.Size]byte {
	head, rest := message.TagCovers(f, message.SigSize)
	h := sha512.New()
	h.Write(head)
	h.Write(rest)
	var d [sha512.Size]byte
	h.Sum(d[:0])
	return d
}

// signFlood returns f, a broadcast this node floods, signed.
func (s *sealer) signFlood(f []byte) []byte {
	f = message.Seal(f, message.SigSize)
	d := floodDigest(f)
	sig, err := s.key.Sign(nil, d[:], floodOptions)
	if err != nil {
		panic("core: signing a broadcast: " + err.Error()) // only for bad options
	}
	copy(message.Tag(f, message.SigSize), sig)
	return f
}

// openFlood checks the signature of m, a flooded broadcast read as raw, and
// strips it from m.Body (raw keeps it, to be flooded on).
func (s *sealer) openFlood(c *Core, m *message.Message, raw []byte) error {
	if m.Header.Flags&message.FlagSealed == 0 || len(m.Body) < message.SigSize {
		return fmt.Errorf("%w: broadcast not signed", ErrAuth)
	}
	d := floodDigest(raw)
	sig := [message.SigSize]byte(message.Tag(raw, message.SigSize))
	if known, ok := s.seen[d]; !ok || known != sig {
		key, ok := c.rt.Key(m.UID.Node)
		if !ok {
			return errNoKey
		}
		if ed25519.VerifyWithOptions(key[:], d[:], sig[:], floodOptions) != nil {
			return fmt.Errorf("%w: broadcast claiming to come from %s: bad signature", ErrAuth, m.UID.Node)
		}
		if len(s.order) >= maxSeen {
			delete(s.seen, s.order[0])
			s.order = s.order[1:]
		}
		s.seen[d] = sig
		s.order = append(s.order, d)
	}
	m.Body = m.Body[:len(m.Body)-message.SigSize]
	return nil
}

func newSealer(self uuid.UUID, key ed25519.PrivateKey) *sealer {
	// The X25519 scalar of an ed25519 key is its hashed seed's first half
	// (RFC 8032 §5.1.5; X25519 clamps it).
	h := sha512.Sum512(key.Seed())
	priv, err := ecdh.X25519().NewPrivateKey(h[:32])
	if err != nil {
		panic("core: X25519 from an ed25519 key: " + err.Error()) // 32 bytes never fail
	}
	return &sealer{self: self, key: key, priv: priv, pairs: make(map[uuid.UUID]*peerKeys), seen: make(map[[sha512.Size]byte][message.SigSize]byte)}
}

// p is the field prime of curve25519, 2^255 − 19.
var p25519 = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))

// montgomery converts an ed25519 public key to its X25519 public key:
// u = (1 + y) / (1 − y) mod p (RFC 7748 §4.1). It runs once per pair.
func montgomery(pub []byte) ([]byte, error) {
	le := bytes.Clone(pub)
	le[31] &= 0x7f // the sign of x
	be := make([]byte, 32)
	for i := range le {
		be[31-i] = le[i]
	}
	y := new(big.Int).SetBytes(be)
	den := new(big.Int).Sub(big.NewInt(1), y)
	den.Mod(den, p25519)
	if den.Sign() == 0 {
		return nil, errors.New("key at the point y = 1")
	}
	u := new(big.Int).Add(big.NewInt(1), y)
	u.Mul(u, den.ModInverse(den, p25519))
	u.Mod(u, p25519)
	out := make([]byte, 32)
	u.FillBytes(be)
	for i := range be {
		out[31-i] = be[i]
	}
	return out, nil
}

// pairKey derives the key of the pair (a, b) from their X25519 shared
// secret; both ends get the same key.
func pairKey(shared []byte, a, b uuid.UUID) []byte {
	if bytes.Compare(a[:], b[:]) > 0 {
		a, b = b, a
	}
	h := sha256.New()
	h.Write([]byte("distrirender pair key v2"))
	h.Write(shared)
	h.Write(a[:])
	h.Write(b[:])
	return h.Sum(nil)
}

// aead returns the AEAD of the direction sender → receiver of the pair p
// in the sender's life epoch (the header's epoch: a restarted sender uses
// new keys, so its nonce counter may start again at 0).
func aead(pairKey []byte, sender uuid.UUID, epoch uint64) cipher.AEAD {
	h := sha256.New()
	h.Write([]byte("distrirender stream key v2"))
	h.Write(pairKey)
	h.Write(sender[:])
	h.Write(binary.BigEndian.AppendUint64(nil, epoch))
	block, err := aes.NewCipher(h.Sum(nil))
	if err != nil {
		panic("core: AES-256: " + err.Error()) // 32-byte keys never fail
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		panic("core: GCM: " + err.Error())
	}
	return g
}

// pairOf returns what this node keeps for other, made from other's signed
// record on first use.
func (s *sealer) pairOf(c *Core, other uuid.UUID) (*peerKeys, error) {
	if p := s.pairs[other]; p != nil {
		return p, nil
	}
	key, ok := c.rt.Key(other)
	if !ok {
		return nil, errNoKey
	}
	u, err := montgomery(key[:])
	if err != nil {
		return nil, err
	}
	pub, err := ecdh.X25519().NewPublicKey(u)
	if err != nil {
		return nil, err
	}
	shared, err := s.priv.ECDH(pub)
	if err != nil {
		return nil, err
	}
	p := &peerKeys{key: pairKey(shared, s.self, other)}
	s.pairs[other] = p
	return p, nil
}

// aad returns what a sealed frame's AEAD authenticates without encrypting:
// its header but the hop limit and the congestion mark (forwarders change
// them), in s.scratch.
func (s *sealer) aad(f []byte) []byte {
	head, rest := message.TagCovers(f, 0)
	a := append(append(s.scratch[:0], head...), rest[:message.HeaderSize-len(head)-1]...)
	message.ClearCongestion(a) // forwarders may set it
	return a
}

// nonce makes the 12-byte GCM nonce of counter n, in s.iv.
func (s *sealer) nonce(n uint64) []byte {
	binary.BigEndian.PutUint64(s.iv[4:], n)
	return s.iv[:]
}

// seal returns f, a data frame or ack this node originates for dst, sealed
// for dst: its body encrypted and authenticated with the header.
func (s *sealer) seal(c *Core, dst uuid.UUID, f []byte) ([]byte, error) {
	p, err := s.pairOf(c, dst)
	if err != nil {
		return nil, err
	}
	_, h, _, err := message.DecodeHeader(f)
	if err != nil {
		return nil, err
	}
	if p.out == nil || p.outEpoch != h.Epoch {
		p.out, p.outEpoch = aead(p.key, s.self, h.Epoch), h.Epoch
	}
	n := s.next
	s.next++
	// The nonce and the AEAD's output fill the whole body.
	sf := message.SealHeader(c.spareFor(len(f)+message.SealOverhead), f, message.SealOverhead)
	body := sf[message.HeaderSize:]
	binary.BigEndian.PutUint64(body, n)
	p.out.Seal(body[8:8], s.nonce(n), f[message.HeaderSize:], s.aad(sf))
	return sf, nil
}

// open checks and decrypts m, a frame for this node read as raw, in place:
// m.Body becomes the plaintext.
func (s *sealer) open(c *Core, m *message.Message, raw []byte) error {
	if m.Header.Flags&message.FlagSealed == 0 || len(m.Body) < message.SealOverhead {
		return fmt.Errorf("%w: %s not sealed", ErrAuth, m.Header.Type)
	}
	p, err := s.pairOf(c, m.UID.Node)
	if err != nil {
		return err
	}
	if p.in == nil || p.inEpoch != m.Header.Epoch {
		p.in, p.inEpoch = aead(p.key, m.UID.Node, m.Header.Epoch), m.Header.Epoch
	}
	n := binary.BigEndian.Uint64(m.Body)
	plain, err := p.in.Open(m.Body[8:8], s.nonce(n), m.Body[8:], s.aad(raw))
	if err != nil {
		return fmt.Errorf("%w: %s claiming to come from %s: %w", ErrAuth, m.Header.Type, m.UID.Node, err)
	}
	m.Body = plain
	return nil
}

// forget drops the pair key of a node whose record aged out.
func (s *sealer) forget(id uuid.UUID) { delete(s.pairs, id) }

// sealed reports whether f is a frame this node originates that must be
// sealed (msg, ack, or msg_broadcast for one target) or, with flood,
// signed (a flooded msg_broadcast).
func (c *Core) sealed(f []byte, flood bool) bool {
	switch message.PeekType(f) {
	case message.TypeMsg, message.TypeAck, message.TypeMsgBroadcast:
	default:
		return false
	}
	uid, h, _, err := message.DecodeHeader(f)
	return err == nil && uid.Node == c.cfg.ID && (h.Target == uuid.Nil) == flood
}
