package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/rtcsetup"
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
	LogLevel         slog.Level
	LogFormat        string
	MaxConnections   int
	MinConnections   int
	JoinTimeout      time.Duration
	ShutdownTimeout  time.Duration
	Pprof            bool

	// given holds the flags set on the command line, in the environment or
	// in the config file (noteGiven); nil when the config was built in code.
	given map[string]bool
	// ice is --ice-net, parsed by validate.
	ice func(net.IP) bool
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
	fs.Var(&c.ICENet, "ice-net", "webrtc: the networks whose addresses the data channels may use, `CIDR[,...]`, e.g. 192.168.1.0/24 (default: every address but link-local ones)")
	fs.Var(&c.Advertise, "advertise", "`HOST:PORT[,...]` to advertise to other nodes instead of the listen socket's addresses (NAT, multi-homed hosts)")
	fs.Var(&c.Join, "join", "`ADDR[,...]` of nodes to join through (quic: HOST:PORT; webrtc: peer IDs), tried in turn and retried with back-off until one accepts")
	fs.StringVar(&c.API, "api", "127.0.0.1:7070", "`HOST:PORT` of the HTTP JSON API (unauthenticated: keep it on loopback); empty to disable")
	fs.Var(&c.APIAllowHost, "api-allow-host", "`NAME[,...]` host names the API answers to besides IP addresses and localhost (DNS rebinding protection); * for any")
	fs.BoolVar(&c.Discover, "discover", false, "find other nodes on the LAN by mDNS (_distrirender._udp) and announce this one")
	fs.DurationVar(&c.DiscoverInterval, "discover-interval", 10*time.Second, "how often to browse mDNS with --discover")
	fs.StringVar(&c.ID, "id", "", "this node's `UUID` (default: random at every start, or kept in --id-file)")
	fs.StringVar(&c.IDFile, "id-file", "", "`PATH` of a file holding the node's UUID; created with a random one if missing")
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
		if c.Signal != "" || c.ServeSignal != "" || c.PeerID != "" || len(c.ICENet) > 0 {
			return errors.New("--signal, --serve-signal, --peer-id and --ice-net are for --transport webrtc")
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
	if c.ID != "" {
		if _, err := parseID(c.ID); err != nil {
			return fmt.Errorf("--id: %w", err)
		}
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
	if err := writeFileAtomic(c.IDFile, []byte(id.String()+"\n")); err != nil {
		return uuid.Nil, fmt.Errorf("--id-file: %w", err)
	}
	return id, nil
}

// writeFileAtomic writes b to path through a temporary file and a rename,
// so that a crash leaves either no file or the whole one.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".meshnode-id-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// allKeys are the keys a config file may hold: the flags of `meshnode run`
// plus the clients' "json" and "events".
func allKeys() []string {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	runFlags(fs, &runConfig{})
	var keys []string
	fs.VisitAll(func(f *flag.Flag) { keys = append(keys, f.Name) })
	return append(keys, "json", "events")
}

// applySources gives every flag that was not set on the command line its
// value from the environment (MESHNODE_<NAME>, ignored when empty) or else
// from the config file (named by --config or MESHNODE_CONFIG). So the
// precedence is: flag > environment > file > default.
func applySources(fs *flag.FlagSet, getenv func(string) string) error {
	onCmdline := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCmdline[f.Name] = true })

	path := ""
	if f := fs.Lookup("config"); f != nil {
		path = f.Value.String()
		if !onCmdline["config"] {
			path = getenv(envName("config"))
		}
	}
	var file map[string]string
	if path != "" {
		var err error
		if file, err = readConfigFile(path); err != nil {
			return err
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if onCmdline[f.Name] || f.Name == "config" {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %s = %q: %w", path, f.Name, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

// readConfigFile reads a config file: a JSON object, or lines of
// key = value with # comments. Keys are flag names ("max-connections";
// "max_connections" is accepted too). A list may be a JSON array or a
// comma-separated string. Unknown keys are an error, so that a typo does not
// go unnoticed.
func readConfigFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var kv map[string]string
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		kv, err = parseJSONConfig(t)
	} else {
		kv, err = parseKVConfig(bytes.NewReader(b))
	}
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	known := allKeys()
	for k := range kv {
		if !slices.Contains(known, k) {
			return nil, fmt.Errorf("config file %s: unknown key %q", path, k)
		}
	}
	return kv, nil
}

func normKey(k string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimSpace(k)), "_", "-")
}

func parseJSONConfig(b []byte) (map[string]string, error) {
	var raw map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	kv := map[string]string{}
	for k, v := range raw {
		var s string
		switch v := v.(type) {
		case string:
			s = v
		case bool:
			s = strconv.FormatBool(v)
		case json.Number:
			s = v.String()
		case []any:
			parts := make([]string, 0, len(v))
			for _, e := range v {
				es, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("key %q: list items must be strings", k)
				}
				parts = append(parts, es)
			}
			s = strings.Join(parts, ",")
		case nil:
			continue
		default:
			return nil, fmt.Errorf("key %q: want a string, number, boolean or list of strings", k)
		}
		kv[normKey(k)] = s
	}
	return kv, nil
}

func parseKVConfig(r io.Reader) (map[string]string, error) {
	kv := map[string]string{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if t == "" || t[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want key = value", line)
		}
		k, v = normKey(k), strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		if k == "" {
			return nil, fmt.Errorf("line %d: empty key", line)
		}
		if _, dup := kv[k]; dup {
			return nil, fmt.Errorf("line %d: %q given twice", line, k)
		}
		kv[k] = v
	}
	return kv, sc.Err()
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
