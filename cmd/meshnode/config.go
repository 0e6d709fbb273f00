package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/peterbourgon/ff/v3"
	pionwebrtc "github.com/pion/webrtc/v4"

	"github.com/distrirender/distrirender/internal/rtcsetup"
	"github.com/distrirender/distrirender/internal/secretfile"
	"github.com/distrirender/distrirender/meshapi"
	"github.com/distrirender/distrirender/transport/webrtc"
)

// envPrefix starts the environment variable of every flag: --max-connections
// is MESHNODE_MAX_CONNECTIONS.
const envPrefix = "MESHNODE_"

// envName is the environment variable for flag name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// listFlag is a comma-separated list flag; repeating the flag appends.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// levelFlag is a slog level: debug, info, warn, error (or e.g. "info+2").
type levelFlag struct{ l *slog.Level }

func (f levelFlag) String() string {
	if f.l == nil {
		return "info"
	}
	return strings.ToLower(f.l.String())
}
func (f levelFlag) Set(v string) error { return f.l.UnmarshalText([]byte(v)) }

// Transports of --transport.
const (
	transportQUIC   = "quic"
	transportWebRTC = "webrtc"
)

// runConfig is the daemon's configuration: the flags of `meshnode run`.
type runConfig struct {
	Transport        string
	Listen           string
	Signal           string
	ServeSignal      string
	PeerID           string
	ICENet           listFlag
	Advertise        listFlag
	Join             listFlag
	API              string
	APIAllowHost     listFlag
	Discover         bool
	DiscoverInterval time.Duration
	ID               string
	IDFile           string
	SecretFile       string
	Name             string
	LogLevel         slog.Level
	LogFormat        string
	MaxConnections   int
	MinConnections   int
	JoinTimeout      time.Duration
	ShutdownTimeout  time.Duration
	Pprof            bool
	SignalKey        string
	STUN             listFlag
	TURN             listFlag
	TURNUser         string
	TURNPassword     string

	// given holds the flags set on the command line, in the environment or
	// in the config file (noteGiven); nil when the config was built in code.
	given map[string]bool
	// ice is --ice-net, parsed by validate.
	ice func(net.IP) bool
	// iceServers are --stun and --turn, parsed by validate.
	iceServers []pionwebrtc.ICEServer
}

// noteGiven records the flags of fs that were set, by any source.
func (c *runConfig) noteGiven(fs *flag.FlagSet) {
	c.given = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { c.given[f.Name] = true })
}

