package rtcsetup

import (
	"net"
	"strings"
	"testing"
)

func TestParseICENet(t *testing.T) {
	cases := []struct {
		in      string
		allow   []string
		deny    []string
		wantErr bool
	}{
		{in: "192.168.1.0/24", allow: []string{"192.168.1.7"}, deny: []string{"192.168.2.7", "127.0.0.1"}},
		{in: "10.0.0.5, ::1", allow: []string{"10.0.0.5", "::1", "::ffff:10.0.0.5"}, deny: []string{"10.0.0.6"}},
		{in: "fd00::/8", allow: []string{"fd12::1"}, deny: []string{"fe80::1"}},
		{in: "", wantErr: true},
		{in: " , ", wantErr: true},
		{in: "lan", wantErr: true},
		{in: "fe80::1%eth0", wantErr: true},
	}
	for _, c := range cases {
		f, err := ParseICENet(c.in)
		if (err != nil) != c.wantErr {
			t.Fatalf("ParseICENet(%q): %v, want error %v", c.in, err, c.wantErr)
		}
		for _, a := range c.allow {
			if !f(net.ParseIP(a)) {
				t.Errorf("ParseICENet(%q) refuses %s", c.in, a)
			}
		}
		for _, a := range c.deny {
			if f(net.ParseIP(a)) {
				t.Errorf("ParseICENet(%q) allows %s", c.in, a)
			}
		}
	}
}

func TestCheckSignalURL(t *testing.T) {
	for in, ok := range map[string]bool{
		"http://127.0.0.1:9000/": true,
		"wss://signal.lan/peer/": true,
		"ftp://127.0.0.1/":       false,
		"127.0.0.1:9000":         false,
		"http://":                false,
	} {
		if err := CheckSignalURL(in); (err == nil) != ok {
			t.Errorf("CheckSignalURL(%q) = %v", in, err)
		}
	}
}

func TestSignalURL(t *testing.T) {
	cases := []struct {
		addr          string
		local, public string
	}{
		{"127.0.0.1:9000", "http://127.0.0.1:9000/", "http://127.0.0.1:9000/"},
		{"0.0.0.0:9000", "http://127.0.0.1:9000/", "http://THIS-HOST:9000/"},
		{"[::]:9000", "http://[::1]:9000/", "http://THIS-HOST:9000/"},
	}
	for _, c := range cases {
		a, err := net.ResolveTCPAddr("tcp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := signalURL(a, true); got != c.local {
			t.Errorf("signalURL(%s, local) = %s, want %s", c.addr, got, c.local)
		}
		if got := signalURL(a, false); got != c.public {
			t.Errorf("signalURL(%s, public) = %s, want %s", c.addr, got, c.public)
		}
	}
	if ClusterICE(net.ParseIP("0.0.0.0")) || ClusterICE(net.ParseIP("fe80::1")) || !ClusterICE(net.ParseIP("192.168.1.2")) {
		t.Error("ClusterICE: want every address but unspecified, multicast and link-local")
	}
}

func TestICEServers(t *testing.T) {
	cases := []struct {
		name           string
		stun, turn     []string
		user, password string
		servers        int
		wantErr        string
	}{
		{name: "none"},
		{name: "stun", stun: []string{"stun:stun.example.org:3478", "stuns:stun.example.org"}, servers: 2},
		{name: "turn", turn: []string{"turn:turn.example.org:3478?transport=udp"}, user: "u", password: "p", servers: 1},
		{name: "turn without credentials", turn: []string{"turn:turn.example.org"}, wantErr: "--turn-user"},
		{name: "credentials without turn", user: "u", password: "p", wantErr: "are for --turn"},
		{name: "turn URL as stun", stun: []string{"turn:turn.example.org"}, wantErr: "want a stun"},
		{name: "stun URL as turn", turn: []string{"stun:stun.example.org"}, user: "u", password: "p", wantErr: "want a turn"},
		{name: "http URL", stun: []string{"http://stun.example.org"}, wantErr: "--stun"},
		{name: "no host", stun: []string{"stun:"}, wantErr: "--stun"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ICEServers(c.stun, c.turn, c.user, c.password)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil || len(got) != c.servers {
				t.Fatalf("%d servers, %v; want %d", len(got), err, c.servers)
			}
			for _, s := range got {
				if strings.HasPrefix(s.URLs[0], "turn") && (s.Username != c.user || s.Credential != c.password) {
					t.Errorf("TURN server %+v lacks its credentials", s)
				}
			}
		})
	}
}
