package node

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"time"
)

// Redial back-off bounds: the first retry comes soon (a brief partition heals
// fast), later ones at most every maxRedialBackoff so that a dead address
// costs little.
const (
	minRedialBackoff = 100 * time.Millisecond
	maxRedialBackoff = 5 * time.Second
)

// redial is an address whose edge this node dialled and lost by failure; the
// node dials it again with jittered exponential back-off until it succeeds,
// the edge exists again, or the redial window (WithRedial) runs out.
type redial struct {
	addr    string
	next    time.Time
	backoff time.Duration
	until   time.Time
	busy    bool // a dial is in flight
}

func (st *state) scheduleRedial(addr string) {
	if addr == "" || st.n.cfg.redialFor <= 0 {
		return
	}
	if _, ok := st.redials[addr]; ok {
		return
	}
	r := &redial{addr: addr, backoff: minRedialBackoff, until: st.now.Add(st.n.cfg.redialFor)}
	r.next = st.now.Add(jitter(r.backoff))
	st.redials[addr] = r
}

// jitter spreads d over [d/2, 3d/2) so that the nodes around a failure do
// not redial in lockstep.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d)
}

func (st *state) runRedials() {
	n := st.n
	for addr, r := range st.redials {
		if r.busy || st.now.Before(r.next) {
			continue
		}
		if st.neighborAt(addr) {
			// The edge exists again (the other side dialled, or Connect did):
			// dialling once more would only replace it.
			delete(st.redials, addr)
			continue
		}
		r.busy = true
		n.wg.Add(1)
		go func(addr string) {
			defer n.wg.Done()
			ctx, cancel := context.WithTimeout(n.ctx, n.cfg.handshake)
			defer cancel()
			err := n.Connect(ctx, addr)
			n.post(func() { st.redialDone(addr, err) })
		}(r.addr)
	}
}

func (st *state) redialDone(addr string, err error) {
	r := st.redials[addr]
	if r == nil {
		return
	}
	r.busy = false
	if err == nil || errors.Is(err, ErrDuplicateEdge) || errors.Is(err, ErrClosed) {
		delete(st.redials, addr)
		return
	}
	if st.now.After(r.until) {
		st.n.log.Info("giving up redialling", "addr", addr, "err", err)
		delete(st.redials, addr)
		return
	}
	r.backoff = min(2*r.backoff, maxRedialBackoff)
	r.next = st.now.Add(jitter(r.backoff))
}

// neighborAt reports whether a current neighbour was dialled at addr or
// advertises it.
func (st *state) neighborAt(addr string) bool {
	for _, p := range st.peers {
		if p.dialTo == addr || slices.Contains(p.addrs, addr) {
			return true
		}
	}
	return false
}
