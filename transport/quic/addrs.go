package quic

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/distrirender/distrirender/transport"
)

// family says which IP versions a socket can reach.
type family struct{ v4, v6 bool }

// listenNetwork picks the socket network for a listen host: an IPv4 literal
// (including 0.0.0.0) gives an IPv4 socket, an IPv6 literal (including ::) an
// IPv6-only one, and anything else (an empty host, a name) Go's default,
// which for an empty host is a dual-stack socket.
func listenNetwork(host string) string {
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Unmap().Is4() {
			return "udp4"
		}
		return "udp6"
	}
	return "udp"
}

// socketFamily reports which IP versions the socket bound at local, opened on
// network, can dial.
func socketFamily(network string, local netip.Addr) family {
	switch {
	case network == "udp4" || local.Is4() || local.Is4In6():
		return family{v4: true}
	case network == "udp6":
		return family{v6: true}
	case local.IsUnspecified():
		return family{v4: true, v6: true} // dual stack
	default:
		return family{v6: true}
	}
}

// advertised returns the addresses at which a socket bound at local:port can
// be dialled. A specific local address is reported as it is. For an
// unspecified one (0.0.0.0, ::) it is every address of the given interface
// addresses that the socket's family can use, skipping loopback, link-local
// and multicast addresses unless nothing else is left, in which case the
// loopback addresses are reported. IPv4 addresses come first.
func advertised(local netip.Addr, port uint16, fam family, ifaddrs []net.Addr) []string {
	if !local.IsUnspecified() {
		return []string{netip.AddrPortFrom(local.Unmap(), port).String()}
	}
	var good, loop []netip.Addr
	for _, a := range ifaddrs {
		var ip netip.Addr
		switch v := a.(type) {
		case *net.IPNet:
			ip, _ = netip.AddrFromSlice(v.IP)
		case *net.IPAddr:
			ip, _ = netip.AddrFromSlice(v.IP)
		default:
			continue
		}
		ip = ip.Unmap()
		if !ip.IsValid() || (ip.Is4() && !fam.v4) || (ip.Is6() && !fam.v6) {
			continue
		}
		switch {
		case ip.IsLoopback():
			loop = append(loop, ip)
		case ip.IsLinkLocalUnicast(), ip.IsMulticast(), ip.IsUnspecified():
			// Link-local addresses need a zone that means nothing to the
			// peer; skip them.
		default:
			good = append(good, ip)
		}
	}
	if len(good) == 0 {
		good = loop
	}
	slices.SortStableFunc(good, func(a, b netip.Addr) int {
		switch {
		case a.Is4() && !b.Is4():
			return -1
		case !a.Is4() && b.Is4():
			return 1
		}
		return 0
	})
	good = slices.Compact(good)
	out := make([]string, 0, len(good))
	for _, ip := range good {
		out = append(out, netip.AddrPortFrom(ip, port).String())
	}
	return out
}

// resolve turns a "host:port" into a UDP address the socket can reach,
// looking a name up with ctx. It prefers IPv4 when both are possible.
func resolve(ctx context.Context, addr string, fam family) (*net.UDPAddr, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("quic: dial %q: %w: %w", addr, transport.ErrUnreachable, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		p, lerr := net.DefaultResolver.LookupPort(ctx, "udp", portStr)
		if lerr != nil {
			return nil, fmt.Errorf("quic: dial %q: %w: bad port %q", addr, transport.ErrUnreachable, portStr)
		}
		port = uint64(p)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		if host == "" {
			return nil, fmt.Errorf("quic: dial %q: %w: no host", addr, transport.ErrUnreachable)
		}
		ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("quic: dial %q: %w: %w", addr, transport.ErrUnreachable, err)
		}
	}
	var pick netip.Addr
	for _, ip := range ips {
		u := ip.Unmap()
		if (u.Is4() && fam.v4) || (u.Is6() && fam.v6) {
			if !pick.IsValid() || (u.Is4() && !pick.Is4()) {
				pick = u
			}
		}
	}
	if !pick.IsValid() {
		return nil, fmt.Errorf("quic: dial %q: %w: no address of an IP version the socket can use", addr, transport.ErrUnreachable)
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(pick, uint16(port))), nil
}
