package ops

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// Version returns the one line that --version prints for program: the main
// module's version, the VCS revision and time it was built from (with
// "+dirty" when the tree had uncommitted changes) and the Go version, as
// recorded in the binary. "go run" and "go build" from a clone record the
// revision; "go install module@version" records the version.
func Version(program string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return program + " (no build information)"
	}
	return versionOf(program, info)
}

// versionOf formats the build information info.
func versionOf(program string, info *debug.BuildInfo) string {
	version := info.Main.Version
	if version == "" {
		version = "(devel)"
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	parts := []string{program, version}
	if rev := settings["vcs.revision"]; rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if settings["vcs.modified"] == "true" {
			rev += "+dirty"
		}
		// Go 1.24 and later make a pseudo-version from the revision: say it
		// once.
		if !strings.Contains(version, strings.TrimSuffix(rev, "+dirty")) {
			parts = append(parts, "revision "+rev)
		}
	}
	if t := settings["vcs.time"]; t != "" {
		parts = append(parts, t)
	}
	parts = append(parts, info.GoVersion)
	return strings.Join(parts, " ")
}

// IsVersionFlag reports whether arg asks for the version: "--version",
// "-version" or "version".
func IsVersionFlag(arg string) bool {
	switch arg {
	case "--version", "-version", "version":
		return true
	}
	return false
}

// PrintVersion writes Version(program) and a newline to w.
func PrintVersion(w io.Writer, program string) {
	fmt.Fprintln(w, Version(program))
}
