package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/internal/ops"
	"github.com/distrirender/distrirender/internal/rtcsetup"
	"github.com/distrirender/distrirender/meshapi"
	"github.com/distrirender/distrirender/node"
)

// daemonDeps are what runDaemon takes from its surroundings, so that tests
// can run daemons in-process on the memory transport.
type daemonDeps struct {
	listen listenFunc
	logOut io.Writer
	// ready, if set, is called once the node and the API are up, with the
	// API's bound address ("" when disabled).
	ready func(n *node.Node, apiAddr string)
	// checkAddr checks the addresses given to POST /v1/connect (nil: none).
	checkAddr func(addr string) error
}

// Join back-off bounds: the first retry comes quickly (the seed may be
// starting at the same moment), later ones at most every maxJoinBackoff.
const (
	minJoinBackoff = 250 * time.Millisecond
	maxJoinBackoff = 10 * time.Second
)

func newLogger(w io.Writer, c *runConfig) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// runDaemon runs a node until ctx ends, then leaves the mesh (goodbyes to
// the neighbours), stops the API and returns nil. It returns an error only
// when start-up fails.
func runDaemon(ctx context.Context, c *runConfig, deps daemonDeps) error {
	log := newLogger(deps.logOut, c)
	id, sec, err := resolveIdentity(c, log)
	if err != nil {
		return err
	}
	spec := listenSpec{transport: c.Transport, addr: c.Listen}
	if spec.transport == "" {
		spec.transport = transportQUIC
	}
	where := c.Listen
	if c.Transport == transportWebRTC {
		// The peer ID is the node's UUID unless --peer-id names it.
		if id == uuid.Nil {
			id = uuid.New()
		}
		spec.addr, spec.signal, spec.ice = c.PeerID, c.Signal, c.ice
		spec.key, spec.servers = c.SignalKey, c.iceServers
		if spec.addr == "" {
			spec.addr = id.String()
		}
		if c.ServeSignal != "" {
			sig, err := rtcsetup.ServeKey(c.ServeSignal, c.SignalKey, log.With("component", "signal"))
			if err != nil {
				return fmt.Errorf("--serve-signal: %w", err)
			}
			// After the node, whose transport is a client of it.
			defer sig.Close()
			log.Info("signalling server listening; other nodes give --signal "+sig.PublicURL(), "addr", sig.Addr.String())
			if spec.signal == "" {
				spec.signal = sig.URL
			}
		}
		where = "peer " + spec.addr + " on signalling server " + spec.signal
	}
	tr, err := deps.listen(ctx, spec, log.With("component", "transport"))
	if err != nil {
		if ctx.Err() != nil {
			log.Info("stopped before the transport was up")
			return nil // SIGINT or SIGTERM while waiting for the signalling server
		}
		return fmt.Errorf("listen %s: %w", where, err)
	}
	if len(c.Advertise) > 0 {
		tr = &advertising{Transport: tr, addrs: c.Advertise}
	}
	opts := []node.Option{
		node.WithLogger(log.With("component", "node")),
		node.WithMaxConnections(c.MaxConnections),
		node.WithMinConnections(c.MinConnections),
	}
	if id != uuid.Nil {
		opts = append(opts, node.WithID(id))
	}
	opts = append(opts, sec...)
	if c.Name != "" {
		opts = append(opts, node.WithName(c.Name))
	}
	n, err := node.New(tr, opts...)
	if err != nil {
		tr.Close()
		return err
	}
	log = log.With("node", n.ID().String())
	log.Info("node started", "name", n.Name(), "epoch", n.Epoch(), "addrs", n.Addrs(), "transport", spec.transport, "listen", where)

	d := &daemon{cfg: c, n: n, log: log, kick: make(chan struct{}, 1)}
	api := meshapi.New(n, meshapi.Options{Logger: log.With("component", "api"), OnEvent: d.onEvent, AllowedHosts: c.APIAllowHost, CheckAddr: deps.checkAddr})
	reg := ops.NewRegistry()
	d.metrics = newDaemonMetrics(reg, n, api)
	d.probes = &probes{n: n, joining: len(c.Join) > 0 || c.Discover}
	ops.Mount(api, ops.Endpoints{Registry: reg, Live: d.probes.live, Ready: d.probes.ready, Pprof: c.Pprof})
	var hs *http.Server
	apiAddr := ""
	if c.API != "" {
		ln, err := net.Listen("tcp", c.API)
		if err != nil {
			n.Close()
			return fmt.Errorf("API: %w", err)
		}
		apiAddr = ln.Addr().String()
		hs = &http.Server{
			Handler:           api,
			ReadHeaderTimeout: 5 * time.Second,
			MaxHeaderBytes:    64 << 10,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		hs.RegisterOnShutdown(api.CloseStreams)
		warnIfExposed(log, c.API, apiAddr)
		log.Info("API listening", "addr", "http://"+apiAddr)
		d.wg.Go(func() {
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("API server stopped", "err", err)
			}
		})
	}

	if hs == nil {
		log.Info("API disabled")
	}

	pumpCtx, stopPump := context.WithCancel(context.Background())
	pumpDone := make(chan struct{})
	go func() {
		defer close(pumpDone)
		api.Run(pumpCtx)
	}()

	workCtx, stopWork := context.WithCancel(ctx)
	if len(c.Join) > 0 {
		d.wg.Go(func() { d.joinLoop(workCtx) })
	}
	if c.Discover {
		d.wg.Go(func() { d.discover(workCtx) })
	}
	if deps.ready != nil {
		deps.ready(n, apiAddr)
	}

	<-ctx.Done()
	log.Info("shutting down: leaving the mesh")
	d.probes.closed.Store(true)
	stopWork()
	// The node first, so that the neighbours get their goodbyes at once;
	// API calls still running then fail fast with 503.
	n.Close()
	if hs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
		if err := hs.Shutdown(sctx); err != nil {
			log.Warn("API shutdown", "err", err)
			hs.Close()
		}
		cancel()
	}
	// The pump ends by itself once the node is closed and drained; a
	// message delivered during shutdown has nobody left to read it.
	stopPump()
	<-pumpDone
	d.wg.Wait()
	log.Info("stopped")
	return nil
}

