package core

import "time"

// A neighbour can make this node answer with a large part of its database:
// a digest is answered with every record it lacks, an empty
// network_state_request with all of them. Such frames are rate-limited per
// neighbour; one over the limit is dropped and counted (Stats.RateLimited).
// This node sends one digest frame per 32,000 records when an edge comes up
// and never an empty request, so the limit only bites an attacker.
const (
	// bulkBurst is how many such frames a neighbour may send at once.
	bulkBurst = 32
	// bulkEvery is how often one more is allowed after the burst.
	bulkEvery = 100 * time.Millisecond
)

// bucket is a token bucket in virtual time: burst tokens, one more every
// bulkEvery.
type bucket struct {
	tokens int
	at     time.Time // when tokens was last brought up to date
}

// take spends a token at now, or reports false when none is left.
func (b *bucket) take(now time.Time) bool {
	if b.at.IsZero() {
		b.tokens, b.at = bulkBurst, now
	}
	if n := int(now.Sub(b.at) / bulkEvery); n > 0 {
		b.tokens = min(bulkBurst, b.tokens+n)
		b.at = b.at.Add(time.Duration(n) * bulkEvery)
	}
	if b.tokens == 0 {
		return false
	}
	b.tokens--
	return true
}
