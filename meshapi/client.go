package meshapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/distrirender/distrirender/message"
)

// Client talks to a node's API.
type Client struct {
	// BaseURL is the API's root, e.g. "http://127.0.0.1:7070".
	BaseURL string
	// HTTP is the client used; nil means http.DefaultClient. Bound unary
	// calls with their ctx: a timeout on the http.Client would also cut
	// streams.
	HTTP *http.Client
}

// NewClient returns a Client for the API at addr, either "host:port" or a
// URL starting with http:// or https://.
func NewClient(addr string) *Client {
	if !strings.HasPrefix(addr, "http://") && !strings.HasPrefix(addr, "https://") {
		addr = "http://" + addr
	}
	return &Client{BaseURL: strings.TrimRight(addr, "/")}
}

// APIError is a non-2xx answer from the API.
type APIError struct {
	Status  int    // the HTTP status code
	Message string // the "error" field of the answer, or its start
}

// Error returns "status text: message".
func (e *APIError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

// do sends a request and decodes a 2xx JSON answer into out.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return apiError(resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("meshapi: decoding %s %s: %w", method, path, err)
	}
	return nil
}

func apiError(code int, b []byte) error {
	var e Error
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return &APIError{Status: code, Message: e.Error}
	}
	msg := strings.TrimSpace(string(b))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return &APIError{Status: code, Message: msg}
}

// Status calls GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
	return s, err
}

// Topology calls GET /v1/topology.
func (c *Client) Topology(ctx context.Context) (Topology, error) {
	var t Topology
	err := c.do(ctx, http.MethodGet, "/v1/topology", nil, &t)
	return t, err
}

// Send calls POST /v1/send; to is the destination's UUID as text (the
// server validates it). A UTF-8 body travels as text, any other as base64.
func (c *Client) Send(ctx context.Context, to string, body []byte) (SendResponse, error) {
	req := SendRequest{To: to}
	req.Body, req.BodyBase64 = encodeBody(body)
	var r SendResponse
	err := c.do(ctx, http.MethodPost, "/v1/send", req, &r)
	return r, err
}

// Broadcast calls POST /v1/broadcast.
func (c *Client) Broadcast(ctx context.Context, body []byte) (SendResponse, error) {
	var req BroadcastRequest
	req.Body, req.BodyBase64 = encodeBody(body)
	var r SendResponse
	err := c.do(ctx, http.MethodPost, "/v1/broadcast", req, &r)
	return r, err
}

// Connect calls POST /v1/connect.
func (c *Client) Connect(ctx context.Context, addr string) (ConnectResponse, error) {
	var r ConnectResponse
	err := c.do(ctx, http.MethodPost, "/v1/connect", ConnectRequest{Addr: addr}, &r)
	return r, err
}

// StreamEvent is one event of a /v1/recv stream: Type is the SSE event type
// ("ready", "message", "dropped", or a node event kind such as
// "neighbor-down") and Data its JSON.
type StreamEvent struct {
	// Type is the SSE event type.
	Type string
	// Data is the event's JSON: Ready, Message, Dropped or Event.
	Data json.RawMessage
}

// maxSSELine bounds one line of a stream: a 1 MiB body, escaped as JSON
// text, can take 6 MiB.
const maxSSELine = 6*message.DefaultMaxBody + 64<<10

// Stream opens GET /v1/recv (with node events if events) and calls fn for
// each event until ctx ends, the stream ends, or fn returns an error, which
// Stream returns. The first event is always "ready".
func (c *Client) Stream(ctx context.Context, events bool, fn func(StreamEvent) error) error {
	path := "/v1/recv"
	if events {
		path += "?events=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return apiError(resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxSSELine)
	var ev StreamEvent
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if ev.Type != "" || data != nil {
				if ev.Type == "" {
					ev.Type = "message" // the SSE default
				}
				ev.Data = json.RawMessage(data)
				if err := fn(ev); err != nil {
					return err
				}
			}
			ev, data = StreamEvent{}, nil
		case line[0] == ':':
			// A comment: heartbeat.
		default:
			field, value, _ := bytes.Cut(line, []byte(":"))
			value = bytes.TrimPrefix(value, []byte(" "))
			switch string(field) {
			case "event":
				ev.Type = string(value)
			case "data":
				if data != nil {
					data = append(data, '\n')
				}
				data = append(data, value...)
			}
		}
	}
	if err := sc.Err(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("meshapi: reading stream: %w", err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return io.EOF
}

// Text returns body as text if it is valid UTF-8, or else as base64 with a
// "base64:" prefix: a form fit for a terminal line.
func Text(body []byte) string {
	if utf8.Valid(body) {
		return string(body)
	}
	return "base64:" + base64.StdEncoding.EncodeToString(body)
}
