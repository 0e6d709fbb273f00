package reliability

import (
	"errors"
	"fmt"
	"time"
)

// Defaults and limits. Both ends of a stream must use the same Window and
// Modulo: they are protocol constants, not local tuning.
const (
	// DefaultWindow is the most messages in flight per stream, and what a
	// receiver buffers ahead of its delivery point: 256. A stream starts at
	// InitialWindow and congestion control grows it up to Window.
	DefaultWindow = 256
	// DefaultInitialWindow is the seed design's buffer size, 10 messages:
	// the window every stream starts with (RFC 9002's initial window is
	// 10 packets too).
	DefaultInitialWindow = 10
	// DefaultModulo is the seed design's index space, 0..9,999.
	DefaultModulo = 10000
	// DefaultInitialRTO is the retransmission timeout before the first RTT
	// sample. RFC 6298 recommends 1 s for the open Internet; a LAN mesh has
	// sub-millisecond links and a few hops, so 200 ms is conservative by two
	// orders of magnitude while keeping the first repair fast.
	DefaultInitialRTO = 200 * time.Millisecond
	// DefaultMinRTO is the lowest timeout ever used. It absorbs forwarding
	// delays at busy intermediate nodes and Go scheduler pauses (a few ms),
	// which an RTT variance from quiet periods does not predict.
	DefaultMinRTO = 20 * time.Millisecond
	// DefaultMaxRTO caps the backed-off timeout and the probe interval.
	DefaultMaxRTO = 5 * time.Second
	// DefaultMaxRetries is the number of retransmissions of one message to one
	// target before that copy fails. With the defaults the sender gives up
	// 20 s (RTO 20 ms) to 36 s (RTO 200 ms) after the first transmission.
	DefaultMaxRetries = 10

	// MaxWindow is the largest Window: an ack's SACK bitmap then takes at
	// most 128 bytes.
	MaxWindow = 1024
	// MaxModulo is the largest Modulo: every index fits the non-negative
	// range of the wire's int32 UID index (-1 is reserved for acks).
	MaxModulo = 1 << 31
)

// Errors. Functions wrap them with %w and context; test with errors.Is.
var (
	// ErrWindowFull is returned by Sender.Push when Window messages are in flight.
	ErrWindowFull = errors.New("reliability: window full")
	// ErrNoTargets is returned by Sender.Push for an empty target list.
	ErrNoTargets = errors.New("reliability: no targets")
	// ErrStaleAck is returned by Sender.OnAck for an ack of another incarnation
	// of the stream (wrong StreamEpoch) or an old ack overtaken by a newer one.
	// The ack is ignored; this is normal network behaviour, not an attack.
	ErrStaleAck = errors.New("reliability: stale ack")
	// ErrInvalidAck is returned by Sender.OnAck for an ack that no honest
	// receiver sends: from a node that is not a target, acknowledging indexes
	// never sent, or with a malformed SACK. The ack is ignored.
	ErrInvalidAck = errors.New("reliability: invalid ack")
	// ErrRetriesExhausted is wrapped by the Failure of a copy that was
	// retransmitted MaxRetries times without being acknowledged.
	ErrRetriesExhausted = errors.New("reliability: retries exhausted")
	// ErrTargetGone is wrapped by the Failures that Sender.RemoveTarget returns.
	ErrTargetGone = errors.New("reliability: target gone")
	// ErrInvalidData is returned by Receiver.OnData for a packet no honest
	// sender sends (index outside the modulo, or Seq not within Window of Base).
	// The packet is ignored.
	ErrInvalidData = errors.New("reliability: invalid data")
	// ErrClosed is the Failure error of Sender.FailAll when it is given no cause.
	ErrClosed = errors.New("reliability: sender closed")
	// ErrInvalidConfig is wrapped by Config.Validate.
	ErrInvalidConfig = errors.New("reliability: invalid config")
)

