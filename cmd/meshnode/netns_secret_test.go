package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNetnsClosedCluster runs meshnode processes over QUIC in network
// namespaces, as TestNetnsCluster, with --secret-file: n1 and n2 hold the
// cluster's secret and form a mesh; n3 holds another secret and n4 none.
// Neither outsider gets in (both sides count the refusal, and the
// outsiders learn no record), the members talk, and no secret appears in
// any log.
func TestNetnsClosedCluster(t *testing.T) {
	requireNetns(t)
	deadline := time.Now().Add(60 * time.Second)
	lab := newLab(t, 4)
	secret := "the cluster's secret, 32 bytes.."
	good := filepath.Join(lab.dir, "secret")
	bad := filepath.Join(lab.dir, "other")
	for path, s := range map[string]string{good: secret, bad: "another secret, of 32 bytes too."} {
		if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	idFile := func(i int) string { return filepath.Join(lab.dir, fmt.Sprintf("id%d", i)) }
	lab.start(1, "--min-connections", "0", "--secret-file", good, "--id-file", idFile(1))
	lab.start(2, "--min-connections", "0", "--secret-file", good, "--id-file", idFile(2), "--join", lab.addr(1))
	lab.start(3, "--min-connections", "0", "--secret-file", bad, "--join", lab.addr(1))
	lab.start(4, "--min-connections", "0", "--join", lab.addr(1))
	ids := lab.nodeIDs(deadline, 1, 2, 3, 4)
	lab.eventually(deadline, "n1 and n2 neighbours, the outsiders refused on both sides", func() error {
		if err := lab.expectNeighbors(ids, map[int][]int{1: {2}, 2: {1}, 3: {}, 4: {}}); err != nil {
			return err
		}
		for _, i := range []int{1, 3, 4} {
			st, err := lab.status(i)
			if err != nil {
				return err
			}
			if st.Stats.AuthFailures == 0 {
				return fmt.Errorf("n%d has counted no refused handshake", i)
			}
		}
		return nil
	})
	for _, i := range []int{3, 4} {
		if tp, err := lab.topology(i); err != nil || len(tp.Nodes) != 1 {
			t.Fatalf("outsider n%d learnt %d records (%v)", i, len(tp.Nodes), err)
		}
	}
	rx := lab.recv(1)
	lab.send(2, ids[1], "members only")
	rx.expect(deadline, ids[2], "members only")
	if st, err := lab.status(1); err != nil || st.Stats.Forged != 0 {
		t.Fatalf("n1: %+v, %v", st.Stats, err)
	}
	for _, i := range []int{1, 2} {
		if fi, err := os.Stat(idFile(i) + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("n%d's identity key file: %v, %v", i, fi, err)
		}
	}
	for i := 1; i <= 4; i++ {
		lab.kill(i, syscall.SIGTERM)
	}
	for i := 1; i <= 4; i++ {
		lab.wait(i, 10*time.Second)
		b, err := os.ReadFile(lab.proc(i).log)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), secret) || strings.Contains(string(b), "another secret") {
			t.Fatalf("n%d logged a secret", i)
		}
	}
}
