package node

import (
	"context"
	"fmt"
	"strings"
)

// DebugString exposes the loop's state to the external tests.
var DebugString = (*Node).debugString

// debugString describes the loop's state: streams, receivers and peers. It
// is for tests diagnosing a stuck mesh.
func (n *Node) debugString() string {
	var b strings.Builder
	_ = n.do(context.Background(), func() {
		st := n.st
		fmt.Fprintf(&b, "node %s: %d peers, %d parked sends\n", n.id.String()[:8], len(st.peers), len(st.parked))
		for _, s := range st.allStreams() {
			if s.snd.InFlight() == 0 && s.backlog.Len() == 0 {
				continue
			}
			blocked, isBlocked := s.snd.Blocked()
			fmt.Fprintf(&b, "  out %s: inflight %d base %d next %d backlog %d blocked %v %s\n",
				short(s.dst), s.snd.InFlight(), s.snd.Base(), s.snd.Next(), s.backlog.Len(), isBlocked, short(blocked))
			b.WriteString(s.snd.String())
		}
		for id := range st.peers {
			fmt.Fprintf(&b, "  peer %s\n", short(id))
		}
		for k, rx := range st.rx {
			if rx.Buffered() > 0 {
				fmt.Fprintf(&b, "  in %s bcast=%v: next %d buffered %d\n", short(k.src), k.bcast, rx.Next(), rx.Buffered())
			}
		}
	})
	return b.String()
}

func short(id [16]byte) string { return fmt.Sprintf("%x", id[:4]) }
