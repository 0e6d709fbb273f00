package main

import (
	"bufio"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	quicgo "github.com/quic-go/quic-go"
	"golang.org/x/sys/unix"
)

// Env is the environment of a run: what ran, on what, with which socket
// settings.
type Env struct {
	Start      time.Time         `json:"start"`
	Command    string            `json:"command"`
	GoVersion  string            `json:"go_version"`
	OS         string            `json:"os"`
	Kernel     string            `json:"kernel,omitempty"`
	CPUModel   string            `json:"cpu_model"`
	NumCPU     int               `json:"num_cpu"`
	GOMAXPROCS int               `json:"gomaxprocs"`
	Module     string            `json:"module"`
	Revision   string            `json:"revision,omitempty"`
	Versions   map[string]string `json:"versions"`
	// UDP socket buffers a quic-go transport obtained on loopback (quic-go
	// asks for 7 MiB; Linux caps at net.core.rmem_max and wmem_max), and
	// those caps.
	UDPRecvBuffer int `json:"udp_recv_buffer"`
	UDPSendBuffer int `json:"udp_send_buffer"`
	RmemMax       int `json:"rmem_max,omitempty"`
	WmemMax       int `json:"wmem_max,omitempty"`
	// GSO is whether quic-go can use UDP generic segmentation offload: the
	// kernel supports UDP_SEGMENT and QUIC_GO_DISABLE_GSO is not set.
	GSO bool `json:"gso"`
	// LoadStart and LoadEnd are the 1-minute load averages at the start and
	// end of the run (each measurement records its own).
	LoadStart float64 `json:"load_start"`
	LoadEnd   float64 `json:"load_end"`
}

// depsOfInterest are the libraries whose versions a run records.
func depsOfInterest() []string {
	return []string{
		"github.com/quic-go/quic-go",
		"github.com/libp2p/go-libp2p",
		"github.com/pion/webrtc/v4",
		"github.com/pion/sctp",
		"gonum.org/v1/plot",
	}
}

// environment records the run's environment.
func environment(args []string) Env {
	e := Env{
		Start:      time.Now().UTC(),
		Command:    strings.Join(append([]string{"meshbench"}, args...), " "),
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS + "/" + runtime.GOARCH,
		Kernel:     readTrimmed("/proc/sys/kernel/osrelease"),
		CPUModel:   cpuModel(),
		NumCPU:     runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		Versions:   map[string]string{},
		LoadStart:  loadAverage(),
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		e.Module = info.Main.Path + " " + info.Main.Version
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				e.Revision = s.Value
			}
		}
		want := depsOfInterest()
		for _, d := range info.Deps {
			for _, w := range want {
				if d.Path == w {
					e.Versions[d.Path] = d.Version
				}
			}
		}
	}
	e.RmemMax, _ = strconv.Atoi(readTrimmed("/proc/sys/net/core/rmem_max"))
	e.WmemMax, _ = strconv.Atoi(readTrimmed("/proc/sys/net/core/wmem_max"))
	e.UDPRecvBuffer, e.UDPSendBuffer, e.GSO = probeUDP()
	return e
}

// readTrimmed returns a file's content without surrounding space, or "".
func readTrimmed(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// loadAverage is the 1-minute load average, or -1 if unknown.
func loadAverage() float64 {
	fields := strings.Fields(readTrimmed("/proc/loadavg"))
	if len(fields) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// probeUDP opens a quic-go listener on a loopback UDP socket, which makes
// quic-go size the socket's buffers, and reads what it obtained, and
// whether the kernel takes UDP_SEGMENT (GSO).
func probeUDP() (recv, send int, gso bool) {
	udp, err := loopbackUDP()
	if err != nil {
		return 0, 0, false
	}
	defer udp.Close()
	qt := &quicgo.Transport{Conn: udp}
	defer qt.Close()
	if tlsConf, err := selfSigned(); err == nil {
		if ln, err := qt.Listen(tlsConf, &quicgo.Config{}); err == nil {
			defer ln.Close()
		}
	}
	raw, err := udp.SyscallConn()
	if err != nil {
		return 0, 0, false
	}
	_ = raw.Control(func(fd uintptr) {
		recv, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		send, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
		_, serr := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		gso = serr == nil
	})
	if v, _ := strconv.ParseBool(os.Getenv("QUIC_GO_DISABLE_GSO")); v {
		gso = false
	}
	return recv, send, gso
}
