// Package rtcsetup is what the programs need to run mesh nodes over
// transport/webrtc: a PeerJS signalling server served over HTTP, opening a
// transport while its server may not be up yet, the checks and ICE address
// filters of the signalling and ICE flags, and a log handler that keeps
// pion's per-connection chatter out of the programs' normal output.
package rtcsetup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/pion/stun/v4"
	pionwebrtc "github.com/pion/webrtc/v4"

	"github.com/distrirender/distrirender/transport/webrtc"
)

// Server is a PeerJS signalling server this process serves over HTTP: an
// embedded mesh's, or a cluster's (--serve-signal).
type Server struct {
	// Addr is the TCP address it listens on.
	Addr net.Addr
	// URL is the URL this process's own nodes use.
	URL string

	sig  *webrtc.SignalServer
	hs   *http.Server
	done chan struct{} // closed when hs.Serve has returned
}

// Serve serves a signalling server on the TCP address addr, with the
// default API key.
func Serve(addr string, log *slog.Logger) (*Server, error) {
	return ServeKey(addr, "", log)
}

// ServeKey serves a signalling server on the TCP address addr whose clients
// must give the API key key ("" means webrtc.DefaultKey, "peerjs").
func ServeKey(addr, key string, log *slog.Logger) (*Server, error) {
	sig, err := webrtc.NewSignalServer(webrtc.SignalConfig{Key: key, Logger: log})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		sig.Close()
		return nil, err
	}
	s := &Server{
		sig: sig,
		hs: &http.Server{
			Handler:           sig,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		Addr: ln.Addr(),
		URL:  signalURL(ln.Addr(), true),
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("signalling server stopped", "err", err)
		}
	}()
	return s, nil
}

// PublicURL is the URL other machines give as --signal: with the host the
// server listens on, or THIS-HOST for every interface.
func (s *Server) PublicURL() string { return signalURL(s.Addr, false) }

// Close disconnects the signalling clients and stops serving.
func (s *Server) Close() {
	s.sig.Close() // the WebSockets are hijacked: the HTTP server does not track them
	s.hs.Close()
	<-s.done
}

// Open opens a webrtc transport. While the signalling server cannot
// be reached (not started yet, restarting) it retries with back-off, until
// ctx ends or, if patience > 0, patience has passed.
func Open(ctx context.Context, cfg webrtc.Config, patience time.Duration, log *slog.Logger) (*webrtc.Transport, error) {
	wctx := ctx
	if patience > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, patience)
		defer cancel()
	}
	backoff := 250 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(wctx, 15*time.Second)
		tr, err := webrtc.New(actx, cfg)
		cancel()
		var unreachable *net.OpError
		if err == nil || !errors.As(err, &unreachable) {
			return tr, err
		}
		log.Info("signalling server not reachable; retrying", "server", cfg.Server, "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-wctx.Done():
			t.Stop()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("no answer within %v: %w", patience, err)
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// signalURL is the http URL of a server listening on addr. An unspecified
// host (every interface) is loopback for local use, and a placeholder
// otherwise.
func signalURL(addr net.Addr, local bool) string {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return "http://" + addr.String() + "/"
	}
	host := ap.Addr().Unmap().String()
	if ap.Addr().IsUnspecified() {
		switch {
		case !local:
			host = "THIS-HOST"
		case ap.Addr().Is4() || ap.Addr().Is4In6():
			host = "127.0.0.1"
		default:
			host = "::1"
		}
	}
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, fmt.Sprint(ap.Port())), Path: "/"}
	return u.String()
}

// CheckSignalURL checks a --signal value.
func CheckSignalURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("--signal %q: want the URL of a PeerJS server, such as http://192.168.1.10:9000/", s)
	}
	switch u.Scheme {
	case "http", "https", "ws", "wss":
		return nil
	}
	return fmt.Errorf("--signal %q: the scheme must be http, https, ws or wss", s)
}

