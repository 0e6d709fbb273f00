package node

import "testing"

func TestGate(t *testing.T) {
	for _, tc := range []struct{ addr, src string }{
		{"10.0.0.1:4242", "10.0.0.1"},
		{"[fe80::1]:4242", "fe80::1"},
		{"127.0.0.1:4242", ""},
		{"[::1]:1", ""},
		{"n3", "n3"},
	} {
		if got := source(tc.addr); got != tc.src {
			t.Errorf("source(%q) = %q, want %q", tc.addr, got, tc.src)
		}
	}
	g := newGate(3, 2)
	if !g.enter("a") || !g.enter("a") || g.enter("a") {
		t.Fatal("per-source limit of 2 not kept")
	}
	if !g.enter("") || g.enter("") || g.enter("b") {
		t.Fatal("total limit of 3 not kept")
	}
	g.leave("a")
	if !g.enter("a") {
		t.Fatal("a place freed was not reused")
	}
	for _, s := range []string{"a", "a", ""} {
		g.leave(s)
	}
	if g.total != 0 || len(g.bySource) != 0 {
		t.Fatalf("gate not empty: %d, %v", g.total, g.bySource)
	}
}
