package main

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/distrirender/distrirender/internal/testutil"
	"github.com/distrirender/distrirender/render"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// small is a frame that renders in a moment, even with the race detector.
var small = []string{"--width", "48", "--height", "32", "--samples", "2", "--tile", "16", "--seed", "5", "--progress", "off"}

func want(t *testing.T) *image.RGBA {
	t.Helper()
	img, err := render.Render(context.Background(), render.Default(), render.Job{Width: 48, Height: 32, Samples: 2, TileSize: 16, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func readPNG(t *testing.T, path string) *image.RGBA {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	rgba, ok := img.(*image.RGBA)
	if !ok {
		// An opaque RGBA image may come back as NRGBA; compare pixel values.
		b := img.Bounds()
		rgba = image.NewRGBA(b)
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				rgba.Set(x, y, img.At(x, y))
			}
		}
	}
	return rgba
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		msg  string
	}{
		{nil, "usage:"},
		{[]string{"paint"}, `unknown command "paint"`},
		{[]string{"render", "--width", "0"}, "size 0x540"},
		{[]string{"render", "--samples", "-1"}, "samples"},
		{[]string{"render", "--tile", "1000"}, "tile size"},
		{[]string{"render", "--transport", "carrier-pigeon"}, "--transport"},
		{[]string{"render", "--scene", "teapot"}, "unknown scene"},
		{[]string{"render", "--no-such-flag"}, "flag provided but not defined"},
		{[]string{"render", "--width", "wide"}, "invalid value"},
		{[]string{"render", "stray"}, `unexpected argument "stray"`},
		{[]string{"render", "--workers", "0"}, "nobody would render"},
		{[]string{"render", "--workers", "1000"}, "--workers"},
		{[]string{"render", "--join", "127.0.0.1:1", "--workers", "2"}, "--workers is for the embedded mesh"},
		{[]string{"render", "--join", "x", "--transport", "memory"}, "memory transport"},
		{[]string{"render", "--progress", "maybe"}, "--progress"},
		{[]string{"render", "--out", "/nonexistent/frame.png"}, "--out: cannot write frame.png in /nonexistent: no such file or directory"},
		{[]string{"render", "--out", "/"}, "is a directory"},
		{[]string{"render", "--join-timeout", "0s"}, "--join-timeout"},
		{[]string{"render", "--slots", "65"}, "--slots"},
		{[]string{"render", "--name", "me"}, "--name is for a cluster node"},
		{[]string{"render", "--join", "127.0.0.1:1", "--name", "a\tb"}, "--name \"a\\tb\": control characters"},
		{[]string{"worker", "--name", strings.Repeat("w", 65)}, "--name"},
		{[]string{"worker", "--transport", "memory"}, "memory transport"},
		{[]string{"worker", "--join", "/ip4/127.0.0.1/tcp/1"}, "multiaddr"},
		{[]string{"worker", "--join", "alice"}, "want HOST:PORT"},
		{[]string{"worker", "--pprof"}, "give --metrics too"},
		{[]string{"worker", "--metrics", "9464"}, "--metrics"},
		// webrtc
		{[]string{"render", "--transport", "webrtc", "--join", "127.0.0.1:4300", "--signal", "http://127.0.0.1:1/"}, "not a PeerJS peer ID"},
		{[]string{"worker", "--transport", "webrtc", "--join", "/ip4/127.0.0.1/udp/1/quic-v1", "--signal", "http://127.0.0.1:1/"}, "not a PeerJS peer ID"},
		{[]string{"worker", "--transport", "webrtc", "--join", "w1"}, "needs a PeerJS signalling server"},
		{[]string{"render", "--transport", "webrtc", "--join", "w1"}, "needs a PeerJS signalling server"},
		{[]string{"worker", "--transport", "webrtc", "--listen", "0.0.0.0:4300", "--serve-signal", "127.0.0.1:0"}, "--listen is for quic and libp2p"},
		{[]string{"render", "--signal", "http://127.0.0.1:1/"}, "--signal is for --transport webrtc"},
		{[]string{"worker", "--transport", "libp2p", "--serve-signal", "127.0.0.1:0"}, "--serve-signal is for --transport webrtc"},
		{[]string{"worker", "--transport", "webrtc", "--signal", "127.0.0.1:9000"}, "--signal"},
		{[]string{"worker", "--transport", "webrtc", "--signal", "ftp://127.0.0.1:9000/"}, "scheme"},
		{[]string{"worker", "--transport", "webrtc", "--serve-signal", "9000"}, "--serve-signal"},
		{[]string{"worker", "--transport", "webrtc", "--serve-signal", "127.0.0.1:0", "--peer-id", "no/slash"}, "--peer-id"},
		{[]string{"worker", "--transport", "webrtc", "--serve-signal", "127.0.0.1:0", "--ice-net", "10.0.0.0/33"}, "--ice-net"},
		{[]string{"worker", "--transport", "webrtc", "--serve-signal", "127.0.0.1:0", "--ice-net", ","}, "--ice-net"},
		{[]string{"render", "--transport", "webrtc", "--peer-id", "coordinator"}, "embedded mesh names its nodes"},
		{[]string{"render", "--transport", "webrtc", "--stun", "stun:stun.example.org"}, "embedded mesh names its nodes"},
		{[]string{"worker", "--stun", "stun:stun.example.org"}, "--stun is for --transport webrtc"},
		{[]string{"worker", "--signal-key", "k"}, "--signal-key is for --transport webrtc"},
		{[]string{"worker", "--secret-file", "/nonexistent/secret"}, "--secret-file"},
		{[]string{"worker", "--transport", "webrtc", "--serve-signal", "127.0.0.1:0", "--stun", "http://stun.example.org"}, "--stun"},
		{[]string{"worker", "--transport", "webrtc", "--serve-signal", "127.0.0.1:0", "--turn", "turn:turn.example.org"}, "--turn-user"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), c.args, &out, &errb)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr %q", code, errb.String())
			}
			if !strings.Contains(errb.String(), c.msg) {
				t.Fatalf("stderr %q does not mention %q", errb.String(), c.msg)
			}
		})
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"render", "-h"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "-samples") {
		t.Fatalf("-h: exit %d, stderr %q", code, errb.String())
	}
}

