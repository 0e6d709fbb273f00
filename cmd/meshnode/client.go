package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/meshapi"
	"github.com/distrirender/distrirender/message"
)

// clientTimeout bounds every client call but recv.
const clientTimeout = 30 * time.Second

// cmdClient runs one of the client subcommands against a node's API.
func cmdClient(ctx context.Context, cmd string, args []string, stdin io.Reader, stdout, stderr io.Writer, env []string) error {
	fs := flag.NewFlagSet("meshnode "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", "", "`PATH` of a config file; its \"api\" key is used")
	api := fs.String("api", "127.0.0.1:7070", "`HOST:PORT` (or URL) of the node's API")
	asJSON := fs.Bool("json", false, "print the API's JSON instead of text")
	var events *bool
	if cmd == "recv" {
		events = fs.Bool("events", false, "print node events (neighbour up/down, delivery failed...) too")
	}
	pos, err := loadConfig(fs, args, env, true)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	want := map[string]int{"status": 0, "topology": 0, "recv": 0, "send": 2, "broadcast": 1, "connect": 1}[cmd]
	if len(pos) != want {
		return usageError{fmt.Errorf("want %d arguments, got %d (see meshnode help)", want, len(pos))}
	}
	cl := meshapi.NewClient(*api)
	err = runClient(ctx, cmd, cl, pos, stdin, stdout, stderr, *asJSON, events)
	var dial *net.OpError
	if errors.As(err, &dial) && dial.Op == "dial" {
		return fmt.Errorf("no meshnode API at %s: is \"meshnode run\" running there? (--api or MESHNODE_API names it): %w", *api, err)
	}
	return err
}

// runClient runs client command cmd with its positional arguments pos.
func runClient(ctx context.Context, cmd string, cl *meshapi.Client, pos []string, stdin io.Reader, stdout, stderr io.Writer, asJSONFlag bool, events *bool) error {
	asJSON := &asJSONFlag
	var err error
	if cmd == "recv" {
		return recv(ctx, cl, *events, *asJSON, stdout, stderr)
	}
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	var out any
	switch cmd {
	case "status":
		st, err := cl.Status(ctx)
		if err != nil {
			return err
		}
		if !*asJSON {
			// The neighbours' names are in the topology.
			tp, err := cl.Topology(ctx)
			if err != nil {
				return err
			}
			printStatus(stdout, st, tp)
			return nil
		}
		out = st
	case "topology":
		tp, err := cl.Topology(ctx)
		if err != nil {
			return err
		}
		if !*asJSON {
			printTopology(stdout, tp)
			return nil
		}
		out = tp
	case "send", "broadcast":
		text := pos[len(pos)-1]
		body := []byte(text)
		if text == "-" {
			if body, err = io.ReadAll(io.LimitReader(stdin, message.DefaultMaxBody+1)); err != nil {
				return err
			}
		}
		var r meshapi.SendResponse
		if cmd == "send" {
			r, err = cl.Send(ctx, pos[0], body)
		} else {
			r, err = cl.Broadcast(ctx, body)
		}
		if err != nil {
			return err
		}
		if !*asJSON {
			switch {
			case r.To != nil && r.Reachable != nil && !*r.Reachable:
				fmt.Fprintf(stdout, "accepted for %s (no route to it yet)\n", r.To)
			case r.To != nil:
				fmt.Fprintf(stdout, "accepted for %s\n", r.To)
			case r.Nodes != nil:
				fmt.Fprintf(stdout, "accepted for %d nodes\n", *r.Nodes)
			}
			return nil
		}
		out = r
	case "connect":
		r, err := cl.Connect(ctx, pos[0])
		if err != nil {
			return err
		}
		if !*asJSON {
			fmt.Fprintf(stdout, "connected; %d neighbours\n", len(r.Neighbors))
			return nil
		}
		out = r
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// recv prints a node's received messages (and events) until ctx ends or the
// daemon ends the stream (it stopped, as systemctl stop does), both normal
// exits, said on stderr in the second case. A stream cut otherwise is an
// error.
func recv(ctx context.Context, cl *meshapi.Client, events, asJSON bool, stdout, stderr io.Writer) error {
	err := cl.Stream(ctx, events, func(ev meshapi.StreamEvent) error {
		if asJSON {
			// One JSON object per line: {"type": ..., "data": {...}}.
			b, err := json.Marshal(struct {
				Type string          `json:"type"`
				Data json.RawMessage `json:"data"`
			}{ev.Type, ev.Data})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "%s\n", b)
			return err
		}
		line, err := formatEvent(ev)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, line)
		return err
	})
	if ctx.Err() != nil {
		return nil
	}
	if errors.Is(err, io.EOF) {
		fmt.Fprintln(stderr, "meshnode recv: the node ended the stream: it stopped")
		return nil
	}
	return err
}

