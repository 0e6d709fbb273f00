package node_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/transport/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// mesh is a set of nodes on one in-memory network, whose faults the tests
// set through net: node i listens at "n<i>".
type mesh struct {
	*meshtest.Memory
	net *memory.Network
}

// newMesh starts size nodes with opts on a network seeded, as the mesh's
// UUIDs are, with seed.
func newMesh(t testing.TB, size int, seed uint64, opts ...node.Option) *mesh {
	t.Helper()
	m := meshtest.OnMemory(t, size, seed, opts...)
	return &mesh{Memory: m, net: m.Net}
}
