package sim

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
