package meshtest

import (
	"fmt"
	"testing"
	"time"

	"github.com/distrirender/distrirender/node"
	"github.com/distrirender/distrirender/reliability"
	"github.com/distrirender/distrirender/routing"
	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/memory"
)

// Memory is a Mesh on one in-memory network, whose faults the test sets
// through Net: node i listens at "n<i>".
type Memory struct {
	*Mesh
	Net *memory.Network
}

// OnMemory starts size nodes with opts on a new in-memory network seeded, as
// the mesh's UUIDs are, with seed. The network closes after the nodes, when
// the test ends.
func OnMemory(t testing.TB, size int, seed uint64, opts ...node.Option) *Memory {
	t.Helper()
	net := memory.NewNetwork(memory.Config{Seed: int64(seed)})
	t.Cleanup(func() { _ = net.Close() }) // registered first: runs after the mesh closes its nodes
	m := &Memory{Net: net}
	m.Mesh = New(t, seed, func(t testing.TB, i int) (transport.Transport, string) {
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

// Kill makes node i die abruptly: its links go silent and nobody is told.
// It may be called from any goroutine.
func (m *Memory) Kill(i int) {
	m.Net.Kill(m.Addr(i))
	m.Close(i)
}

// Lossy is Fast for links with heavy loss (Net.SetFaults): neighbours are
// not declared dead however many keepalives in a row are lost (50 ms, 40
// missed), retransmission is quick with a large retry budget (RTO 10 to
// 200 ms, 40 retries), link state is refreshed every 500 ms so that lost
// floods are repaired, and balancing is off. extra come after, so they
// override.
func Lossy(extra ...node.Option) []node.Option {
	return append([]node.Option{
		node.WithMinConnections(0),
		node.WithKeepalive(50*time.Millisecond, 40),
		node.WithReliability(reliability.Config{MinRTO: 10 * time.Millisecond, InitialRTO: 50 * time.Millisecond, MaxRTO: 200 * time.Millisecond, MaxRetries: 40}),
		node.WithRouting(routing.Config{RefreshInterval: 500 * time.Millisecond}),
	}, extra...)
}
