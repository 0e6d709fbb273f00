package meshapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/distrirender/distrirender/internal/ops"
)

// openAPIDoc is the part of an OpenAPI document the test reads.
type openAPIDoc struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
	Comps   struct {
		Schemas map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
			Required   []string                   `json:"required"`
		} `json:"schemas"`
	} `json:"components"`
}

// TestOpenAPIRoutes checks that openapi.json describes exactly the routes
// of the daemon's API: the server's own and the operations endpoints that
// meshnode mounts on it (pprof, off by default, is left out).
func TestOpenAPIRoutes(t *testing.T) {
	var doc openAPIDoc
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	srv := New(newFake(), Options{})
	ops.Mount(srv, ops.Endpoints{Registry: prometheus.NewRegistry()})
	served := srv.Routes()
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Errorf("openapi.json documents\n  %q\nthe server serves\n  %q", documented, served)
	}
	// The document is served too.
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, localReq(http.MethodGet, "/v1/openapi.json", nil))
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), OpenAPI()) {
		t.Errorf("GET /v1/openapi.json: %d", rec.Code)
	}
}

// TestOpenAPISchemas checks every schema of openapi.json against the Go
// type it describes: the same JSON fields, and the ones without omitempty
// required. Every $ref must resolve.
func TestOpenAPISchemas(t *testing.T) {
	var doc openAPIDoc
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	types := map[string]any{
		"Status": Status{}, "Stats": Stats{}, "APIStats": APIStats{}, "Topology": Topology{}, "NodeInfo": NodeInfo{},
		"SendRequest": SendRequest{}, "BroadcastRequest": BroadcastRequest{}, "SendResponse": SendResponse{},
		"ConnectRequest": ConnectRequest{}, "ConnectResponse": ConnectResponse{}, "Message": Message{}, "Event": Event{},
		"Ready": Ready{}, "Dropped": Dropped{}, "Error": Error{}, "Probe": ops.ProbeResult{}, "Snapshot": Snapshot{},
	}
	for name := range doc.Comps.Schemas {
		if _, ok := types[name]; !ok {
			t.Errorf("schema %s has no Go type in the test", name)
		}
	}
	for name, v := range types {
		sc, ok := doc.Comps.Schemas[name]
		if !ok {
			t.Errorf("no schema for %s", name)
			continue
		}
		var fields, required, props []string
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			tag := rt.Field(i).Tag.Get("json")
			if tag == "" || tag == "-" {
				continue
			}
			fname, opts, _ := strings.Cut(tag, ",")
			fields = append(fields, fname)
			if !strings.Contains(opts, "omitempty") {
				required = append(required, fname)
			}
		}
		for p := range sc.Properties {
			props = append(props, p)
		}
		for _, l := range [][]string{fields, required, props, sc.Required} {
			slices.Sort(l)
		}
		if !slices.Equal(fields, props) {
			t.Errorf("%s: schema properties %q, Go fields %q", name, props, fields)
		}
		if !slices.Equal(required, sc.Required) {
			t.Errorf("%s: schema requires %q, Go always has %q", name, sc.Required, required)
		}
	}
	for _, ref := range strings.Split(string(OpenAPI()), `"$ref": "#/components/schemas/`)[1:] {
		name, _, _ := strings.Cut(ref, `"`)
		if _, ok := doc.Comps.Schemas[name]; !ok {
			t.Errorf("$ref to missing schema %s", name)
		}
	}
}
