package quic

// Crash makes the transport fall silent the way a crashed process does: the
// QUIC connections are dropped without CONNECTION_CLOSE and the socket
// stops being read, so peers hear nothing more and must notice by
// themselves. This side's edges fail at once. Close still has to be called.
func (t *Transport) Crash() { _ = t.qt.Close() }
