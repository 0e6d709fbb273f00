package node_test

import (
	"fmt"
	"testing"

	"go.uber.org/goleak"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// mesh is a set of nodes on one in-memory network, whose faults the tests
// set: node i listens at "n<i>".
type mesh struct {
	*meshtest.Mesh
	net *memory.Network
}

// newMesh starts size nodes with opts on a network seeded, as the mesh's
// UUIDs are, with seed.
func newMesh(t testing.TB, size int, seed uint64, opts ...node.Option) *mesh {
	t.Helper()
	net := memory.NewNetwork(memory.Config{Seed: int64(seed)})
	t.Cleanup(func() { _ = net.Close() }) // after the mesh has closed its nodes
	m := &mesh{net: net}
	m.Mesh = meshtest.New(t, seed, func(t testing.TB, i int) (transport.Transport, string) {
		addr := fmt.Sprintf("n%d", i)
		tr, err := net.Listen(addr)
		if err != nil {
			t.Fatal(err)
		}
		return tr, addr
	})
	for range size {
		m.Add(opts...)
	}
	return m
}

// kill makes node i die abruptly: its links go silent, nobody is told.
func (m *mesh) kill(i int) {
	m.net.Kill(m.Addr(i))
	m.Close(i)
}
