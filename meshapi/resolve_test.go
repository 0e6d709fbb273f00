package meshapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/routing"
)

func TestResolveNode(t *testing.T) {
	alpha := uuid.MustParse("d49365c9-2413-4ec8-87ed-441e7f200724")
	beta := uuid.MustParse("d4936f00-22a1-4a6e-b7af-4e12dc9e3dec")
	gamma := uuid.MustParse("f3fe0154-1df8-46a7-aaf7-b32de25a655c")
	delta := uuid.MustParse("0badcafe-0000-4000-8000-000000000001")
	echo := uuid.MustParse("0bad0000-0000-4000-8000-000000000002")
	unknown := uuid.MustParse("5b1a0000-0000-4000-8000-000000000000")
	tp := routing.Topology{Self: alpha, Nodes: []routing.NodeInfo{
		{ID: delta, Name: "twin"},
		{ID: echo, Name: "twin"},
		{ID: alpha, Name: "alpha"},
		{ID: beta, Name: "cafe"}, // a name that is also a hex prefix
		{ID: gamma},
	}}
	cases := []struct {
		name, ref string
		want      uuid.UUID
		err       error  // nil: success
		msg       string // substring of the error
	}{
		{"full UUID", gamma.String(), gamma, nil, ""},
		{"full UUID upper case", strings.ToUpper(gamma.String()), gamma, nil, ""},
		{"full UUID unknown", unknown.String(), unknown, nil, ""},
		{"prefix", "f3fe", gamma, nil, ""},
		{"prefix of 8", "d49365c9", alpha, nil, ""},
		{"prefix upper case", "F3FE01", gamma, nil, ""},
		{"prefix with hyphens", "d49365c9-2413", alpha, nil, ""},
		{"prefix hyphen anywhere", "f3-fe", gamma, nil, ""},
		{"32 hex digits", strings.ReplaceAll(gamma.String(), "-", ""), gamma, nil, ""},
		{"too short", "f3f", uuid.Nil, ErrUnknownNode, "at least 4 hex digits"},
		{"too short with hyphens", "f-3-f", uuid.Nil, ErrUnknownNode, "at least 4 hex digits"},
		{"ambiguous prefix", "d493", uuid.Nil, ErrAmbiguousNode, "alpha (d49365c9), cafe (d4936f00)"},
		{"ambiguous unnamed", "0bad", uuid.Nil, ErrAmbiguousNode, "matches 2 nodes: twin (0bad0000), twin (0badcafe)"},
		{"unique name", "alpha", alpha, nil, ""},
		{"name that is hex", "cafe", beta, nil, ""},
		{"name and prefix of others", "0bad-cafe", delta, nil, ""},
		{"duplicate name", "twin", uuid.Nil, ErrAmbiguousNode, "twin (0bad0000), twin (0badcafe)"},
		{"name is case sensitive", "Alpha", uuid.Nil, ErrUnknownNode, `"Alpha" is neither`},
		{"unknown name", "omega", uuid.Nil, ErrUnknownNode, "5 known"},
		{"unknown prefix", "abcdef", uuid.Nil, ErrUnknownNode, "neither a UUID"},
		{"too long for a prefix", strings.Repeat("a", 33), uuid.Nil, ErrUnknownNode, "neither a UUID"},
		{"empty", "", uuid.Nil, ErrUnknownNode, "empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveNode(tp, tc.ref)
			if tc.err == nil {
				if err != nil || got != tc.want {
					t.Fatalf("ResolveNode(%q) = %v, %v; want %v", tc.ref, got, err, tc.want)
				}
				return
			}
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("ResolveNode(%q) = %v, %v; want %v containing %q", tc.ref, got, err, tc.err, tc.msg)
			}
			if got != uuid.Nil {
				t.Errorf("ResolveNode(%q) returned %v with its error", tc.ref, got)
			}
		})
	}
}

// TestSendAmbiguous checks that POST /v1/send answers an ambiguous name
// with a JSON 400 naming the candidates.
func TestSendAmbiguous(t *testing.T) {
	f := newFake()
	a, b := uuid.New(), uuid.New()
	f.others = []routing.NodeInfo{{ID: a, Name: "twin"}, {ID: b, Name: "twin"}}
	srv := New(f, Options{})
	rec := httptest.NewRecorder()
	req := localReq(http.MethodPost, "/v1/send", strings.NewReader(`{"to":"twin","body":"x"}`))
	req.Header.Set("Content-Type", "application/json")
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400; body %s", rec.Code, rec.Body)
	}
	body := rec.Body.String()
	for _, want := range []string{`"error"`, "matches 2 nodes", a.String()[:8], b.String()[:8]} {
		if !strings.Contains(body, want) {
			t.Errorf("body %s does not contain %q", body, want)
		}
	}
}

func TestLabel(t *testing.T) {
	id := uuid.MustParse("d49365c9-2413-4ec8-87ed-441e7f200724")
	for _, tc := range []struct{ name, want string }{
		{"", id.String()},
		{"alpha", "alpha (d49365c9)"},
		{"two\nlines", `"two\nlines" (d49365c9)`},
		{"\xff", `"\xff" (d49365c9)`},
	} {
		if got := Label(id, tc.name); got != tc.want {
			t.Errorf("Label(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestCheckName(t *testing.T) {
	cases := []struct {
		name string
		err  string // substring; "" for a good name
	}{
		{"", ""},
		{"alpha", ""},
		{"render 01", ""},
		{"Zürich-Ω", ""},
		{strings.Repeat("x", 64), ""},
		{strings.Repeat("x", 65), "65 bytes: want at most 64"},
		{strings.Repeat("é", 33), "66 bytes"},
		{"\xff", "not UTF-8"},
		{"a\tb", "control characters"},
		{"a\nb", "control characters"},
		{"\x00", "control characters"},
		{"\u0085x", "control characters"},
		{" alpha", "leading or trailing spaces"},
		{"alpha ", "leading or trailing spaces"},
	}
	for _, tc := range cases {
		err := CheckName(tc.name)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("CheckName(%q) = %v, want %q", tc.name, err, tc.err)
		}
	}
}
