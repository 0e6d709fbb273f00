// Command distrirender renders a frame of the built-in scene on a mesh of
// nodes: a coordinator hands out tiles, workers pull them, render them with
// the deterministic path tracer of package render, and send back the pixels.
//
// With no flags, "distrirender render" starts an embedded mesh of four nodes
// in one process (a coordinator and three workers, talking QUIC on
// 127.0.0.1), renders the scene with a progress bar, writes frame.png and
// prints the tiles and time of each node:
//
//	go run ./cmd/distrirender render
//
// On a LAN, start workers that join one another, then a coordinator that
// joins any of them:
//
//	distrirender worker --listen 0.0.0.0:4300           # machine A
//	distrirender worker --join 192.168.1.10:4300        # machines B, C, ...
//	distrirender render --join 192.168.1.10:4300 --width 1920 --height 1080
//
// Over WebRTC (--transport webrtc) nodes are addressed by PeerJS peer IDs
// on a signalling server that one node serves (--serve-signal) and the
// others name (--signal):
//
//	distrirender worker --transport webrtc --serve-signal 0.0.0.0:9000 --peer-id a   # machine A
//	distrirender worker --transport webrtc --signal http://192.168.1.10:9000/ --join a
//	distrirender render --transport webrtc --signal http://192.168.1.10:9000/ --join a
//
// The mesh and the job protocol are unauthenticated: anyone who can reach a
// node can join the mesh, hand out work and send tiles. Run it on a network
// you trust. docs/RENDER.md has the details.
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

const usage = `usage: distrirender <command> [flags]

commands:
  render   render a frame: on an embedded mesh in this process (no --join,
           --listen, --signal or --serve-signal), or as the coordinator of a
           LAN cluster
  worker   serve render jobs on a LAN cluster
  version  print the version, revision and Go version of this binary (also --version)
  help     show this help

transports (--transport): quic (default; --listen/--join HOST:PORT), libp2p
(multiaddrs), memory (embedded mesh only), webrtc (the embedded mesh serves
its own signalling server on 127.0.0.1; in a cluster one node serves it with
--serve-signal HOST:PORT, the others give --signal http://HOST:PORT/, and
--join takes a peer ID, which --peer-id sets).

"distrirender <command> -h" lists the command's flags.
`

// exitInterrupted is the exit status after SIGINT or SIGTERM stopped a render.
const exitInterrupted = 130

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is a mistake on the command line: exit status 2.
type usageError struct {
	error
	printed bool // the flag package printed it already, with the usage
}

func usagef(format string, args ...any) error {
	return usageError{error: fmt.Errorf(format, args...)}
}

// run runs the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "render":
		err = cmdRender(ctx, args[1:], stdout, stderr)
	case "worker":
		err = cmdWorker(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "version", "--version", "-version":
		ops.PrintVersion(stdout, "distrirender")
		return 0
	default:
		fmt.Fprintf(stderr, "distrirender: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		if !ue.printed {
			fmt.Fprintf(stderr, "distrirender %s: %v (see distrirender %s -h)\n", args[0], err, args[0])
		}
		return 2
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		fmt.Fprintf(stderr, "distrirender %s: interrupted\n", args[0])
		return exitInterrupted
	default:
		fmt.Fprintf(stderr, "distrirender %s: %v\n", args[0], err)
		return 1
	}
}

// parse parses args with fs, turning flag errors into usage errors and
// refusing stray arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{error: err, printed: true}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
