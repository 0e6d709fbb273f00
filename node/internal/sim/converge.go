package sim

import "errors"

// Converged reports whether every live node routes to every other live node
// and holds between min(MinConns, live-1) and MaxConns neighbours.
func Converged(s *Sim) bool {
	live := 0
	for _, n := range s.nodes {
		if n.alive {
			live++
		}
	}
	for _, n := range s.nodes {
		if !n.alive {
			continue
		}
		cfg := n.core.Config()
		deg := len(n.core.Neighbors())
		if deg > cfg.MaxConns || deg < min(cfg.MinConns, live-1) {
			return false
		}
		rt := n.core.Routes()
		for _, m := range s.nodes {
			if m != n && m.alive {
				if _, ok := rt.NextHop(m.ID); !ok {
					return false
				}
			}
		}
	}
	return true
}

// Live returns the nodes that run.
func (s *Sim) Live() []*Node {
	var out []*Node
	for _, n := range s.nodes {
		if n.alive {
			out = append(out, n)
		}
	}
	return out
}

// DegreesWithin reports whether every live node has between lo and hi
// neighbours.
func DegreesWithin(s *Sim, lo, hi int) bool {
	for _, n := range s.Live() {
		if d := len(n.core.Neighbors()); d < lo || d > hi {
			return false
		}
	}
	return true
}

// Downs counts the NeighborDown events of every node whose cause matches
// err (errors.Is), or all of them if err is nil.
func Downs(s *Sim, err error) int {
	k := 0
	for _, n := range s.nodes {
		for _, e := range n.Downs {
			if err == nil || errors.Is(e, err) {
				k++
			}
		}
	}
	return k
}

// TopologyFrames sums the link-state frames every node sent.
func TopologyFrames(s *Sim) uint64 {
	var k uint64
	for _, n := range s.nodes {
		k += n.core.Stats().TopologyFrames
	}
	return k
}
