package node

// DebugString exposes the loop's state to the external tests.
var DebugString = (*Node).debugString

// debugString describes the core's state: streams, receivers and peers. It
// is for tests diagnosing a stuck mesh.
func (n *Node) debugString() string {
	if q := n.ask(queryDebug); q != nil {
		return q.text
	}
	return "closed"
}