// formatEvent renders a stream event as one human-readable line.
func formatEvent(ev meshapi.StreamEvent) (string, error) {
	switch ev.Type {
	case "ready":
		var r meshapi.Ready
		if err := json.Unmarshal(ev.Data, &r); err != nil {
			return "", err
		}
		return fmt.Sprintf("# receiving as %s", r.ID), nil
	case "message":
		var m meshapi.Message
		if err := json.Unmarshal(ev.Data, &m); err != nil {
			return "", err
		}
		b, err := m.Bytes()
		if err != nil {
			return "", err
		}
		kind := "from"
		if m.Broadcast {
			kind = "broadcast from"
		}
		return fmt.Sprintf("%s %s #%d: %s", kind, m.From, m.Index, oneLine(meshapi.Text(b))), nil
	case "dropped":
		var dr meshapi.Dropped
		if err := json.Unmarshal(ev.Data, &dr); err != nil {
			return "", err
		}
		return fmt.Sprintf("# %d messages or events dropped: this client reads too slowly", dr.Count), nil
	default:
		var e meshapi.Event
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			return "", err
		}
		s := "* " + ev.Type
		if e.Peer != nil {
			s += " " + e.Peer.String()
		}
		if e.Addr != "" {
			s += " " + e.Addr
		}
		if e.Index != nil {
			s += fmt.Sprintf(" #%d", *e.Index)
		}
		if e.Error != "" {
			s += ": " + e.Error
		}
		return s, nil
	}
}

// oneLine escapes line breaks so that one message stays one line.
func oneLine(s string) string {
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
}

// printStatus prints st, with the names of the neighbours that tp knows.
func printStatus(w io.Writer, st meshapi.Status, tp meshapi.Topology) {
	names := map[uuid.UUID]string{}
	for _, n := range tp.Nodes {
		names[n.ID] = n.Name
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "id\t%s\n", st.ID)
	fmt.Fprintf(tw, "name\t%s\n", displayName(st.Name))
	fmt.Fprintf(tw, "epoch\t%d\n", st.Epoch)
	fmt.Fprintf(tw, "addresses\t%s\n", strings.Join(st.Addrs, ", "))
	fmt.Fprintf(tw, "neighbours\t%d\n", len(st.Neighbors))
	for _, n := range st.Neighbors {
		if name := names[n]; name != "" {
			fmt.Fprintf(tw, "\t%s  %s\n", n, meshapi.Printable(name))
		} else {
			fmt.Fprintf(tw, "\t%s\n", n)
		}
	}
	fmt.Fprintf(tw, "mesh\t%d reachable of %d known\n", st.Reachable, st.Known)
	s := st.Stats
	fmt.Fprintf(tw, "messages\t%d delivered, %d failed, %d retransmits, %d duplicates\n", s.Delivered, s.Failed, s.Retransmits, s.Duplicates)
	fmt.Fprintf(tw, "frames\t%d in, %d out, %d forwarded, %d link-state\n", s.FramesIn, s.FramesOut, s.Forwarded, s.TopologyFrames)
	fmt.Fprintf(tw, "dropped\t%d forward buffer, %d no route, %d hop limit, %d hostile\n", s.DroppedForward, s.DroppedNoRoute, s.DroppedHopLimit, s.Hostile)
	fmt.Fprintf(tw, "edges\t%d up, %d down\n", s.NeighborsUp, s.NeighborsDown)
	a := st.API
	fmt.Fprintf(tw, "api\t%d streams, %d received, %d with no stream, %d dropped by slow streams\n", a.Subscribers, a.Received, a.Unsubscribed, a.StreamDropped)
	tw.Flush()
}

func printTopology(w io.Writer, tp meshapi.Topology) {
	reach := 0
	for _, n := range tp.Nodes {
		if n.Distance >= 0 {
			reach++
		}
	}
	fmt.Fprintf(w, "%d nodes (%d reachable), diameter %d, as %s sees it\n", len(tp.Nodes), reach, tp.Diameter, short(tp.Self))
	nodes := slices.Clone(tp.Nodes)
	slices.SortStableFunc(nodes, func(a, b meshapi.NodeInfo) int {
		da, db := a.Distance, b.Distance
		if da < 0 {
			da = 1 << 30
		}
		if db < 0 {
			db = 1 << 30
		}
		return da - db
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNAME\tDIST\tVIA\tFREE\tADDRESSES\tNEIGHBOURS")
	for _, n := range nodes {
		dist, via := "-", "-"
		if n.Distance >= 0 {
			dist = fmt.Sprint(n.Distance)
		}
		if n.NextHop != nil {
			via = short(*n.NextHop)
		}
		name := n.ID.String()
		if n.ID == tp.Self {
			name += " (self)"
		}
		var nb []string
		for _, id := range n.Neighbors {
			nb = append(nb, short(id))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", name, displayName(n.Name), dist, via, n.FreeSlots, strings.Join(n.Addrs, ","), strings.Join(nb, " "))
	}
	tw.Flush()
}

func short(id uuid.UUID) string { return id.String()[:8] }

// displayName is a node's name as a table shows it: "-" for none.
func displayName(name string) string {
	if name == "" {
		return "-"
	}
	return meshapi.Printable(name)
}