func TestEmbeddedRender(t *testing.T) {
	frames := map[string][]byte{}
	for _, tr := range []string{"memory", "quic", "webrtc"} {
		t.Run(tr, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "frame.png")
			var out, errb bytes.Buffer
			args := append([]string{"render", "--transport", tr, "--workers", "2", "--out", path}, small...)
			if code := run(context.Background(), args, &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s%s", code, out.String(), errb.String())
			}
			t.Logf("%s", out.String())
			got := readPNG(t, path)
			if !bytes.Equal(got.Pix, want(t).Pix) {
				t.Fatal("the embedded mesh's frame differs from a single-node render")
			}
			frames[tr] = got.Pix
			// Which worker renders the 6 tiles depends on timing: each asks
			// for 4 (2 slots and 2 ahead), so one may take them all.
			for _, s := range []string{"worker-", "6 tiles of 16x16", "wrote " + path} {
				if !strings.Contains(out.String(), s) {
					t.Errorf("output does not mention %q", s)
				}
			}
		})
	}
	if !bytes.Equal(frames["webrtc"], frames["quic"]) {
		t.Error("the frames over webrtc and quic differ")
	}
}

// listeningAt waits until a worker logging to werr says at which loopback
// address it listens, and returns it.
func listeningAt(t *testing.T, werr *testutil.SyncBuffer) string {
	t.Helper()
	re := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	var addr string
	testutil.WaitFor(t, 10*time.Second, "the worker to listen", func() bool {
		if m := re.FindStringSubmatch(werr.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	})
	return addr
}

func TestClusterOverQUIC(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wout, werr testutil.SyncBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"worker", "--listen", "127.0.0.1:0", "--slots", "1", "--metrics", "127.0.0.1:0", "--pprof", "--name", "w-one"}, &wout, &werr)
	}()
	re := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	addr := listeningAt(t, &werr)
	// A second worker joins the first; the coordinator joins the second.
	var w2out, w2err testutil.SyncBuffer
	code2 := make(chan int, 1)
	go func() {
		code2 <- run(ctx, []string{"worker", "--listen", "127.0.0.1:0", "--join", addr, "--slots", "1"}, &w2out, &w2err)
	}()
	var addr2 string
	testutil.WaitFor(t, 10*time.Second, "the second worker to join", func() bool {
		if m := re.FindStringSubmatch(w2err.String()); m != nil && strings.Contains(w2err.String(), "joined") {
			addr2 = m[1]
		}
		return addr2 != ""
	})
	path := filepath.Join(t.TempDir(), "frame.png")
	var out, errb bytes.Buffer
	args := append([]string{"render", "--join", addr2, "--listen", "127.0.0.1:0", "--out", path, "--name", "the boss"}, small...)
	if c := run(ctx, args, &out, &errb); c != 0 {
		t.Fatalf("render exit %d: %s%s", c, out.String(), errb.String())
	}
	t.Logf("%s", out.String())
	// The report names the first worker by its --name, if it rendered
	// anything (timing decides).
	if m := regexp.MustCompile(`worker ([0-9a-f]{8})-\S+ listening`).FindStringSubmatch(werr.String()); m == nil {
		t.Errorf("the first worker did not print its ID: %q", werr.String())
	} else if strings.Contains(out.String(), " "+m[1]+" ") && !regexp.MustCompile(`(?m)^ *w-one +`+m[1]+" ").MatchString(out.String()) {
		t.Errorf("the report lists the first worker, %s, but not by its name w-one:\n%s", m[1], out.String())
	}
	if got := readPNG(t, path); !bytes.Equal(got.Pix, want(t).Pix) {
		t.Fatal("the cluster's frame differs from a single-node render")
	}
	checkDir(t, filepath.Dir(path), "frame.png") // no temporary file left
	if !strings.Contains(out.String(), "slot time per tile") {
		t.Errorf("the report does not name its columns:\n%s", out.String())
	}
	// The first worker's metrics: the tiles it rendered, its neighbours.
	metrics := regexp.MustCompile(`metrics on (http://\S+)/metrics`).FindStringSubmatch(werr.String())
	if metrics == nil {
		t.Fatalf("the worker did not say where its metrics are: %q", werr.String())
	}
	for path, want := range map[string]string{
		"/metrics":      "distrirender_worker_tiles_total ",
		"/readyz":       `"status":"ready"`,
		"/healthz":      `"status":"ok"`,
		"/debug/pprof/": "goroutine",
	} {
		if body := httpGet(t, metrics[1]+path); !strings.Contains(body, want) {
			t.Errorf("%s lacks %q:\n%.300s", path, want, body)
		}
	}
	// SIGINT or SIGTERM ends the workers cleanly.
	cancel()
	for i, c := range []chan int{code, code2} {
		if got := <-c; got != 0 {
			t.Fatalf("worker %d exit %d", i+1, got)
		}
	}
	if !strings.Contains(wout.String()+w2out.String(), "tiles") {
		t.Fatalf("workers printed no summary: %q %q", wout.String(), w2out.String())
	}
}

