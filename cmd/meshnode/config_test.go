package main

import (
	"bytes"
	"context"
	"flag"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// parseRun parses a `meshnode run` command line with env and returns the
// resulting config.
func parseRun(t *testing.T, args []string, env map[string]string) (runConfig, error) {
	t.Helper()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(&bytes.Buffer{})
	var c runConfig
	fs.String("config", "", "")
	runFlags(fs, &c)
	_, err := loadConfig(fs, args, environ(env), false)
	c.noteGiven(fs)
	return c, err
}

// environ turns env into the form of os.Environ.
func environ(env map[string]string) []string {
	var out []string
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigPrecedence(t *testing.T) {
	js := writeFile(t, "meshnode.json", `{"listen": "10.0.0.1:5000", "api": "127.0.0.1:8000",
		"join": ["10.0.0.2:4242", "10.0.0.3:4242"], "max-connections": 7, "log-level": "debug", "discover": true, "name": "alpha"}`)
	// A list may also be one comma-separated string, a number a string.
	js2 := writeFile(t, "meshnode2.json", `{"listen": "10.0.0.1:5000", "api": "127.0.0.1:8000",
		"join": "10.0.0.2:4242, 10.0.0.3:4242", "max-connections": "7", "log-level": "debug", "discover": "true", "name": "alpha"}`)
	for _, file := range []string{js, js2} {
		t.Run(filepath.Ext(file), func(t *testing.T) {
			cases := []struct {
				name string
				args []string
				env  map[string]string
				want func(c runConfig) bool
			}{
				{"defaults", nil, nil, func(c runConfig) bool {
					return c.Listen == "0.0.0.0:4242" && c.API == "127.0.0.1:7070" && c.MaxConnections == 10 &&
						c.LogLevel == slog.LevelInfo && !c.Discover && len(c.Join) == 0 && c.DiscoverInterval == 10*time.Second
				}},
				{"file", []string{"--config", file}, nil, func(c runConfig) bool {
					return c.Listen == "10.0.0.1:5000" && c.API == "127.0.0.1:8000" && c.MaxConnections == 7 &&
						c.LogLevel == slog.LevelDebug && c.Discover && slices.Equal(c.Join, []string{"10.0.0.2:4242", "10.0.0.3:4242"}) &&
						c.Name == "alpha" && c.MinConnections == 5 // not in the file: default
				}},
				{"file named by env", nil, map[string]string{"MESHNODE_CONFIG": file}, func(c runConfig) bool {
					return c.Listen == "10.0.0.1:5000"
				}},
				{"env over file", []string{"--config", file}, map[string]string{
					"MESHNODE_LISTEN": "10.9.9.9:1", "MESHNODE_JOIN": "a:1", "MESHNODE_DISCOVER": "false", "MESHNODE_MAX_CONNECTIONS": "3",
					"MESHNODE_NAME": "beta gamma",
				}, func(c runConfig) bool {
					return c.Listen == "10.9.9.9:1" && slices.Equal(c.Join, []string{"a:1"}) && !c.Discover && c.MaxConnections == 3 &&
						c.Name == "beta gamma" &&
						c.API == "127.0.0.1:8000" // from the file still
				}},
				{"empty env is unset", []string{"--config", file}, map[string]string{"MESHNODE_LISTEN": ""}, func(c runConfig) bool {
					return c.Listen == "10.0.0.1:5000"
				}},
				{"flag over env and file", []string{"--config", file, "--listen", "1.2.3.4:5", "--join=b:2", "--join", "c:3,d:4", "--discover=false"},
					map[string]string{"MESHNODE_LISTEN": "10.9.9.9:1", "MESHNODE_JOIN": "a:1"}, func(c runConfig) bool {
						return c.Listen == "1.2.3.4:5" && slices.Equal(c.Join, []string{"b:2", "c:3", "d:4"}) && !c.Discover && c.MaxConnections == 7
					}},
				{"env without file", nil, map[string]string{"MESHNODE_API": "127.0.0.1:1", "MESHNODE_LOG_FORMAT": "json", "MESHNODE_DISCOVER_INTERVAL": "3s"},
					func(c runConfig) bool {
						return c.API == "127.0.0.1:1" && c.LogFormat == "json" && c.DiscoverInterval == 3*time.Second && c.Listen == "0.0.0.0:4242"
					}},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					c, err := parseRun(t, tc.args, tc.env)
					if err != nil {
						t.Fatal(err)
					}
					if err := c.validate(); err != nil {
						t.Fatal(err)
					}
					if !tc.want(c) {
						t.Errorf("config %+v", c)
					}
				})
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		file string // config file content, if any
		want string // substring of the error
	}{
		{"unknown flag", []string{"--nope"}, nil, "", "not defined"},
		{"bad env int", nil, map[string]string{"MESHNODE_MAX_CONNECTIONS": "many"}, "", "MESHNODE_MAX_CONNECTIONS"},
		{"bad env bool", nil, map[string]string{"MESHNODE_DISCOVER": "perhaps"}, "", "MESHNODE_DISCOVER"},
		{"bad env level", nil, map[string]string{"MESHNODE_LOG_LEVEL": "loud"}, "", "MESHNODE_LOG_LEVEL"},
		{"the old key = value format", nil, nil, "listen = a:1\n", "invalid character"},
		{"bad file value", nil, nil, `{"max-connections": "lots"}`, "max-connections"},
		{"bad JSON", nil, nil, `{"listen": }`, "invalid character"},
		{"JSON unknown key", nil, nil, `{"listn": "a:1"}`, `"listn" not defined`},
		{"JSON underscore key", nil, nil, `{"max_connections": 3}`, `"max_connections" not defined`},
		{"JSON object value", nil, nil, `{"listen": {"host": "a"}}`, `"listen.host" not defined`},
		{"missing file", []string{"--config", "/nonexistent/meshnode.json"}, nil, "", "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append(args, "--config", writeFile(t, "c", tc.file))
			}
			_, err := parseRun(t, args, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--id", uuid.NewString(), "--id-file", "x"}, "not both"},
		{[]string{"--id", "not-a-uuid"}, "--id"},
		{[]string{"--id", uuid.Nil.String()}, "nil UUID"},
		{[]string{"--log-format", "xml"}, "--log-format"},
		{[]string{"--name", strings.Repeat("é", 33)}, "66 bytes: want at most 64"},
		{[]string{"--name", "a\nb"}, "control characters"},
		{[]string{"--name", "a\x00"}, "control characters"},
		{[]string{"--name", "\xff"}, "not UTF-8"},
		{[]string{"--name", " alpha"}, "leading or trailing spaces"},
		{[]string{"--max-connections", "0"}, "--max-connections"},
		{[]string{"--min-connections", "-1"}, "--min-connections"},
		{[]string{"--listen", ""}, "--listen"},
		{[]string{"--discover-interval", "10ms"}, "--discover-interval"},
		{[]string{"--transport", "carrier-pigeon"}, "--transport"},
		{[]string{"--signal", "http://127.0.0.1:9000/"}, "for --transport webrtc"},
		{[]string{"--peer-id", "alpha"}, "for --transport webrtc"},
		{[]string{"--transport", "webrtc"}, "needs a PeerJS signalling server"},
		{[]string{"--transport", "webrtc", "--signal", "http://h:9000/", "--listen", "0.0.0.0:4242"}, "--listen is for quic"},
		{[]string{"--transport", "webrtc", "--signal", "http://h:9000/", "--advertise", "10.0.0.1:4242"}, "--advertise is for quic"},
		{[]string{"--transport", "webrtc", "--signal", "http://h:9000/", "--discover"}, "--discover (mDNS) is for quic"},
		{[]string{"--transport", "webrtc", "--signal", "http://h:9000/", "--join", "alpha,10.0.0.1:4242"}, `--join "10.0.0.1:4242" is not a PeerJS peer ID`},
		{[]string{"--transport", "webrtc", "--signal", "h:9000"}, "--signal"},
		{[]string{"--transport", "webrtc", "--signal", "ftp://h:9000/"}, "scheme"},
		{[]string{"--transport", "webrtc", "--serve-signal", "9000"}, "--serve-signal"},
		{[]string{"--transport", "webrtc", "--serve-signal", ":9000", "--peer-id", "a/b"}, "--peer-id"},
		{[]string{"--transport", "webrtc", "--serve-signal", ":9000", "--ice-net", "10.0.0.0/8,300.0.0.0/8"}, "--ice-net"},
	}
	for _, tc := range cases {
		c, err := parseRun(t, tc.args, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	// --listen with webrtc is refused from any source, not only the command line.
	c, err := parseRun(t, []string{"--transport", "webrtc", "--serve-signal", ":9000"}, map[string]string{"MESHNODE_LISTEN": "0.0.0.0:1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "--listen") {
		t.Errorf("MESHNODE_LISTEN with webrtc: %v", err)
	}
}

// TestConfigWebRTC sets the webrtc flags from a config file, the
// environment and the command line.
func TestConfigWebRTC(t *testing.T) {
	js := writeFile(t, "meshnode.json", `{"transport": "webrtc", "signal": "http://192.168.1.10:9000/", "peer-id": "beta",
		"join": ["alpha", "gamma"], "ice-net": ["192.168.1.0/24", "10.0.0.0/8"], "signal-key": "k3y",
		"stun": ["stun:stun.example.org:3478"], "turn": "turn:turn.example.org:3478?transport=udp",
		"turn-user": "u", "turn-password": "p"}`)
	for _, file := range []string{js} {
		c, err := parseRun(t, []string{"--config", file}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.validate(); err != nil {
			t.Fatal(err)
		}
		if c.Transport != "webrtc" || c.Signal != "http://192.168.1.10:9000/" || c.PeerID != "beta" ||
			!slices.Equal(c.Join, []string{"alpha", "gamma"}) || !slices.Equal(c.ICENet, []string{"192.168.1.0/24", "10.0.0.0/8"}) ||
			c.SignalKey != "k3y" || len(c.iceServers) != 2 || c.iceServers[1].Username != "u" {
			t.Errorf("%s: config %+v", file, c)
		}
		if !c.ice(net.ParseIP("10.1.2.3")) || !c.ice(net.ParseIP("192.168.1.7")) || c.ice(net.ParseIP("127.0.0.1")) || c.ice(net.ParseIP("192.168.2.1")) {
			t.Errorf("%s: --ice-net filter wrong", file)
		}
	}
	c, err := parseRun(t, []string{"--config", js, "--peer-id", "delta"}, map[string]string{
		"MESHNODE_SERVE_SIGNAL": "0.0.0.0:9000", "MESHNODE_SIGNAL": "http://127.0.0.1:9000/", "MESHNODE_PEER_ID": "epsilon", "MESHNODE_ICE_NET": "127.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if c.ServeSignal != "0.0.0.0:9000" || c.Signal != "http://127.0.0.1:9000/" || c.PeerID != "delta" || !slices.Equal(c.ICENet, []string{"127.0.0.1"}) {
		t.Errorf("env and flag over file: %+v", c)
	}
	if !c.ice(net.ParseIP("127.0.0.1")) || c.ice(net.ParseIP("127.0.0.2")) {
		t.Error("--ice-net 127.0.0.1 is not that one address")
	}
	// Without --ice-net, every address but link-local ones.
	c, err = parseRun(t, []string{"--transport", "webrtc", "--serve-signal", ":9000"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]bool{"192.168.1.7": true, "127.0.0.1": true, "2001:db8::1": true, "169.254.1.1": false, "fe80::1": false} {
		if got := c.ice(net.ParseIP(ip)); got != want {
			t.Errorf("default ICE filter(%s) = %v", ip, got)
		}
	}
}

func TestParseArgsInterspersed(t *testing.T) {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "")
	api := fs.String("api", "", "")
	pos, err := parseArgs(fs, []string{"ID", "--json", "some text", "--api", "h:1", "--", "--not-a-flag"})
	if err != nil {
		t.Fatal(err)
	}
	if !*asJSON || *api != "h:1" || !slices.Equal(pos, []string{"ID", "some text", "--not-a-flag"}) {
		t.Errorf("json %v api %q pos %q", *asJSON, *api, pos)
	}
}

func TestIDFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "node-id")
	c := &runConfig{IDFile: path}
	id, err := resolveID(c)
	if err != nil || id == uuid.Nil {
		t.Fatalf("first start: %v, %v", id, err)
	}
	again, err := resolveID(c)
	if err != nil || again != id {
		t.Fatalf("restart: %v, %v; want %v", again, err, id)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("id file: %v, %v", fi, err)
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := resolveID(c); err == nil {
		t.Error("a garbled id file was accepted")
	}
	fixed := uuid.New()
	if id, err := resolveID(&runConfig{ID: fixed.String()}); err != nil || id != fixed {
		t.Errorf("--id: %v, %v", id, err)
	}
	if id, err := resolveID(&runConfig{}); err != nil || id != uuid.Nil {
		t.Errorf("no id: %v, %v", id, err)
	}
}

func TestUsageExitCodes(t *testing.T) {
	cases := []struct {
		args []string
		code int
	}{
		{nil, exitUsage},
		{[]string{"frobnicate"}, exitUsage},
		{[]string{"help"}, exitOK},
		{[]string{"--version"}, exitOK},
		{[]string{"version"}, exitOK},
		{[]string{"run", "-h"}, exitOK},
		{[]string{"run", "--max-connections", "0"}, exitUsage},
		{[]string{"run", "extra"}, exitUsage},
		{[]string{"run", "--name", strings.Repeat("x", 65)}, exitUsage},
		{[]string{"run", "--transport", "webrtc", "--join", "10.0.0.1:4242"}, exitUsage},
		{[]string{"send", "only-one-arg"}, exitUsage},
		// Bad addresses exit 2 before anything starts.
		{[]string{"run", "--join", "nonsense"}, exitUsage},
		{[]string{"run", "--join", "10.0.0.1:0"}, exitUsage},
		{[]string{"run", "--listen", "0.0.0.0:99999"}, exitUsage},
		{[]string{"run", "--api", "localhost"}, exitUsage},
		{[]string{"run", "--advertise", ":4242"}, exitUsage},
		{[]string{"run", "--transport", "webrtc", "--serve-signal", "127.0.0.1:0", "--stun", "http://stun.example.org"}, exitUsage},
		{[]string{"run", "--transport", "webrtc", "--serve-signal", "127.0.0.1:0", "--turn", "turn:turn.example.org"}, exitUsage},
		{[]string{"run", "--stun", "stun:stun.example.org"}, exitUsage}, // quic
		{[]string{"status", "--api", "127.0.0.1:1"}, exitError},         // nothing listens on port 1
	}
	for _, tc := range cases {
		var out, errb bytes.Buffer
		code := realMain(context.Background(), tc.args, strings.NewReader(""), &out, &errb, nil)
		if code != tc.code {
			t.Errorf("%q: exit %d, want %d; stderr %s", tc.args, code, tc.code, errb.String())
		}
	}
}

func TestCheckAddrs(t *testing.T) {
	cases := []struct {
		args []string
		want string // "" for no error
	}{
		{[]string{"--listen", ":4242", "--join", "10.0.0.1:4242,host.lan:1", "--advertise", "[2001:db8::1]:4242"}, ""},
		{[]string{"--listen", "0.0.0.0:0", "--api", ""}, ""},
		{[]string{"--join", "nonsense"}, `--join "nonsense": want HOST:PORT`},
		{[]string{"--join", ":4242"}, "host is missing"},
		{[]string{"--join", "10.0.0.1:http"}, "not a number"},
		{[]string{"--join", "10.0.0.1:0"}, "port 0"},
		{[]string{"--listen", "0.0.0.0:65536"}, "--listen"},
		{[]string{"--api", "7070"}, "--api"},
		{[]string{"--advertise", "a b:1"}, "not a host name"},
		{[]string{"--transport", "webrtc", "--serve-signal", ":9000", "--join", "alpha"}, ""},
	}
	for _, tc := range cases {
		c, err := parseRun(t, tc.args, nil)
		if err == nil {
			err = c.validate()
		}
		if err == nil {
			err = c.checkAddrs()
		}
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestUnknownEnv(t *testing.T) {
	cases := []struct {
		env  []string
		want []string
	}{
		{[]string{"MESHNODE_LISTEN=a:1", "MESHNODE_API=", "MESHNODE_JSON=1", "MESHNODE_CONFIG=x", "HOME=/root"}, nil},
		{[]string{"MESHNODE_LISTN=a:1"}, []string{"ignoring MESHNODE_LISTN: meshnode has no such setting (did you mean MESHNODE_LISTEN?)"}},
		{[]string{"MESHNODE_FROBNICATE=1"}, []string{"ignoring MESHNODE_FROBNICATE: meshnode has no such setting"}},
		{[]string{"MESHNODE_MAX_CONNECTION=3", "MESHNODE_JOINS=b"}, []string{
			"ignoring MESHNODE_JOINS: meshnode has no such setting (did you mean MESHNODE_JOIN?)",
			"ignoring MESHNODE_MAX_CONNECTION: meshnode has no such setting (did you mean MESHNODE_MAX_CONNECTIONS?)",
		}},
	}
	for _, tc := range cases {
		if got := unknownEnv(tc.env); !slices.Equal(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.env, got, tc.want)
		}
	}
	// realMain prints them, and goes on.
	var out, errb bytes.Buffer
	if code := realMain(context.Background(), []string{"help"}, nil, &out, &errb, []string{"MESHNODE_LISTN=a:1"}); code != exitOK ||
		!strings.Contains(errb.String(), "warning: ignoring MESHNODE_LISTN") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

// TestContribConfig checks that the example config of contrib/systemd is
// one meshnode accepts, and that the unit, the licence and the changelog
// are there.
func TestContribConfig(t *testing.T) {
	c, err := parseRun(t, []string{"--config", "../../contrib/systemd/meshnode.json"}, nil)
	if err == nil {
		err = c.validate()
	}
	if err == nil {
		err = c.checkAddrs()
	}
	if err != nil || len(c.Join) != 2 || c.LogFormat != "json" {
		t.Fatalf("contrib/systemd/meshnode.json: %v, %+v", err, c)
	}
	unit, err := os.ReadFile("../../contrib/systemd/meshnode.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ExecStart=/usr/local/bin/meshnode run --config /etc/meshnode.json", "RestartPreventExitStatus=2", "StateDirectory=meshnode"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("meshnode.service lacks %q", want)
		}
	}
	// The files a release needs beside it, and where the README points.
	for file, want := range map[string]string{
		"../../LICENSE":      "MIT License\n\nCopyright (c) The Distrirender authors",
		"../../CHANGELOG.md": "## Unreleased",
		"../../README.md":    "contrib/systemd/",
	} {
		b, err := os.ReadFile(file)
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s: %v, or it lacks %q", file, err, want)
		}
	}
}

// TestNoDaemon checks what a client says when no daemon answers.
func TestNoDaemon(t *testing.T) {
	var out, errb bytes.Buffer
	code := realMain(context.Background(), []string{"status", "--api", "127.0.0.1:1"}, nil, &out, &errb, nil)
	if code != exitError || !strings.Contains(errb.String(), `no meshnode API at 127.0.0.1:1: is "meshnode run" running there?`) {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}
