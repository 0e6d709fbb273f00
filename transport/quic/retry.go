package quic

import (
	"net"
	"sync"
	"time"
)

// Source address validation (RFC 9000 §8.1.2). A QUIC server that answers
// every Initial packet keeps state for it, and the source of an Initial
// may be spoofed. Above a rate of new connection attempts, the transport
// makes clients prove their address first with a Retry (one more round
// trip, on new connections only), so that a flood from spoofed addresses
// costs it nothing.
const (
	// retryBurst new connection attempts are taken without validation at
	// once, then retryRate a second: far more than a mesh node's joins,
	// redials and balancing dials.
	retryBurst = 64
	retryRate  = 32
)

// retryPolicy is a token bucket: verify reports true (validate the source
// address) once the bucket is empty.
type retryPolicy struct {
	mu     sync.Mutex
	tokens float64
	at     time.Time
	now    func() time.Time
}

func newRetryPolicy(now func() time.Time) *retryPolicy {
	return &retryPolicy{tokens: retryBurst, at: now(), now: now}
}

// verify is quic.Transport.VerifySourceAddress.
func (p *retryPolicy) verify(net.Addr) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	p.tokens = min(retryBurst, p.tokens+now.Sub(p.at).Seconds()*retryRate)
	p.at = now
	if p.tokens < 1 {
		return true
	}
	p.tokens--
	return false
}
