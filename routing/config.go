package routing

import (
	"time"

	"github.com/distrirender/distrirender/message"
)

// Defaults for Config. They are filled in by Config.WithDefaults.
const (
	// DefaultMaxAge is three refresh intervals: a record survives two lost
	// refresh floods before it ages out.
	DefaultMaxAge = 90 * time.Second
	// DefaultRefreshInterval keeps the flood rate low (one small record per
	// node every 30 s, about 330 records/s network-wide at 10,000 nodes) while
	// leaving MaxAge room for two lost refreshes.
	DefaultRefreshInterval = 30 * time.Second
	// DefaultMaxSeqJump is far more changes than an honest node can make
	// between two floods that reach us (a million), yet small enough that a
	// forged sequence number cannot pin a record near the top of the range.
	DefaultMaxSeqJump uint64 = 1 << 20
	// DefaultMaxEpochSkew tolerates badly set clocks on other machines (epochs
	// are UnixNano timestamps) but rejects epochs from the far future, which
	// would shadow the origin's real records until that time.
	DefaultMaxEpochSkew = time.Hour
	// DefaultMaxRecords bounds the database against a flood of invented
	// origins: well above the 10,000 nodes the recomputation is measured for.
	DefaultMaxRecords = 1 << 14
	// DefaultMaxNeighborEntries bounds the neighbour entries of all remote
	// records together (20 to 40 bytes each with their interned form and
	// spare capacity, so at most 40 MiB): ten times what a 10,000-node mesh
	// with 10 neighbours per node needs, and far below MaxRecords records of
	// message.MaxNeighbors each.
	DefaultMaxNeighborEntries = 1 << 20
)

// Config tunes a Table. The zero value is valid: WithDefaults fills every zero
// (or negative) field with its default, and New calls it.
type Config struct {
	// MaxAge is how long a remote record lives without an accepted update
	// before Expire removes it. The local record never ages. Default 90s
	// (DefaultMaxAge). It must be comfortably larger than RefreshInterval.
	MaxAge time.Duration
	// RefreshInterval is how often the local record is re-originated (seq+1)
	// by Refresh, so that other nodes do not age it out. Default 30s
	// (DefaultRefreshInterval).
	RefreshInterval time.Duration
	// MaxSeqJump is the largest sequence increase accepted over a known record
	// of the same epoch; larger jumps are rejected with ErrAbsurdSeq. Default
	// 1<<20 (DefaultMaxSeqJump).
	MaxSeqJump uint64
	// MaxEpochSkew is how far ahead of now (as UnixNano) an epoch may be;
	// later epochs are rejected with ErrAbsurdEpoch. Default 1h
	// (DefaultMaxEpochSkew).
	MaxEpochSkew time.Duration
	// MaxRecords bounds the number of records (including the local one); a
	// record for a new origin beyond it is rejected with ErrTableFull.
	// Default 16384 (DefaultMaxRecords).
	MaxRecords int
	// MaxNeighborEntries bounds the total length of all remote records'
	// neighbour lists; an update or a new record that would exceed it is
	// rejected with ErrTableFull. With the per-record limits of the message
	// package (1024 neighbours, 16 addresses of 255 bytes) the database then
	// holds at most about MaxRecords×5 KiB + MaxNeighborEntries×40 bytes
	// (spare slice capacity included), about 120 MiB with the defaults,
	// whatever forged records arrive. Default
	// 1<<20 (DefaultMaxNeighborEntries).
	MaxNeighborEntries int
	// Signer, when set, signs the local record at every change and checks
	// every remote record and change before it is applied: one not signed
	// by its origin is Rejected with ErrForged. Nil (the default) leaves
	// link state unsigned, as in a cluster without a secret.
	Signer Signer
}

// Signer signs and checks link-state records for a Table. Its methods must
// be deterministic and must not retain s.
type Signer interface {
	// Sign sets s.Key and s.Sig: the local node's key and its signature of
	// s.SigningBytes().
	Sign(s *message.State)
	// Verify reports whether s.Sig is the signature of s.SigningBytes()
	// by s.Key, and s.Key is the key of s.Origin.
	Verify(s *message.State) error
}

// WithDefaults returns c with every zero or negative field replaced by its
// default.
func (c Config) WithDefaults() Config {
	if c.MaxAge <= 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = DefaultRefreshInterval
	}
	if c.MaxSeqJump == 0 {
		c.MaxSeqJump = DefaultMaxSeqJump
	}
	if c.MaxEpochSkew <= 0 {
		c.MaxEpochSkew = DefaultMaxEpochSkew
	}
	if c.MaxRecords <= 0 {
		c.MaxRecords = DefaultMaxRecords
	}
	if c.MaxNeighborEntries <= 0 {
		c.MaxNeighborEntries = DefaultMaxNeighborEntries
	}
	return c
}