// runFlags defines the flags of `meshnode run` on fs, with their defaults.
func runFlags(fs *flag.FlagSet, c *runConfig) {
	fs.StringVar(&c.Transport, "transport", transportQUIC, "`KIND` of transport: quic, or webrtc (data channels, signalled through a PeerJS server: see --signal)")
	fs.StringVar(&c.Listen, "listen", "0.0.0.0:4242", "`HOST:PORT` of the QUIC (UDP) socket; 0.0.0.0 advertises every interface address")
	fs.StringVar(&c.Signal, "signal", "", "webrtc: `URL` of the PeerJS signalling server every node of the mesh uses, http://HOST:PORT/ (default: the one --serve-signal serves)")
	fs.StringVar(&c.ServeSignal, "serve-signal", "", "webrtc: serve the mesh's PeerJS signalling server in this daemon, on TCP `HOST:PORT` (e.g. 0.0.0.0:9000); the other nodes give --signal http://ITS-ADDRESS:PORT/")
	fs.StringVar(&c.PeerID, "peer-id", "", "webrtc: this node's `NAME` on the signalling server, which is its address (--join, connect): letters and digits, with - or _ between (default: the node's UUID)")
	fs.StringVar(&c.SignalKey, "signal-key", "", "webrtc: the PeerJS server's API `KEY`, which every node of the mesh and the --serve-signal server use (default \"peerjs\")")
	fs.Var(&c.STUN, "stun", "webrtc: STUN servers for NAT traversal, `URL[,...]`, e.g. stun:stun.example.org:3478 (default: none, host candidates only, which suits a LAN)")
	fs.Var(&c.TURN, "turn", "webrtc: TURN relays, `URL[,...]`, e.g. turn:turn.example.org:3478?transport=udp; they need --turn-user and --turn-password")
	fs.StringVar(&c.TURNUser, "turn-user", "", "webrtc: the `NAME` to give the --turn servers")
	fs.StringVar(&c.TURNPassword, "turn-password", "", "webrtc: the `SECRET` to give the --turn servers (better set as MESHNODE_TURN_PASSWORD or in the config file than on the command line)")
	fs.Var(&c.ICENet, "ice-net", "webrtc: the networks whose addresses the data channels may use, `CIDR[,...]`, e.g. 192.168.1.0/24 (default: every address but link-local ones)")
	fs.Var(&c.Advertise, "advertise", "`HOST:PORT[,...]` to advertise to other nodes instead of the listen socket's addresses (NAT, multi-homed hosts)")
	fs.Var(&c.Join, "join", "`ADDR[,...]` of nodes to join through (quic: HOST:PORT; webrtc: peer IDs), tried in turn and retried with back-off until one accepts")
	fs.StringVar(&c.API, "api", "127.0.0.1:7070", "`HOST:PORT` of the HTTP JSON API (unauthenticated: keep it on loopback); empty to disable")
	fs.Var(&c.APIAllowHost, "api-allow-host", "`NAME[,...]` host names the API answers to besides IP addresses and localhost (DNS rebinding protection); * for any")
	fs.BoolVar(&c.Discover, "discover", false, "find other nodes on the LAN by mDNS (_distrirender._udp) and announce this one")
	fs.DurationVar(&c.DiscoverInterval, "discover-interval", 10*time.Second, "how often to browse mDNS with --discover")
	fs.StringVar(&c.ID, "id", "", "this node's `UUID` (default: random at every start, or kept in --id-file)")
	fs.StringVar(&c.IDFile, "id-file", "", "`PATH` of a file holding the node's UUID; created with a random one if missing")
	fs.StringVar(&c.SecretFile, "secret-file", "", "`PATH` of the cluster's secrets, one per line (the first proves this node, all are accepted: rotation); with it only nodes holding a secret join, and the node's UUID comes from its identity key, kept in --id-file's path + .key (docs/SECURITY.md)")
	fs.StringVar(&c.Name, "name", "", "this node's human `NAME`, advertised to the mesh and shown by status, topology and the page; send takes it instead of the UUID when it is unique (at most 64 bytes, no control characters)")
	c.LogLevel = slog.LevelInfo
	fs.Var(levelFlag{&c.LogLevel}, "log-level", "log `LEVEL`: debug, info, warn or error (default info)")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log `FORMAT`: text or json")
	fs.IntVar(&c.MaxConnections, "max-connections", 10, "most neighbours this node accepts")
	fs.IntVar(&c.MinConnections, "min-connections", 5, "neighbours the node keeps by dialling the farthest nodes (0: only the edges it is given)")
	fs.DurationVar(&c.JoinTimeout, "join-timeout", 10*time.Second, "bound of one attempt to join through one address")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 5*time.Second, "bound of the graceful shutdown of the HTTP API")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve the Go runtime profiles on the API under /debug/pprof/ (they reveal memory contents and cost CPU: keep the API on loopback)")
}

