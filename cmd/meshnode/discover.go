package main

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/libp2p/zeroconf/v2"

	"github.com/distrirender/distrirender/node"
)

// mDNS discovery (--discover): the node announces the DNS-SD service
// _distrirender._udp.local. with its QUIC port, and TXT records "id=<UUID>"
// and "addr=<host:port>" (one per advertised address, at most
// maxTXTAddrs); and it browses for the same service every
// --discover-interval (jittered), for browseTimeout each time. A found node
// that is not already reachable through the mesh is dialled, one per round
// (ErrDuplicateEdge counts as success), so that a new node joins and two
// meshes on one LAN merge, without every node dialling every other.
const (
	mdnsService   = "_distrirender._udp"
	mdnsDomain    = "local."
	browseTimeout = 3 * time.Second
	maxTXTAddrs   = 4
)

// found is one node seen by mDNS.
type found struct {
	id    uuid.UUID
	addrs []string
}

func (d *daemon) discover(ctx context.Context) {
	log := d.log.With("component", "discovery")
	if srv, err := d.announce(); err != nil {
		log.Error("mDNS announce failed; browsing only", "err", err)
	} else {
		defer srv.Shutdown()
	}
	for {
		d.browseOnce(ctx)
		if !sleep(ctx, jitter(d.cfg.DiscoverInterval)) {
			return
		}
	}
}

// announce registers this node's service. It uses an explicit host name,
// meshnode-<first 8 hex digits of the ID>.local., rather than the machine's:
// several nodes on one host (or in network namespaces sharing a host name)
// must not mix up each other's addresses.
func (d *daemon) announce() (*zeroconf.Server, error) {
	id := d.n.ID()
	var ips []string
	port := 0
	txt := []string{"id=" + id.String()}
	for _, a := range d.n.Addrs() {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			continue
		}
		if port == 0 {
			port = int(ap.Port())
		}
		if !slices.Contains(ips, ap.Addr().String()) {
			ips = append(ips, ap.Addr().String())
		}
		if len(txt) <= maxTXTAddrs {
			txt = append(txt, "addr="+a)
		}
	}
	if port == 0 || len(ips) == 0 {
		return nil, errors.New("no host:port address to announce")
	}
	host := "meshnode-" + id.String()[:8]
	srv, err := zeroconf.RegisterProxy(id.String(), mdnsService, mdnsDomain, port, host, ips, txt, nil)
	if err != nil {
		return nil, err
	}
	d.log.Info("announcing on mDNS", "service", mdnsService, "port", port, "ips", ips)
	return srv, nil
}

// browseOnce browses for browseTimeout and dials one found node that the
// mesh does not reach yet.
func (d *daemon) browseOnce(ctx context.Context) {
	log := d.log.With("component", "discovery")
	bctx, cancel := context.WithTimeout(ctx, browseTimeout)
	defer cancel()
	entries := make(chan *zeroconf.ServiceEntry, 16)
	errc := make(chan error, 1)
	go func() {
		errc <- zeroconf.Browse(bctx, mdnsService, mdnsDomain, entries, zeroconf.SelectIPTraffic(zeroconf.IPv4))
	}()
	var peers []found
	add := func(e *zeroconf.ServiceEntry) {
		if f, ok := parseEntry(e); ok && f.id != d.n.ID() && !slices.ContainsFunc(peers, func(p found) bool { return p.id == f.id }) {
			peers = append(peers, f)
		}
	}
	// Browse closes entries when it ends normally, but not when it fails
	// to start; it returns only after its last send.
	for done := false; !done; {
		select {
		case e, ok := <-entries:
			if ok {
				add(e)
			}
		case err := <-errc:
			if err != nil && ctx.Err() == nil {
				log.Warn("mDNS browse failed", "err", err)
			}
			for drained := false; !drained; {
				select {
				case e, ok := <-entries:
					if !ok {
						drained = true
					} else {
						add(e)
					}
				default:
					drained = true
				}
			}
			done = true
		}
	}
	if ctx.Err() != nil || len(peers) == 0 {
		return
	}
	log.Debug("mDNS browse", "found", len(peers))
	if len(d.n.Neighbors()) >= d.cfg.MaxConnections {
		return
	}
	tp := d.n.Topology()
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	for _, p := range peers {
		if ni, ok := tp.Node(p.id); ok && ni.Distance >= 0 {
			continue // already in our mesh
		}
		for _, addr := range p.addrs {
			cctx, cancel := context.WithTimeout(ctx, d.cfg.JoinTimeout)
			err := d.n.Connect(cctx, addr)
			cancel()
			switch {
			case err == nil:
				log.Info("connected to a node found by mDNS", "peer", p.id, "addr", addr)
				return
			case errors.Is(err, node.ErrDuplicateEdge):
				return
			case errors.Is(err, node.ErrClosed) || ctx.Err() != nil:
				return
			default:
				log.Debug("dialling a node found by mDNS failed", "peer", p.id, "addr", addr, "err", err)
			}
		}
	}
}

// parseEntry reads a service entry: the ID from TXT "id=", the addresses
// from TXT "addr=" or else from the A records and the SRV port.
func parseEntry(e *zeroconf.ServiceEntry) (found, bool) {
	var f found
	for _, t := range e.Text {
		k, v, _ := strings.Cut(t, "=")
		switch k {
		case "id":
			id, err := uuid.Parse(v)
			if err != nil {
				return f, false
			}
			f.id = id
		case "addr":
			if _, _, err := net.SplitHostPort(v); err == nil {
				f.addrs = append(f.addrs, v)
			}
		}
	}
	if f.id == uuid.Nil {
		return f, false
	}
	if len(f.addrs) == 0 && e.Port > 0 {
		for _, ip := range e.AddrIPv4 {
			f.addrs = append(f.addrs, net.JoinHostPort(ip.String(), strconv.Itoa(e.Port)))
		}
	}
	return f, len(f.addrs) > 0
}
