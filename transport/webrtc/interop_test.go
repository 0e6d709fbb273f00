package webrtc_test

// Interoperability with the JavaScript side of PeerJS: the npm PeerServer
// (package "peer", run by Node.js) and the peerjs client in headless
// Chromium. The packages are those of testdata/package-lock.json; the tests
// install them (npm ci) when testdata/node_modules is missing or stale. They
// skip when node, npm or chromium is not installed, and fail on anything
// else.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distrirender/distrirender/internal/testutil"
	"github.com/distrirender/distrirender/transport"
	"github.com/distrirender/distrirender/transport/webrtc"
)

// lookPath returns the path of the first of the commands that is
// installed, or skips the test.
func lookPath(t *testing.T, install string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Skipf("%s is not installed: skipping this PeerJS interoperability test (on Debian: %s)", names[0], install)
	return ""
}

// nodeModules installs testdata/node_modules from package-lock.json with
// npm ci, unless it is there already and newer than the lock file. It skips
// the test if npm is not installed.
func nodeModules(t *testing.T) string {
	t.Helper()
	npm := lookPath(t, "apt-get install -y nodejs npm", "npm")
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	lock, err := os.Stat(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	if done, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json")); err == nil && done.ModTime().After(lock.ModTime()) {
		return dir
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
	return dir
}

// npmPeerServer runs testdata/peerserver.mjs, the npm PeerServer on a
// loopback port, until the test ends, and returns its URL.
func npmPeerServer(t *testing.T) string {
	t.Helper()
	node := lookPath(t, "apt-get install -y nodejs npm", "node", "nodejs")
	dir := nodeModules(t)
	cmd := exec.Command(node, "peerserver.mjs")
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type ready struct {
		Port int `json:"port"`
	}
	lines := make(chan ready, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		var r ready
		br := bufio.NewReader(stdout)
		if line, err := br.ReadString('\n'); err == nil {
			_ = json.Unmarshal([]byte(line), &r)
		}
		lines <- r
		_, _ = io.Copy(io.Discard, br)
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = stdin.Close() // the server exits when its stdin closes
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	select {
	case r := <-lines:
		if r.Port == 0 {
			t.Fatal("peerserver.mjs did not print its port")
		}
		return "http://127.0.0.1:" + strconv.Itoa(r.Port) + "/"
	case <-time.After(30 * time.Second):
		t.Fatal("peerserver.mjs did not start within 30 s")
	}
	return ""
}

// TestNpmPeerServer runs Go transports against the npm PeerServer: an ID
// handed out by it, edges both ways with frames small and large, ID-TAKEN
// and EXPIRE.
func TestNpmPeerServer(t *testing.T) {
	url := npmPeerServer(t)
	a := newTransport(t, webrtc.Config{Server: url})
	b := newTransport(t, webrtc.Config{Server: url, ID: "b", Serialization: webrtc.SerializationRaw})
	if !webrtc.ValidID(a.ID()) {
		t.Fatalf("the server handed out ID %q", a.ID())
	}
	ab, ba := pair(t, a, b)
	for _, size := range []int{0, 1, 16300, 1 << 20} {
		roundTrip(t, ab, ba, make([]byte, size))
		roundTrip(t, ba, ab, make([]byte, size/2))
	}
	bx, xb := pair(t, b, a)
	roundTrip(t, bx, xb, make([]byte, webrtc.MaxMessage))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if tr, err := webrtc.New(ctx, webrtc.Config{Server: url, ID: "b"}); !errors.Is(err, webrtc.ErrIDTaken) {
		if err == nil {
			_ = tr.Close()
		}
		t.Errorf("New with a taken ID: %v, want ErrIDTaken", err)
	}
	start := time.Now()
	if _, err := a.Dial(ctx, "nobody"); !errors.Is(err, transport.ErrUnreachable) {
		t.Errorf("Dial to an unknown peer: %v, want ErrUnreachable (from EXPIRE)", err)
	}
	t.Logf("EXPIRE from the npm server after %v", time.Since(start).Round(time.Millisecond))
}

// browserCase is one connection the browser opens to the Go node.
type browserCase struct {
	Serialization string `json:"serialization"`
	Reliable      bool   `json:"reliable"`
	Sizes         []int  `json:"sizes"`
}

// TestBrowserPeerJS has peerjs in headless Chromium open connections to a
// Go node, serialized "raw" and "binary", ordered and not, through the
// embedded PeerServer, and echo frames; then Go nodes dial the browser.
// ICE stays on loopback: the Go side offers only 127.0.0.1, and Chromium
// is told to use loopback and to show its addresses rather than mDNS names.
func TestBrowserPeerJS(t *testing.T) {
	testutil.ChromiumPath(t) // skips the test at once where Chromium is missing
	dir := nodeModules(t)

	results := make(chan string, 1)
	var logMu sync.Mutex
	logOpen := true
	var logged []string
	t.Cleanup(func() { logMu.Lock(); logOpen = false; logMu.Unlock() })
	browserLog := func(line string) {
		logMu.Lock()
		defer logMu.Unlock()
		logged = append(logged, line)
		if logOpen {
			t.Log("browser:", line)
		}
	}
	// browserSaid reports whether the browser has logged a line containing s.
	browserSaid := func(s string) bool {
		logMu.Lock()
		defer logMu.Unlock()
		return slices.ContainsFunc(logged, func(l string) bool { return strings.Contains(l, s) })
	}

	signal, err := webrtc.NewSignalServer(webrtc.SignalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []browserCase{
		{"raw", true, []int{1, 1000, 60000}},
		{"binary", true, []int{3, 16295, 16296, 100000, 1 << 20}},
		{"default", false, []int{5, 50000}}, // peerjs's defaults: BinaryPack, unordered
	}
	var cfgJSON []byte
	mux := http.NewServeMux()
	mux.Handle("/", signal)
	mux.HandleFunc("GET /test/browser.html", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dir, "browser.html"))
	})
	mux.HandleFunc("GET /test/browser.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dir, "browser.js"))
	})
	mux.HandleFunc("GET /test/peerjs.min.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dir, "node_modules", "peerjs", "dist", "peerjs.min.js"))
	})
	mux.HandleFunc("GET /test/config", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(cfgJSON)
	})
	mux.HandleFunc("POST /test/log", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		browserLog(string(b))
	})
	mux.HandleFunc("POST /test/result", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		select {
		case results <- string(b):
		default:
		}
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		_ = signal.Close()
		ts.Close()
	})
	host, port, err := net.SplitHostPort(ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	portNum, _ := strconv.Atoi(port)
	cfgJSON, _ = json.Marshal(map[string]any{
		"host": host, "port": portNum, "key": webrtc.DefaultKey,
		"goPeer": "gonode", "browserPeer": "browser1", "cases": cases,
	})

	// The Go node echoes every frame on every edge it accepts.
	gonode := newTransport(t, webrtc.Config{Server: ts.URL, ID: "gonode"})
	var edgesMu sync.Mutex
	var accepted []string
	echoCtx, stopEcho := context.WithCancel(context.Background())
	var echoes sync.WaitGroup
	t.Cleanup(func() {
		stopEcho()
		echoes.Wait()
	})
	echoes.Add(1)
	go func() {
		defer echoes.Done()
		for {
			e, err := gonode.Accept(echoCtx)
			if err != nil {
				return
			}
			we := e.(*webrtc.Edge)
			edgesMu.Lock()
			accepted = append(accepted, fmt.Sprintf("%s ordered=%v", we.Serialization(), we.Ordered()))
			edgesMu.Unlock()
			echoes.Add(1)
			go func() {
				defer echoes.Done()
				defer e.Close()
				for {
					f, err := e.Receive(echoCtx)
					if err != nil {
						return
					}
					if err := e.Send(echoCtx, f); err != nil {
						return
					}
				}
			}()
		}
	}()

	testutil.StartChromium(t,
		// WebRTC on loopback: gather on the loopback interface, with plain
		// IP addresses in candidates rather than mDNS names.
		"--allow-loopback-in-peer-connection",
		"--disable-features=WebRtcHideLocalIpsWithMdns",
		ts.URL+"/test/browser.html")
	select {
	case r := <-results:
		if r != "ok" {
			t.Fatalf("browser: %s", r)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the browser reported nothing within 60 s")
	}
	edgesMu.Lock()
	t.Logf("edges the browser opened: %q", accepted)
	want := []string{"raw ordered=true", "binary ordered=true", "binary ordered=false"}
	if fmt.Sprint(accepted) != fmt.Sprint(want) {
		t.Errorf("accepted edges %q, want %q", accepted, want)
	}
	edgesMu.Unlock()

	// Go nodes dial the browser, which echoes.
	for _, c := range []struct {
		ser   string
		sizes []int
	}{
		{webrtc.SerializationBinary, []int{0, 7, 16296, 300000}},
		{webrtc.SerializationRaw, []int{1, 65535}},
	} {
		tr := newTransport(t, webrtc.Config{Server: ts.URL, Serialization: c.ser})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		e, err := tr.Dial(ctx, "browser1")
		cancel()
		if err != nil {
			t.Fatalf("%s: Dial to the browser: %v", c.ser, err)
		}
		// Chromium's answers advertise no a=max-message-size: 64 KiB.
		if c.ser == webrtc.SerializationRaw && e.(*webrtc.Edge).MaxFrame() != 65535 {
			t.Errorf("raw edge to Chromium: MaxFrame %d, want 65535", e.(*webrtc.Edge).MaxFrame())
		}
		// The page echoes once peerjs has opened its side of the
		// connection: data that arrives before, under load, makes peerjs
		// send on a channel it does not yet see open, and it then closes
		// the connection (seen once in a full make test run).
		testutil.WaitFor(t, 10*time.Second, "the browser to open the connection from "+tr.ID(), func() bool {
			return browserSaid("connection from " + tr.ID())
		})
		for _, size := range c.sizes {
			frame := make([]byte, size)
			for i := range frame {
				frame[i] = byte(i*7 + size)
			}
			roundTrip(t, e, e, frame)
		}
		_ = e.Close()
	}
}