// TestClusterOverWebRTC runs the LAN commands over WebRTC on loopback: the
// second worker starts first and waits for the signalling server, which the
// first worker then serves; the second joins the first by peer ID, and the
// coordinator joins the second.
func TestClusterOverWebRTC(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A port for the signalling server, free a moment ago.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve := ln.Addr().String()
	ln.Close()
	signal := "http://" + serve + "/"

	var w2out, w2err testutil.SyncBuffer
	code2 := make(chan int, 1)
	go func() {
		code2 <- run(ctx, []string{"worker", "--transport", "webrtc", "--signal", signal, "--signal-key", "s3cret", "--peer-id", "w2", "--join", "w1",
			"--ice-net", "127.0.0.1", "--slots", "1"}, &w2out, &w2err)
	}()
	testutil.WaitFor(t, 10*time.Second, "the second worker to wait for the signalling server", func() bool {
		return strings.Contains(w2err.String(), "signalling server not reachable; retrying")
	})
	var wout, werr testutil.SyncBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"worker", "--transport", "webrtc", "--serve-signal", serve, "--signal-key", "s3cret", "--peer-id", "w1",
			"--ice-net", "127.0.0.0/8", "--slots", "1"}, &wout, &werr)
	}()
	testutil.WaitFor(t, 20*time.Second, "the second worker to join", func() bool { return strings.Contains(w2err.String(), "joined w1") })
	if !strings.Contains(werr.String(), "other nodes give --signal "+signal) {
		t.Errorf("the first worker did not say where its signalling server is: %q", werr.String())
	}
	path := filepath.Join(t.TempDir(), "frame.png")
	var out, errb bytes.Buffer
	args := append([]string{"render", "--transport", "webrtc", "--signal", signal, "--signal-key", "s3cret", "--join", "w2", "--ice-net", "127.0.0.0/8", "--out", path}, small...)
	if c := run(ctx, args, &out, &errb); c != 0 {
		t.Fatalf("render exit %d: %s%s", c, out.String(), errb.String())
	}
	t.Logf("%s", out.String())
	if got := readPNG(t, path); !bytes.Equal(got.Pix, want(t).Pix) {
		t.Fatal("the cluster's frame differs from a single-node render")
	}
	cancel()
	for i, c := range []chan int{code, code2} {
		if got := <-c; got != 0 {
			t.Fatalf("worker %d exit %d", i+1, got)
		}
	}
	t.Logf("worker 1:\n%s\nworker 2:\n%s", werr.String(), w2err.String())
}

