package routing

import (
	"errors"
	"strconv"
)

// Verdict is the outcome of applying a remote record or edge change.
type Verdict uint8

const (
	// Accepted: the input was newer and is now stored. The caller re-floods it
	// to every neighbour except the one it came from.
	Accepted Verdict = iota
	// Duplicate: the stored record has exactly this (epoch, seq). Drop it.
	Duplicate
	// Stale: the stored record is newer, or the input claims to come from the
	// local node. Drop it.
	Stale
	// Gap: an edge change that cannot be applied because its predecessor is
	// missing (no record, an older epoch, or missed sequence numbers). The
	// caller asks the sender for the full record with network_state_request
	// and does not re-flood the change.
	Gap
	// Rejected: hostile or malformed input; the error says why. Drop it; the
	// caller may count it against the sending neighbour.
	Rejected
)

// String returns the verdict's lower-case name.
func (v Verdict) String() string {
	switch v {
	case Accepted:
		return "accepted"
	case Duplicate:
		return "duplicate"
	case Stale:
		return "stale"
	case Gap:
		return "gap"
	case Rejected:
		return "rejected"
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}

// Errors returned with the Rejected verdict, wrapped with %w and a detail.
var (
	// ErrAbsurdSeq: the sequence number jumps more than Config.MaxSeqJump over
	// the stored record of the same epoch.
	ErrAbsurdSeq = errors.New("routing: absurd sequence number")
	// ErrAbsurdEpoch: the epoch lies more than Config.MaxEpochSkew in the
	// future.
	ErrAbsurdEpoch = errors.New("routing: absurd epoch")
	// ErrInvalidState: the record or change is malformed (nil origin, nil or
	// self-referencing neighbour, unsorted or duplicate neighbours, more
	// neighbours or addresses than the message package allows, an empty,
	// overlong or non-UTF-8 address).
	ErrInvalidState = errors.New("routing: invalid state")
	// ErrTableFull: a record for a new origin would exceed Config.MaxRecords,
	// or a record's neighbours would exceed Config.MaxNeighborEntries.
	ErrTableFull = errors.New("routing: table full")
	// ErrForged: with a Config.Signer, a record or change that its origin
	// did not sign (no signature, a key that is not the origin's, or a
	// signature that does not match the record it produces).
	ErrForged = errors.New("routing: not signed by its origin")
)
