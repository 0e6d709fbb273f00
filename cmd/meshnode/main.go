// Command meshnode is the mesh node daemon for LAN clusters over QUIC (or
// WebRTC), and the client of its local HTTP API.
//
//	meshnode run --listen 0.0.0.0:4242 --join 10.0.0.1:4242 [--discover]
//	meshnode run --transport webrtc --signal http://10.0.0.1:9000/ --join PEER-ID
//	meshnode status | topology | recv [--events] | connect ADDR
//	meshnode send NODE TEXT | broadcast TEXT
//
// NODE is a node's UUID, a unique prefix of it (at least 4 hex digits, as
// topology shows 8) or its name (run --name), if unique.
//
// Over WebRTC a node's address is its PeerJS peer ID (--peer-id, default
// its UUID) on a signalling server: one daemon serves it with
// --serve-signal HOST:PORT, or any PeerJS server will do.
//
// Every flag can also be set by an environment variable (--max-connections
// is MESHNODE_MAX_CONNECTIONS) or a JSON config file (--config PATH, read
// with github.com/peterbourgon/ff), with the precedence flag > environment >
// file > default. docs/CLUSTER.md has the details, the API reference and a worked
// three-machine example.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/distrirender/distrirender/internal/ops"
)

const usage = `meshnode: a mesh node daemon for LAN clusters over QUIC or WebRTC, and its client.

Usage:
  meshnode run [flags]              run a node (see meshnode run -h)
  meshnode status [flags]           the node's ID, name, addresses, neighbours and counters
  meshnode topology [flags]         the mesh as the node sees it
  meshnode send NODE TEXT [flags]   send TEXT to NODE: a UUID, a unique prefix of one (at
                                    least 4 hex digits) or a unique name ("-" reads stdin)
  meshnode broadcast TEXT [flags]   send TEXT to every node ("-" reads stdin)
  meshnode recv [flags]             print received messages until interrupted
  meshnode connect ADDR             open an edge to another node (HOST:PORT, or a peer ID over webrtc)
  meshnode version                  the version, revision and Go version of this binary (also --version)

Client flags: --api HOST:PORT (default 127.0.0.1:7070), --json, --config PATH;
recv also takes --events. Every flag can be set as MESHNODE_<FLAG> in the
environment (e.g. MESHNODE_API) or in the JSON config file; a flag on the
command line wins over the environment, which wins over the file.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal the default behaviour returns: a second one
	// ends a shutdown that hangs.
	context.AfterFunc(ctx, stop)
	code := realMain(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Environ())
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// realMain runs one subcommand and returns the exit code. ctx ends on
// SIGINT or SIGTERM; env is the environment, as os.Environ returns it.
func realMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env []string) int {
	for _, w := range unknownEnv(env) {
		fmt.Fprintf(stderr, "meshnode: warning: %s\n", w)
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "run":
		err = cmdRun(ctx, rest, stderr, env)
	case "status", "topology", "send", "broadcast", "recv", "connect":
		err = cmdClient(ctx, cmd, rest, stdin, stdout, stderr, env)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "version", "--version", "-version":
		ops.PrintVersion(stdout, "meshnode")
		return exitOK
	default:
		fmt.Fprintf(stderr, "meshnode: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "meshnode %s: %v\n", cmd, err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "meshnode %s: %v\n", cmd, err)
		return exitError
	}
}

// usageError is a mistake in the command line or configuration.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func cmdRun(ctx context.Context, args []string, stderr io.Writer, env []string) error {
	fs := flag.NewFlagSet("meshnode run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c runConfig
	fs.String("config", "", "`PATH` of a JSON config file: an object whose keys are flag names")
	runFlags(fs, &c)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: meshnode run [flags]\n\nRuns a mesh node until SIGINT or SIGTERM, then leaves the mesh cleanly.\n"+
			"Every flag can be set as MESHNODE_<FLAG> (e.g. MESHNODE_JOIN) or in the config file.\n\n"+
			"Over WebRTC (--transport webrtc), nodes meet on a PeerJS signalling server: one\n"+
			"daemon serves it (--serve-signal 0.0.0.0:9000), the others name it\n"+
			"(--signal http://HOST:9000/); --join and connect take peer IDs (--peer-id,\n"+
			"default the node's UUID), and --listen, --advertise and --discover do not apply.\n\n")
		fs.PrintDefaults()
	}
	pos, err := loadConfig(fs, args, env, false)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if len(pos) > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", pos[0])}
	}
	c.noteGiven(fs)
	if err := c.validate(); err != nil {
		return usageError{err}
	}
	if err := c.checkAddrs(); err != nil {
		return usageError{err}
	}
	deps := daemonDeps{listen: listenTransport, logOut: stderr}
	if c.Transport != transportWebRTC {
		deps.checkAddr = func(addr string) error { return checkHostPort(addr, false) }
	}
	return runDaemon(ctx, &c, deps)
}
