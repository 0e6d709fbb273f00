package quic

import (
	"net"
	"net/netip"
	"slices"
	"testing"
)

// TestAdvertised checks the addresses reported for wildcard and specific
// bindings against made-up interface lists; nothing is bound.
func TestAdvertised(t *testing.T) {
	ifs := func(cidrs ...string) []net.Addr {
		var out []net.Addr
		for _, c := range cidrs {
			ip, n, err := net.ParseCIDR(c)
			if err != nil {
				t.Fatal(err)
			}
			n.IP = ip
			out = append(out, n)
		}
		return out
	}
	lan := ifs("127.0.0.1/8", "::1/128", "192.168.1.20/24", "fe80::1/64", "fd00::20/64", "10.0.0.5/8")
	for _, tc := range []struct {
		name  string
		local string
		fam   family
		addrs []net.Addr
		want  []string
	}{
		{"specific", "192.168.1.20", family{v4: true}, lan, []string{"192.168.1.20:4242"}},
		{"specific v6", "fd00::20", family{v6: true}, lan, []string{"[fd00::20]:4242"}},
		{"v4 wildcard", "0.0.0.0", family{v4: true}, lan, []string{"192.168.1.20:4242", "10.0.0.5:4242"}},
		{"v6 wildcard", "::", family{v6: true}, lan, []string{"[fd00::20]:4242"}},
		{"dual stack", "::", family{v4: true, v6: true}, lan, []string{"192.168.1.20:4242", "10.0.0.5:4242", "[fd00::20]:4242"}},
		{"only loopback", "0.0.0.0", family{v4: true}, ifs("127.0.0.1/8", "::1/128"), []string{"127.0.0.1:4242"}},
		{"only link-local", "::", family{v6: true}, ifs("fe80::1/64", "::1/128"), []string{"[::1]:4242"}},
		{"nothing", "0.0.0.0", family{v4: true}, nil, []string{}},
	} {
		got := advertised(netip.MustParseAddr(tc.local), 4242, tc.fam, tc.addrs)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: advertised = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestListenNetwork(t *testing.T) {
	for host, want := range map[string]string{
		"127.0.0.1": "udp4", "0.0.0.0": "udp4", "::1": "udp6", "::": "udp6", "": "udp", "localhost": "udp",
		"::ffff:127.0.0.1": "udp4",
	} {
		if got := listenNetwork(host); got != want {
			t.Errorf("listenNetwork(%q) = %q, want %q", host, got, want)
		}
	}
	for _, tc := range []struct {
		network, local string
		want           family
	}{
		{"udp4", "0.0.0.0", family{v4: true}},
		{"udp6", "::", family{v6: true}},
		{"udp", "::", family{v4: true, v6: true}},
		{"udp", "127.0.0.1", family{v4: true}},
		{"udp", "::1", family{v6: true}},
	} {
		if got := socketFamily(tc.network, netip.MustParseAddr(tc.local)); got != tc.want {
			t.Errorf("socketFamily(%s, %s) = %+v, want %+v", tc.network, tc.local, got, tc.want)
		}
	}
}