// Config holds a stream's parameters. The zero value means "all defaults";
// see WithDefaults.
type Config struct {
	// Window is the most messages a sender may have in flight and what a
	// receiver buffers ahead of its delivery point: the cap of the
	// congestion window. Default DefaultWindow; at most MaxWindow.
	Window int
	// InitialWindow is the congestion window a stream starts with, and
	// returns to after an idle period: from 1 to Window. Default
	// DefaultInitialWindow, or Window if that is smaller.
	InitialWindow int
	// Modulo is the size of the index space: indexes run 0..Modulo-1 and
	// wrap. It must be at least 2*Window (and at least Window+2). Default
	// DefaultModulo. See Config.MaxSkip for what a small Modulo costs.
	Modulo uint32
	// InitialRTO is the retransmission timeout towards a target before any
	// RTT sample from it. Default DefaultInitialRTO.
	InitialRTO time.Duration
	// MinRTO and MaxRTO clamp the computed timeout; MaxRTO also caps backoff
	// and probe intervals. Defaults DefaultMinRTO and DefaultMaxRTO.
	MinRTO time.Duration
	// MaxRTO: see MinRTO.
	MaxRTO time.Duration
	// MaxRetries is the number of retransmissions of one message to one
	// target without an acknowledgement after which that copy fails.
	// Default DefaultMaxRetries (a zero value means the default).
	MaxRetries int
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.InitialWindow == 0 {
		c.InitialWindow = min(DefaultInitialWindow, c.Window)
	}
	if c.Modulo == 0 {
		c.Modulo = DefaultModulo
	}
	if c.InitialRTO == 0 {
		c.InitialRTO = DefaultInitialRTO
	}
	if c.MinRTO == 0 {
		c.MinRTO = DefaultMinRTO
	}
	if c.MaxRTO == 0 {
		c.MaxRTO = DefaultMaxRTO
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	return c
}

// Validate reports whether c (after WithDefaults, if zero fields are meant as
// defaults) is usable. The error wraps ErrInvalidConfig.
func (c Config) Validate() error {
	switch {
	case c.Window < 1 || c.Window > MaxWindow:
		return fmt.Errorf("%w: Window %d not in [1, %d]", ErrInvalidConfig, c.Window, MaxWindow)
	case c.InitialWindow < 1 || c.InitialWindow > c.Window:
		return fmt.Errorf("%w: InitialWindow %d not in [1, Window %d]", ErrInvalidConfig, c.InitialWindow, c.Window)
	case c.Modulo > MaxModulo:
		return fmt.Errorf("%w: Modulo %d above %d", ErrInvalidConfig, c.Modulo, uint32(MaxModulo))
	case uint64(c.Modulo) < 2*uint64(c.Window) || uint64(c.Modulo) < uint64(c.Window)+2:
		return fmt.Errorf("%w: Modulo %d below 2*Window (Window %d)", ErrInvalidConfig, c.Modulo, c.Window)
	case c.MinRTO <= 0:
		return fmt.Errorf("%w: MinRTO %v not positive", ErrInvalidConfig, c.MinRTO)
	case c.MaxRTO < c.MinRTO:
		return fmt.Errorf("%w: MaxRTO %v below MinRTO %v", ErrInvalidConfig, c.MaxRTO, c.MinRTO)
	case c.InitialRTO < c.MinRTO || c.InitialRTO > c.MaxRTO:
		return fmt.Errorf("%w: InitialRTO %v not in [MinRTO %v, MaxRTO %v]", ErrInvalidConfig, c.InitialRTO, c.MinRTO, c.MaxRTO)
	case c.MaxRetries < 0:
		return fmt.Errorf("%w: MaxRetries %d negative", ErrInvalidConfig, c.MaxRetries)
	}
	return nil
}

// MaxSkip is how far (in indexes) a packet's Base may lie ahead of a
// receiver's delivery point: floor((Modulo-Window)/2). The sender never lets
// its base run more than MaxSkip past the last cumulative acknowledgement of
// any target; a receiver treats a Base further ahead than MaxSkip, and more
// than Window behind, as a packet from the past and ignores it.
//
// The remaining Modulo-Window-MaxSkip-1 indexes are the protocol's margin
// against old packets: with the defaults (MaxSkip 4995) a packet may survive
// in the network while its stream advances 5,000 indexes; with Window 10 and
// Modulo 20 (MaxSkip 5) only 4. docs/PROTOCOL.md (Part 4) has the details.
func (c Config) MaxSkip() uint32 {
	return (c.Modulo - uint32(c.Window)) / 2
}

// mustValid applies defaults and panics on an invalid configuration: the
// constructors have no error result, and an invalid Config is a programming
// error. Validate user input with Config.Validate first.
func mustValid(c Config) Config {
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		panic(err)
	}
	return c
}

// dist is the forward distance from a to b in the index space of size m:
// (b - a) mod m. Both arguments must be below m.
func dist(a, b, m uint32) uint32 {
	if b >= a {
		return b - a
	}
	return m - a + b
}

// add returns (a + k) mod m for a < m.
func add(a, k, m uint32) uint32 {
	return uint32((uint64(a) + uint64(k)) % uint64(m))
}
