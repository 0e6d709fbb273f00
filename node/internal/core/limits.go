package core

import "time"

// Rate limits per neighbour, in virtual time. A frame over its limit is
// dropped and counted (Stats.RateLimited).
//
// A neighbour can make this node answer with a large part of its database:
// a digest is answered with every record it lacks, an empty
// network_state_request with all of them. This node sends one digest frame
// per 32,000 records when an edge comes up and never an empty request, so
// the bulk limit only bites an attacker.
//
// Every other control frame (link state, entry requests, keepalives: all
// but data and acks, which windows bound) costs a decode, a signature check
// in a closed cluster, and often a flood: the control limit is far above
// what link state carries while a thousand nodes join (the simulator's
// TestSimScale never meets it) and bounds what a member can make its
// neighbours do.
var (
	bulkLimit = limit{burst: 32, every: 100 * time.Millisecond}
	ctrlLimit = limit{burst: 4096, every: 200 * time.Microsecond}
)

// limit is a token bucket's shape: burst tokens, one more every every.
type limit struct {
	burst int
	every time.Duration
}

// bucket is a token bucket in virtual time.
type bucket struct {
	tokens int
	at     time.Time // when tokens was last brought up to date
}

// take spends a token of a bucket shaped l at now, or reports false when
// none is left.
func (b *bucket) take(now time.Time, l limit) bool {
	if b.at.IsZero() {
		b.tokens, b.at = l.burst, now
	}
	if n := int(now.Sub(b.at) / l.every); n > 0 {
		b.tokens = min(l.burst, b.tokens+n)
		b.at = b.at.Add(time.Duration(n) * l.every)
	}
	if b.tokens == 0 {
		return false
	}
	b.tokens--
	return true
}