// warnIfExposed logs loudly when the unauthenticated API is reachable from
// other machines.
func warnIfExposed(log *slog.Logger, configured, bound string) {
	host, _, err := net.SplitHostPort(bound)
	if err != nil {
		return
	}
	ip, err := netip.ParseAddr(host)
	if err == nil && ip.IsLoopback() {
		return
	}
	log.Warn("THE API IS NOT ON LOOPBACK: it is unauthenticated, and anyone who can reach "+bound+
		" can read this node's messages and send as it. Bind it to 127.0.0.1 or put an authenticating proxy in front.",
		"api", configured)
}

// daemon is the running state of `meshnode run`.
type daemon struct {
	cfg  *runConfig
	n    *node.Node
	log  *slog.Logger
	kick chan struct{} // the node lost its last neighbour: join again
	wg   sync.WaitGroup

	metrics *daemonMetrics
	probes  *probes
}

// onEvent logs node events; it runs on the API's event pump and must not
// block.
func (d *daemon) onEvent(e node.Event) {
	d.metrics.event(e)
	switch e.Kind {
	case node.NeighborUp:
		d.log.Info("neighbour up", "peer", e.Peer)
	case node.NeighborDown:
		d.log.Info("neighbour down", "peer", e.Peer, "cause", errString(e.Err))
	case node.Connected:
		d.log.Info("connected to the mesh")
	case node.Disconnected:
		d.log.Warn("disconnected: no neighbours left")
		select {
		case d.kick <- struct{}{}:
		default:
		}
	case node.DeliveryFailed:
		d.log.Warn("delivery failed", "to", e.Peer, "broadcast", e.Broadcast, "index", e.Index, "err", errString(e.Err))
	case node.Redirected:
		d.log.Info("redirected by a full node", "by", e.Peer, "to", e.Addr)
	case node.TopologyChanged:
		d.log.Debug("topology changed")
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// joinLoop joins the mesh through the --join addresses: it tries each in
// turn, and all of them again with jittered exponential back-off, until one
// accepts. If the node later loses every neighbour it joins again, so a
// daemon survives its seeds restarting.
func (d *daemon) joinLoop(ctx context.Context) {
	backoff := minJoinBackoff
	for {
		joined, lastErr := d.joinOnce(ctx)
		if joined {
			backoff = minJoinBackoff
			// Drop a kick left from before this join.
			select {
			case <-d.kick:
			default:
			}
			select {
			case <-d.kick:
				// Give the node's own redialling a moment before joining anew.
				if !sleep(ctx, jitter(time.Second)) {
					return
				}
				if len(d.n.Neighbors()) > 0 {
					continue
				}
				d.log.Info("rejoining")
				continue
			case <-ctx.Done():
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		wait := jitter(backoff)
		d.log.Info("could not join yet; retrying", "in", wait.Round(time.Millisecond), "last_err", errString(lastErr))
		if !sleep(ctx, wait) {
			return
		}
		backoff = min(2*backoff, maxJoinBackoff)
	}
}

// joinOnce tries the join addresses in turn until one accepts, and reports
// whether one did, or else the last error.
func (d *daemon) joinOnce(ctx context.Context) (bool, error) {
	var last error
	for _, addr := range d.cfg.Join {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		actx, cancel := context.WithTimeout(ctx, d.cfg.JoinTimeout)
		err := d.n.Connect(actx, addr)
		cancel()
		switch {
		case err == nil:
			d.log.Info("joined the mesh", "through", addr)
			return true, nil
		case errors.Is(err, node.ErrDuplicateEdge):
			return true, nil
		case errors.Is(err, node.ErrClosed) || ctx.Err() != nil:
			return false, err
		default:
			d.log.Debug("join attempt failed", "addr", addr, "err", err)
			last = err
		}
	}
	return false, last
}

// jitter spreads d over [d/2, 3d/2).
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d)
}

// sleep waits for d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
