package webrtc

// Drop disconnects the client with the ID, as a network failure would, and
// reports whether there was one.
func (s *SignalServer) Drop(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clients[id]
	if c == nil {
		return false
	}
	s.removeLocked(c)
	return true
}