// ClusterICE is the ICE address filter of a cluster node without --ice-net:
// every address but unspecified, multicast and link-local ones, so that
// nodes on a LAN (and nodes on one machine, over loopback) reach each other.
func ClusterICE(ip net.IP) bool {
	return !ip.IsUnspecified() && !ip.IsMulticast() && !ip.IsLinkLocalUnicast()
}

// ParseICENet parses --ice-net: comma-separated CIDR prefixes or IP
// addresses, into the filter of the addresses ICE may use.
func ParseICENet(s string) (func(net.IP) bool, error) {
	var nets []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("--ice-net: %q is not a CIDR prefix (192.168.1.0/24) or an IP address", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		nets = append(nets, p.Masked())
	}
	if len(nets) == 0 {
		return nil, errors.New("--ice-net: no prefix given")
	}
	return func(ip net.IP) bool {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return false
		}
		a = a.Unmap()
		for _, p := range nets {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}, nil
}

// QuietPion wraps h so that it drops pion's records (those with the
// attribute "pion", see transport/webrtc) below Warn: pion's warnings, which
// the transport logs at Info, are about the connectivity checks and closing
// of single connections, which the transport handles and reports itself.
// Programs use it unless asked for verbose logs.
func QuietPion(h slog.Handler) slog.Handler { return quietPion{Handler: h} }

type quietPion struct {
	slog.Handler
	pion bool // the records carry the attribute "pion"
}

func (h quietPion) Enabled(ctx context.Context, l slog.Level) bool {
	return (!h.pion || l >= slog.LevelWarn) && h.Handler.Enabled(ctx, l)
}

func (h quietPion) WithAttrs(as []slog.Attr) slog.Handler {
	pion := h.pion
	for _, a := range as {
		pion = pion || a.Key == "pion"
	}
	return quietPion{h.Handler.WithAttrs(as), pion}
}

func (h quietPion) WithGroup(name string) slog.Handler {
	return quietPion{h.Handler.WithGroup(name), h.pion}
}

// ICEServers turns the --stun and --turn URLs, and the TURN servers'
// username and password, into the transport's ICE servers (Config.ICEServers).
// A --stun URL must have the scheme stun or stuns and a --turn URL turn or
// turns (stun:stun.example.org:3478, turn:turn.example.org:3478?transport=udp);
// a TURN server needs the username and password.
func ICEServers(stunURLs, turnURLs []string, user, password string) ([]pionwebrtc.ICEServer, error) {
	var out []pionwebrtc.ICEServer
	for _, u := range stunURLs {
		if err := checkICEURL("--stun", u, stun.SchemeTypeSTUN, stun.SchemeTypeSTUNS, "stun:stun.example.org:3478"); err != nil {
			return nil, err
		}
		out = append(out, pionwebrtc.ICEServer{URLs: []string{u}})
	}
	for _, u := range turnURLs {
		if err := checkICEURL("--turn", u, stun.SchemeTypeTURN, stun.SchemeTypeTURNS, "turn:turn.example.org:3478?transport=udp"); err != nil {
			return nil, err
		}
		if user == "" || password == "" {
			return nil, fmt.Errorf("--turn %q: a TURN server needs --turn-user and --turn-password", u)
		}
		out = append(out, pionwebrtc.ICEServer{URLs: []string{u}, Username: user, Credential: password})
	}
	if len(turnURLs) == 0 && (user != "" || password != "") {
		return nil, errors.New("--turn-user and --turn-password are for --turn")
	}
	return out, nil
}

// checkICEURL checks that u, given to flag, parses as an ICE server URL of
// one of two schemes.
func checkICEURL(flag, u string, plain, secure stun.SchemeType, example string) error {
	uri, err := stun.ParseURI(u)
	if err != nil {
		return fmt.Errorf("%s %q: %w", flag, u, err)
	}
	if uri.Scheme != plain && uri.Scheme != secure {
		return fmt.Errorf("%s %q: want a %s: or %s: URL, such as %s", flag, u, plain, secure, example)
	}
	return nil
}
