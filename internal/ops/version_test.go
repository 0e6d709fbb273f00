package ops

import (
	"runtime/debug"
	"testing"
)

func TestVersionOf(t *testing.T) {
	cases := []struct {
		name string
		info debug.BuildInfo
		want string
	}{
		{"go run from a clone", debug.BuildInfo{GoVersion: "go1.26.8", Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "81366a1d2f3e4a5b6c7d8e9f"}, {Key: "vcs.time", Value: "2026-12-05T00:59:00Z"}, {Key: "vcs.modified", Value: "false"},
		}}, "meshnode (devel) revision 81366a1d2f3e 2026-12-05T00:59:00Z go1.26.8"},
		{"dirty tree", debug.BuildInfo{GoVersion: "go1.26.8", Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "81366a1"}, {Key: "vcs.modified", Value: "true"},
		}}, "meshnode (devel) revision 81366a1+dirty go1.26.8"},
		{"go build from a clone, Go 1.24 and later", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261205020340-74da89741d0e+dirty"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "74da89741d0e1234"}, {Key: "vcs.time", Value: "2026-12-05T02:03:40Z"}, {Key: "vcs.modified", Value: "true"}}},
			"meshnode v0.0.0-20261205020340-74da89741d0e+dirty 2026-12-05T02:03:40Z go1.26.8"},
		{"go install module@version", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.1.0"}},
			"meshnode v0.1.0 go1.26.8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := versionOf("meshnode", &c.info); got != c.want {
				t.Errorf("versionOf = %q, want %q", got, c.want)
			}
		})
	}
}
