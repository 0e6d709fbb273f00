package main

import (
	"context"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/testutil"
	"github.com/distrirender/distrirender/meshapi"
)

// runProc is `meshnode run` in this process, through realMain.
type runProc struct {
	log    *logWriter
	api    *meshapi.Client
	cancel context.CancelFunc
	done   chan int
}

var apiRE = regexp.MustCompile(`msg="API listening" .*addr=(http://127\.0\.0\.1:\d+)`)

// startRun runs `meshnode run args...` with env as its environment, and
// waits for its API.
func startRun(t *testing.T, name string, env map[string]string, args ...string) *runProc {
	t.Helper()
	p := goRun(t, name, env, args...)
	p.waitAPI(t)
	return p
}

// goRun runs `meshnode run args...` with env as its environment.
func goRun(t *testing.T, name string, env map[string]string, args ...string) *runProc {
	t.Helper()
	lw := &logWriter{t: t, name: name}
	t.Cleanup(func() { lw.mu.Lock(); lw.done = true; lw.mu.Unlock() })
	ctx, cancel := context.WithCancel(context.Background())
	p := &runProc{log: lw, cancel: cancel, done: make(chan int, 1)}
	args = append([]string{"run", "--api", "127.0.0.1:0", "--shutdown-timeout", "1s"}, args...)
	go func() { p.done <- realMain(ctx, args, nil, lw, lw, environ(env)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-p.done:
			if code != exitOK {
				t.Errorf("%s: exit code %d", name, code)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("%s did not stop within 15s", name)
		}
	})
	return p
}

// waitAPI waits for the daemon's API to be up.
func (p *runProc) waitAPI(t *testing.T) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, p.log.name+"'s API", func() bool {
		p.log.mu.Lock()
		m := apiRE.FindStringSubmatch(p.log.all.String())
		p.log.mu.Unlock()
		if m != nil {
			p.api = meshapi.NewClient(m[1])
		}
		return p.api != nil
	})
}

func (p *runProc) status(t *testing.T) meshapi.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := p.api.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestRunWebRTC runs three daemons over WebRTC on loopback, configured by
// flags and by the environment: beta (peer ID = its UUID) starts first and
// waits for the signalling server, which alpha then serves; beta joins
// alpha, and gamma joins beta by its UUID. Then gamma sends to alpha
// through the mesh.
func TestRunWebRTC(t *testing.T) {
	// A port for the signalling server, free a moment ago.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve := ln.Addr().String()
	ln.Close()
	signal := "http://" + serve + "/"

	betaID := uuid.New()
	beta := goRun(t, "beta", nil, "--transport", "webrtc", "--signal", signal, "--id", betaID.String(), "--join", "alpha",
		"--ice-net", "127.0.0.1", "--min-connections", "0")
	testutil.WaitFor(t, 10*time.Second, "beta to wait for the signalling server", func() bool {
		return beta.log.count("signalling server not reachable; retrying") > 0
	})
	alpha := startRun(t, "alpha", nil, "--transport", "webrtc", "--serve-signal", serve, "--peer-id", "alpha",
		"--ice-net", "127.0.0.0/8", "--min-connections", "0")
	if st := alpha.status(t); !slices.Equal(st.Addrs, []string{"alpha"}) {
		t.Fatalf("alpha's addresses %q, want its peer ID", st.Addrs)
	}
	beta.waitAPI(t)
	gamma := startRun(t, "gamma", map[string]string{
		"MESHNODE_TRANSPORT": "webrtc", "MESHNODE_SIGNAL": signal, "MESHNODE_PEER_ID": "gamma",
		"MESHNODE_JOIN": betaID.String(), "MESHNODE_ICE_NET": "127.0.0.0/8", "MESHNODE_MIN_CONNECTIONS": "0",
	})
	if st := beta.status(t); st.ID != betaID || !slices.Equal(st.Addrs, []string{betaID.String()}) {
		t.Fatalf("beta: ID %v, addresses %q; want %v as both", st.ID, st.Addrs, betaID)
	}
	a := alpha.status(t).ID
	testutil.WaitFor(t, 20*time.Second, "gamma to reach alpha through beta", func() bool {
		st := gamma.status(t)
		return st.Reachable == 3 && slices.Equal(st.Neighbors, []uuid.UUID{betaID})
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan string, 1)
	streamDone := make(chan struct{})
	defer func() { cancel(); <-streamDone }()
	ready := make(chan struct{})
	go func() {
		defer close(streamDone)
		alpha.api.Stream(ctx, false, func(ev meshapi.StreamEvent) error {
			if ev.Type == "ready" {
				close(ready)
				return nil
			}
			select {
			case got <- string(ev.Data):
			default:
			}
			return nil
		})
	}()
	select {
	case <-ready:
	case <-ctx.Done():
		t.Fatal("no ready event from alpha")
	}
	if r, err := gamma.api.Send(ctx, a.String(), []byte("over webrtc")); err != nil || r.Reachable == nil || !*r.Reachable {
		t.Fatalf("send: %+v, %v", r, err)
	}
	select {
	case m := <-got:
		if !strings.Contains(m, "over webrtc") {
			t.Fatalf("alpha received %s", m)
		}
	case <-ctx.Done():
		t.Fatal("alpha received nothing")
	}
}

// TestRunWebRTCStoppedWhileWaiting stops a daemon that is still waiting for
// its signalling server: it exits 0 (checked by goRun's cleanup).
func TestRunWebRTCStoppedWhileWaiting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	signal := "http://" + ln.Addr().String() + "/"
	ln.Close()
	p := goRun(t, "lonely", nil, "--transport", "webrtc", "--signal", signal, "--ice-net", "127.0.0.0/8")
	testutil.WaitFor(t, 10*time.Second, "the daemon to wait for the signalling server", func() bool {
		return p.log.count("signalling server not reachable; retrying") > 0
	})
}
