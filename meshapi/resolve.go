package meshapi

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/routing"
)

// MinPrefix is the fewest hex digits of a UUID prefix that ResolveNode
// accepts: fewer would match too many nodes to be worth typing.
const MinPrefix = 4

// ErrUnknownNode is returned (wrapped) by ResolveNode when nothing names a
// node of the topology, ErrAmbiguousNode when more than one node matches.
var (
	ErrUnknownNode   = errors.New("no such node")
	ErrAmbiguousNode = errors.New("ambiguous node")
)

// ResolveNode finds the node that ref names in tp, as the API and the
// command line take it: a full UUID (in any form uuid.Parse accepts), a
// prefix of a known node's UUID of at least MinPrefix hex digits (hyphens
// optional, case ignored), or a known node's exact name. A full UUID is
// returned as it is, known or not: a message to a node not yet in the
// topology is fine. A prefix or a name must match exactly one node (a
// prefix that is also another node's name is ambiguous); otherwise the
// error, wrapping ErrUnknownNode or ErrAmbiguousNode, names the candidates.
func ResolveNode(tp routing.Topology, ref string) (uuid.UUID, error) {
	if ref == "" {
		return uuid.Nil, fmt.Errorf("%w: empty node reference", ErrUnknownNode)
	}
	if id, err := uuid.Parse(ref); err == nil {
		return id, nil
	}
	hex, isPrefix := hexPrefix(ref)
	var matches []routing.NodeInfo
	for _, n := range tp.Nodes {
		if n.Name == ref || isPrefix && strings.HasPrefix(strings.ReplaceAll(n.ID.String(), "-", ""), hex) {
			matches = append(matches, n)
		}
	}
	switch len(matches) {
	case 1:
		return matches[0].ID, nil
	case 0:
		if !isPrefix && len(hex) > 0 && len(hex) < MinPrefix {
			return uuid.Nil, fmt.Errorf("%w: %q is no node's name, and a UUID prefix needs at least %d hex digits", ErrUnknownNode, ref, MinPrefix)
		}
		return uuid.Nil, fmt.Errorf("%w: %q is neither a UUID nor the prefix or name of a node this node knows (%d known)", ErrUnknownNode, ref, len(tp.Nodes))
	}
	cands := make([]string, 0, len(matches))
	for _, n := range matches {
		cands = append(cands, Label(n.ID, n.Name))
	}
	slices.Sort(cands)
	return uuid.Nil, fmt.Errorf("%w: %q matches %d nodes: %s (give more of the UUID)", ErrAmbiguousNode, ref, len(matches), strings.Join(cands, ", "))
}

// hexPrefix returns ref without hyphens, lower case, and whether it can be
// a UUID prefix: only hex digits and hyphens, with at least MinPrefix
// digits and at most 32. When ref has only hex digits and hyphens but too
// few digits, it returns them and false.
func hexPrefix(ref string) (string, bool) {
	hex := strings.ToLower(strings.ReplaceAll(ref, "-", ""))
	for _, c := range hex {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", false
		}
	}
	return hex, len(hex) >= MinPrefix && len(hex) <= 32
}

// Label is how a node is shown to people: "name (8-char prefix)", or the
// whole UUID when it has no name. The name is as Printable makes it.
func Label(id uuid.UUID, name string) string {
	if name == "" {
		return id.String()
	}
	return fmt.Sprintf("%s (%s)", Printable(name), id.String()[:8])
}

// Printable returns a node's name fit for one line of a terminal: as it
// is, or Go-quoted if it has control characters or is not UTF-8 (CheckName
// refuses those, but names come from every node of the mesh).
func Printable(name string) string {
	if strings.IndexFunc(name, func(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError }) >= 0 {
		return strconv.Quote(name)
	}
	return name
}

// CheckName checks a node name given to a command (meshnode run --name,
// distrirender --name): what the protocol carries (at most
// message.MaxNameLen bytes of UTF-8, message.ValidateName), and no control
// characters or surrounding spaces, which would garble the lines that show
// it. The empty name (no name) is fine.
func CheckName(name string) error {
	switch {
	case len(name) > message.MaxNameLen:
		return fmt.Errorf("%d bytes: want at most %d", len(name), message.MaxNameLen)
	case !utf8.ValidString(name):
		return errors.New("not UTF-8")
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return errors.New("control characters (tabs, line breaks...) are not allowed")
	case strings.TrimSpace(name) != name:
		return errors.New("leading or trailing spaces are not allowed")
	}
	if err := message.ValidateName(name); err != nil {
		return fmt.Errorf("not a valid node name: %w", err)
	}
	return nil
}