func TestInterruptedRender(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	dir := t.TempDir()
	path := filepath.Join(dir, "x.png")
	if err := os.WriteFile(path, []byte("the old frame"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"render", "--transport", "memory", "--out", path}, small...)
	if code := run(ctx, args, &out, &errb); code != exitInterrupted {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitInterrupted, errb.String())
	}
	// The old file is untouched, and no temporary file is left.
	checkDir(t, dir, "x.png")
	if b, err := os.ReadFile(path); err != nil || string(b) != "the old frame" {
		t.Errorf("the old frame was overwritten: %q, %v", b, err)
	}
}

// checkDir fails the test unless dir holds exactly the files names.
func checkDir(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(names, " ") {
		t.Errorf("%s holds %q, want %q", dir, got, names)
	}
}

// TestJoinDeadAddress checks that render --join to an address where no
// node answers fails within its --join-timeout, saying why.
func TestJoinDeadAddress(t *testing.T) {
	// A UDP port that was free a moment ago: nothing answers QUIC there.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := pc.LocalAddr().String()
	pc.Close()
	dir := t.TempDir()
	var out, errb bytes.Buffer
	start := time.Now()
	args := append([]string{"render", "--join", dead, "--listen", "127.0.0.1:0", "--join-timeout", "1s", "--out", filepath.Join(dir, "f.png")}, small...)
	if code := run(context.Background(), args, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1; stderr %q", code, errb.String())
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %v to give up, with --join-timeout 1s", el)
	}
	if !strings.Contains(errb.String(), "no node at "+dead+" accepted within 1s; is a distrirender worker running there?") {
		t.Errorf("stderr %q", errb.String())
	}
	checkDir(t, dir)
}

func TestProgressLine(t *testing.T) {
	cases := []struct {
		p    render.Progress
		want string
	}{
		{render.Progress{Done: 0, Total: 10, Workers: 0}, "[..........]   0% 0/10 tiles  -- tiles/s  ETA --  elapsed 0s  waiting for workers"},
		{render.Progress{Done: 5, Total: 10, Workers: 3, Elapsed: 2 * time.Second}, "[#####.....]  50% 5/10 tiles  2.5 tiles/s  ETA 2s  elapsed 2s  3 workers"},
		{render.Progress{Done: 1, Total: 4, Workers: 1, Elapsed: 10 * time.Second}, "[##........]  25% 1/4 tiles  0.1 tiles/s  ETA 30s  elapsed 10s  1 workers"},
		{render.Progress{Done: 4, Total: 4, Workers: 0, Elapsed: 1500 * time.Millisecond}, "[##########] 100% 4/4 tiles  2.7 tiles/s  ETA 0s  elapsed 1.5s  0 workers"},
	}
	for _, c := range cases {
		if got := progressLine(c.p, 10); got != c.want {
			t.Errorf("progressLine(%+v)\n got %q\nwant %q", c.p, got, c.want)
		}
	}
}

// httpGet returns the body of a 200 answer to a GET of url.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	code, body := testutil.Get(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	return body
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"--version", "version", "-version"} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{arg}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "distrirender ") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", arg, code, out.String(), errb.String())
		}
	}
}
