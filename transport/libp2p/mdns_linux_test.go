//go:build linux

package libp2p_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/distrirender/distrirender/internal/meshtest"
	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/libp2p"
)

// netnsEnv marks the copy of the test binary that runs inside a network
// namespace of its own.
const netnsEnv = "DISTRIRENDER_TEST_NETNS"

// inNetns runs the calling test in a copy of the test binary inside a new
// network namespace, whose only interface is a loopback with multicast
// turned on, and reports whether the caller is that copy (and should go on
// with the test).
//
// mDNS sends multicast on every up interface with the MULTICAST flag. The
// host's lo lacks that flag (Linux never sets it on loopback), so on the host
// the multicast would leave by the real interfaces; changing lo there is not
// ours to do. A namespace of the test's own keeps every packet on its lo. It
// takes CAP_SYS_ADMIN (root): without it the test is skipped.
func inNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(netnsEnv) != "" {
		if err := loopbackMulticast(); err != nil {
			t.Fatalf("in the test's network namespace: %v", err)
		}
		ifs, err := net.Interfaces()
		if err != nil {
			t.Fatal(err)
		}
		if len(ifs) != 1 || ifs[0].Flags&net.FlagLoopback == 0 || ifs[0].Flags&net.FlagMulticast == 0 {
			t.Fatalf("namespace interfaces %v: want only a loopback with multicast", ifs)
		}
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace in which loopback multicast is allowed")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1", "-test.timeout=2m")
	// The race detector's exit would otherwise sleep a second.
	cmd.Env = append(os.Environ(), netnsEnv+"=1", "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if strings.Contains(line, "_test.go:") {
				t.Log("netns:", strings.TrimSpace(line))
			}
		}
	case errors.As(err, &exit):
		t.Fatalf("test in its network namespace failed (%v):\n%s", err, out.String())
	default:
		// Typically EPERM in a container without CAP_SYS_ADMIN.
		t.Skipf("cannot create a network namespace: %v", err)
	}
	return false
}

// loopbackMulticast brings lo up with the MULTICAST flag, as
// "ip link set lo up multicast on" does.
func loopbackMulticast() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP | unix.IFF_MULTICAST)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// TestMDNSDiscovered checks that two transports with MDNS report each other
// on Discovered, with an address Dial takes.
func TestMDNSDiscovered(t *testing.T) {
	if !inNetns(t) {
		return
	}
	a := newTransport(t, libp2p.Config{MDNS: true})
	b := newTransport(t, libp2p.Config{MDNS: true})
	if newTransport(t, libp2p.Config{}).Discovered() != nil {
		t.Fatal("Discovered() is not nil without MDNS")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, c := range []struct{ from, to *libp2p.Transport }{{a, b}, {b, a}} {
		select {
		case addr := <-c.from.Discovered():
			info, err := libp2p.ParseAddr(addr)
			if err != nil || info.ID != c.to.Host().ID() {
				t.Fatalf("discovered %q (%v), want an address of %s", addr, err, c.to.Host().ID())
			}
			t.Logf("%s found %s", c.from.Host().ID(), addr)
			e, err := c.from.Dial(ctx, addr)
			if err != nil {
				t.Fatalf("Dial(%q): %v", addr, err)
			}
			in, err := c.to.Accept(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_ = e.Close()
			_ = in.Close()
		case <-ctx.Done():
			t.Fatal("no peer discovered")
		}
	}
	_ = a.Close()
	if _, ok := <-a.Discovered(); ok {
		t.Fatal("Discovered() still open after Close")
	}
}

// TestMDNSAutoConnect starts 3 nodes with mDNS and no Connect at all: they
// find each other and form a mesh in which a message gets through.
func TestMDNSAutoConnect(t *testing.T) {
	if !inNetns(t) {
		return
	}
	const size = 3
	m := newMesh(t, meshtest.Seed(t))
	ctx, cancel := context.WithCancel(context.Background())
	var auto sync.WaitGroup
	// Runs before the mesh closes the nodes (cleanups run last first).
	t.Cleanup(func() {
		cancel()
		auto.Wait()
	})
	for range size {
		tr, err := libp2p.New(libp2p.Config{MDNS: true, Logger: meshtest.Logger("mdns")})
		if err != nil {
			t.Fatal(err)
		}
		nd := m.Node(m.add([]transport.Transport{tr}, meshtest.Fast()...))
		auto.Go(func() { libp2p.AutoConnect(ctx, nd, tr) })
	}
	start := time.Now()
	m.WaitConverged(30 * time.Second)
	t.Logf("%d nodes found each other and converged in %v", size, time.Since(start).Round(time.Millisecond))
	for i, nd := range m.Nodes() {
		if len(nd.Neighbors()) == 0 {
			t.Errorf("node %d has no neighbour", i)
		}
	}
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	defer scancel()
	c := m.Collect(sctx, 2)
	if err := m.SendAll(sctx, 0, m.Node(2).ID(), 10, 64); err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, 20*time.Second, "the messages", func() bool { return len(c.Got(0, false)) >= 10 })
	meshtest.CheckStream(t, "over the discovered mesh", c.Got(0, false), nil, 10)
}