// validate checks what the flag types do not.
func (c *runConfig) validate() error {
	switch c.Transport {
	case "", transportQUIC:
		if c.Listen == "" {
			return errors.New("--listen is required")
		}
		if c.Signal != "" || c.ServeSignal != "" || c.PeerID != "" || len(c.ICENet) > 0 || c.SignalKey != "" ||
			len(c.STUN) > 0 || len(c.TURN) > 0 || c.TURNUser != "" || c.TURNPassword != "" {
			return errors.New("--signal, --serve-signal, --signal-key, --peer-id, --ice-net, --stun and --turn are for --transport webrtc")
		}
	case transportWebRTC:
		if err := c.validateWebRTC(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("--transport %q: want quic or webrtc", c.Transport)
	}
	if c.ID != "" && c.IDFile != "" {
		return errors.New("give --id or --id-file, not both")
	}
	if c.ID != "" && c.SecretFile != "" {
		return errors.New("with --secret-file the UUID comes from the identity key: give --id-file, not --id")
	}
	if c.ID != "" {
		if _, err := parseID(c.ID); err != nil {
			return fmt.Errorf("--id: %w", err)
		}
	}
	if err := meshapi.CheckName(c.Name); err != nil {
		return fmt.Errorf("--name %q: %w", c.Name, err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", c.LogFormat)
	}
	if c.MaxConnections < 1 || c.MaxConnections > 1024 {
		return fmt.Errorf("--max-connections %d: want 1 to 1024", c.MaxConnections)
	}
	if c.MinConnections < 0 || c.MinConnections > 1024 {
		return fmt.Errorf("--min-connections %d: want 0 to 1024", c.MinConnections)
	}
	if c.DiscoverInterval < time.Second {
		return fmt.Errorf("--discover-interval %v: want at least 1s", c.DiscoverInterval)
	}
	if c.JoinTimeout <= 0 || c.ShutdownTimeout <= 0 {
		return errors.New("--join-timeout and --shutdown-timeout must be positive")
	}
	return nil
}

// validateWebRTC checks the flags of --transport webrtc.
func (c *runConfig) validateWebRTC() error {
	if c.Signal == "" && c.ServeSignal == "" {
		return errors.New("--transport webrtc needs a PeerJS signalling server: --signal URL of a running one, or --serve-signal HOST:PORT to serve one")
	}
	if c.given["listen"] {
		return errors.New("--listen is for quic: a webrtc node is reached by its peer ID (--peer-id, default its UUID) through the signalling server")
	}
	if len(c.Advertise) > 0 {
		return errors.New("--advertise is for quic: a webrtc node's address is its peer ID (--peer-id)")
	}
	if c.Discover {
		return errors.New("--discover (mDNS) is for quic: webrtc nodes find each other through the signalling server; --join a peer ID")
	}
	if c.Signal != "" {
		if err := rtcsetup.CheckSignalURL(c.Signal); err != nil {
			return err
		}
	}
	if c.ServeSignal != "" {
		if _, _, err := net.SplitHostPort(c.ServeSignal); err != nil {
			return fmt.Errorf("--serve-signal %q: want HOST:PORT, such as 0.0.0.0:9000", c.ServeSignal)
		}
	}
	if c.PeerID != "" && !webrtc.ValidID(c.PeerID) {
		return fmt.Errorf("--peer-id %q: want letters and digits, with single -, _ or spaces between them (at most 128 bytes)", c.PeerID)
	}
	for _, j := range c.Join {
		if !webrtc.ValidID(j) {
			return fmt.Errorf("--join %q is not a PeerJS peer ID: with --transport webrtc, give the nodes' peer IDs (their --peer-id, or UUID), and the server's URL as --signal", j)
		}
	}
	servers, err := rtcsetup.ICEServers(c.STUN, c.TURN, c.TURNUser, c.TURNPassword)
	if err != nil {
		return err
	}
	c.iceServers = servers
	c.ice = rtcsetup.ClusterICE
	if len(c.ICENet) > 0 {
		f, err := rtcsetup.ParseICENet(strings.Join(c.ICENet, ","))
		if err != nil {
			return err
		}
		c.ice = f
	}
	return nil
}

// checkAddrs checks the addresses of the flags, so that a mistake exits 2
// at once rather than failing later or being retried forever. validate
// comes first; the daemon's in-process tests, whose memory transport takes
// any name, skip this.
func (c *runConfig) checkAddrs() error {
	if c.API != "" {
		if err := checkHostPort(c.API, true); err != nil {
			return fmt.Errorf("--api %q: %w", c.API, err)
		}
	}
	if c.Transport == transportWebRTC {
		return nil // peer IDs and URLs, which validate checked
	}
	if err := checkHostPort(c.Listen, true); err != nil {
		return fmt.Errorf("--listen %q: %w", c.Listen, err)
	}
	for _, a := range c.Advertise {
		if err := checkHostPort(a, false); err != nil {
			return fmt.Errorf("--advertise %q: %w", a, err)
		}
	}
	for _, j := range c.Join {
		if err := checkHostPort(j, false); err != nil {
			return fmt.Errorf("--join %q: %w", j, err)
		}
	}
	return nil
}

// checkHostPort checks a HOST:PORT address. A listening address (listen)
// may leave the host empty (every interface) and take port 0 (any free
// one); an address to dial may not.
func checkHostPort(addr string, listen bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want HOST:PORT, such as 192.168.1.10:4242")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	switch {
	case err != nil:
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	case !listen && p == 0:
		return errors.New("port 0 cannot be dialled")
	case !listen && host == "":
		return errors.New("the host is missing")
	case strings.ContainsAny(host, " /"):
		return fmt.Errorf("%q is not a host name or IP address", host)
	}
	return nil
}

func parseID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(strings.TrimSpace(s))
	if err != nil {
		return uuid.Nil, err
	}
	if id == uuid.Nil {
		return uuid.Nil, errors.New("the nil UUID is not a node ID")
	}
	return id, nil
}

