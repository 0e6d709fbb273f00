package libp2p

import (
	"context"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// discovery runs libp2p's mDNS service for a transport and turns the peers
// it finds into addresses on a channel.
type discovery struct {
	t    *Transport
	svc  mdns.Service
	out  chan string
	done chan struct{}

	mu      sync.Mutex
	closed  bool
	senders sync.WaitGroup // HandlePeerFound calls waiting to deliver
}

func startDiscovery(t *Transport, service string) (*discovery, error) {
	if service == "" {
		service = DefaultMDNSService
	}
	d := &discovery{t: t, out: make(chan string, discoveredBuffer), done: make(chan struct{})}
	d.svc = mdns.NewMdnsService(t.h, service, d)
	if err := d.svc.Start(); err != nil {
		return nil, fmt.Errorf("libp2p: starting mDNS service %q: %w", service, err)
	}
	return d, nil
}

// HandlePeerFound implements mdns.Notifee. The mDNS service calls it on a
// goroutine of its own for every peer it finds (each once, until the peer's
// announcement expires or it leaves and comes back), so it may wait until
// the address is taken or the transport closes.
func (d *discovery) HandlePeerFound(info peer.AddrInfo) {
	if info.ID == d.t.h.ID() {
		return
	}
	addr := bestAddr(info.Addrs)
	if addr == nil {
		return
	}
	// Every address goes into the peerstore, so that a Dial of the one
	// reported may use the others too.
	d.t.h.Peerstore().AddAddrs(info.ID, info.Addrs, peerstore.TempAddrTTL)
	s := p2pAddrs(info.ID, []ma.Multiaddr{addr})[0]

	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.senders.Add(1)
	d.mu.Unlock()
	defer d.senders.Done()
	d.t.log.Debug("mDNS found a peer", "peer", info.ID, "addr", s)
	select {
	case d.out <- s:
	case <-d.done:
	}
}

// bestAddr picks the address to report for a peer: QUIC or TCP (what the
// transport's own host dials) before anything else, an address that is not
// loopback (a peer's loopback address is ours to reach only if it runs on
// this machine) before one that is, and QUIC before TCP. The rest stay in the
// peerstore for the dial.
func bestAddr(addrs []ma.Multiaddr) ma.Multiaddr {
	var best ma.Multiaddr
	bestRank := -1
	for _, a := range addrs {
		rank := 0
		switch {
		case has(a, ma.P_QUIC_V1):
			rank = 2
		case has(a, ma.P_TCP):
			rank = 1
		}
		if rank > 0 && !manet.IsIPLoopback(a) {
			rank += 2
		}
		if rank > bestRank {
			best, bestRank = a, rank
		}
	}
	return best
}

func has(a ma.Multiaddr, code int) bool {
	_, err := a.ValueForProtocol(code)
	return err == nil
}

// close stops the mDNS service, waits for the deliveries in progress to give
// up and closes the channel.
func (d *discovery) close() {
	_ = d.svc.Close()
	d.mu.Lock()
	d.closed = true
	close(d.done)
	d.mu.Unlock()
	d.senders.Wait()
	close(d.out)
}

// Discovered returns the addresses of the peers that mDNS finds (Config.MDNS),
// one dialable address per peer each time the peer is found, in the form Dial
// takes. Read it promptly: the mDNS service waits for each address to be
// taken. The channel is closed by Close. Without Config.MDNS it is nil.
func (t *Transport) Discovered() <-chan string {
	if t.mdns == nil {
		return nil
	}
	return t.mdns.out
}

// Connector is what AutoConnect needs of a mesh node (*node.Node has it):
// the transport does not depend on the node package.
type Connector interface {
	Connect(ctx context.Context, addr string) error
}

// AutoConnect connects n to every peer that t discovers by mDNS: for each
// address on t.Discovered it calls n.Connect, unless t already has an edge to
// that peer, ignoring node.ErrDuplicateEdge (the peer dialled n at the same
// time) and logging other failures on the transport's logger; a refused or
// failed peer is tried again only when mDNS reports it again. t must be one
// of n's transports. AutoConnect returns when ctx ends or t is closed, after
// the Connects it started have returned; run it on a goroutine of its own:
//
//	go libp2p.AutoConnect(ctx, n, tr)
//
// It returns at once if t runs without Config.MDNS.
func AutoConnect(ctx context.Context, n Connector, t *Transport) {
	found := t.Discovered()
	if found == nil {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var addr string
		var ok bool
		select {
		case addr, ok = <-found:
			if !ok {
				return
			}
		case <-ctx.Done():
			return
		}
		info, err := ParseAddr(addr)
		if err != nil || t.connectedTo(info.ID) {
			continue
		}
		wg.Go(func() {
			err := n.Connect(ctx, addr)
			switch {
			case err == nil:
				t.log.Debug("mDNS: connected", "addr", addr)
			case ctx.Err() != nil:
			default:
				// Often harmless: the edge may exist already (dialled from the other side).
				t.log.Debug("mDNS: connecting to a discovered peer failed", "addr", addr, "err", err)
			}
		})
	}
}