// resolveID returns the node's ID: --id, or the one in --id-file (made and
// saved if the file does not exist), or uuid.Nil for a fresh random one.
func resolveID(c *runConfig) (uuid.UUID, error) {
	if c.ID != "" {
		return parseID(c.ID)
	}
	if c.IDFile == "" {
		return uuid.Nil, nil
	}
	b, err := os.ReadFile(c.IDFile)
	if err == nil {
		id, err := parseID(string(b))
		if err != nil {
			return uuid.Nil, fmt.Errorf("--id-file %s: %w", c.IDFile, err)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return uuid.Nil, fmt.Errorf("--id-file: %w", err)
	}
	id, err := uuid.NewRandom()
	if err != nil {
		return uuid.Nil, err
	}
	if err := secretfile.WriteAtomic(c.IDFile, []byte(id.String()+"\n")); err != nil {
		return uuid.Nil, fmt.Errorf("--id-file: %w", err)
	}
	return id, nil
}

// clientFlags are the flags of the client commands that `meshnode run`
// does not have; config files and the environment may hold them too.
func clientFlags() []string { return []string{"json", "events"} }

// knownEnv returns the environment variables meshnode reads: one per flag
// of every command.
func knownEnv() map[string]bool {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	runFlags(fs, &runConfig{})
	known := map[string]bool{envName("config"): true}
	fs.VisitAll(func(f *flag.Flag) { known[envName(f.Name)] = true })
	for _, name := range clientFlags() {
		known[envName(name)] = true
	}
	return known
}

// unknownEnv returns a warning for every MESHNODE_ variable in env (as
// os.Environ returns it) that names no setting, with the closest setting
// when one is a likely typo.
func unknownEnv(env []string) []string {
	known := knownEnv()
	var warnings []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || known[name] {
			continue
		}
		w := fmt.Sprintf("ignoring %s: meshnode has no such setting", name)
		best, bestD := "", 3 // suggest at most two edits away
		for k := range known {
			if d := editDistance(name, k); d < bestD || d == bestD && k < best {
				best, bestD = k, d
			}
		}
		if best != "" {
			w += " (did you mean " + best + "?)"
		}
		warnings = append(warnings, w)
	}
	slices.Sort(warnings)
	return warnings
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// loadConfig sets the flags of fs from the command line args, then every
// flag not given there from the environment env (MESHNODE_<NAME>; an empty
// variable counts as unset), then every flag set by neither from the JSON
// config file named by --config or MESHNODE_CONFIG, which
// github.com/peterbourgon/ff reads. So the precedence is flag > environment
// > file > default. Keys of the file are flag names; an unknown key is an
// error unless ignoreUnknownKeys (the clients, which read the daemon's file
// for its "api" key). It returns the positional arguments.
//
// The environment is passed in rather than read by ff, so that tests can run
// daemons with different environments in one process.
func loadConfig(fs *flag.FlagSet, args, env []string, ignoreUnknownKeys bool) ([]string, error) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, err
	}
	onCmdline := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCmdline[f.Name] = true })
	vars := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, envPrefix) {
			vars[k] = v
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if v := vars[envName(f.Name)]; v != "" && !onCmdline[f.Name] {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// ff sees the flags set so far as given, and fills only the others.
	err = ff.Parse(fs, nil,
		ff.WithConfigFileFlag("config"),
		ff.WithConfigFileParser(ff.JSONParser),
		ff.WithIgnoreUndefined(ignoreUnknownKeys))
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", fs.Lookup("config").Value, err)
	}
	return pos, nil
}

// parseArgs parses args with fs, allowing flags after positional arguments
// (`meshnode send ID TEXT --json`); "--" ends the flags.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// fs.Parse stops at the first non-flag, or after "--".
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
