package node

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/distrirender/distrirender/message"
	"github.com/distrirender/distrirender/node/internal/core"
	"github.com/distrirender/distrirender/reliability"
	"github.com/distrirender/distrirender/routing"
	"github.com/distrirender/distrirender/transport"
)

// Option configures a Node at construction.
type Option func(*config) error

type config struct {
	logger   *slog.Logger
	extra    []transport.Transport
	inbound  int
	eventBuf int
	core     core.Config // the protocol's parameters: core.Defaults explains them
	creds    core.Credentials
	// maxHandshakes and maxPerSource bound the incoming handshakes under
	// way (WithHandshakeLimits).
	maxHandshakes, maxPerSource int
}

func defaults() config {
	return config{
		logger:   slog.New(slog.DiscardHandler),
		inbound:  1024,
		eventBuf: 1024,
		core:     core.Defaults(),

		maxHandshakes: DefaultMaxHandshakes,
		maxPerSource:  DefaultMaxHandshakesPerSource,
	}
}

// WithLogger sets the structured logger. The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidOption)
		}
		c.logger = l
		return nil
	}
}

// WithID sets the node's UUID, so that a restarted node keeps its identity.
// By default a new random (v4) UUID is made. A restarted node is told apart
// from its previous life by its epoch, which is always new.
func WithID(id uuid.UUID) Option {
	return func(c *config) error {
		if id == uuid.Nil {
			return fmt.Errorf("%w: nil node ID", ErrInvalidOption)
		}
		c.core.ID = id
		return nil
	}
}

// WithEpoch overrides the node's epoch (by default the construction time in
// Unix nanoseconds). It must grow with every restart of the same ID; tests use it.
func WithEpoch(epoch uint64) Option {
	return func(c *config) error {
		if epoch == 0 {
			return fmt.Errorf("%w: zero epoch", ErrInvalidOption)
		}
		c.core.Epoch = epoch
		return nil
	}
}

// WithTransport adds a further transport: the node accepts edges on every
// transport it holds, and Connect tries them in order.
func WithTransport(t transport.Transport) Option {
	return func(c *config) error {
		if t == nil {
			return fmt.Errorf("%w: nil transport", ErrInvalidOption)
		}
		c.extra = append(c.extra, t)
		return nil
	}
}

// WithMaxConnections sets how many neighbours the node accepts (default 10).
func WithMaxConnections(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 1024 {
			return fmt.Errorf("%w: max connections %d not in [1,1024]", ErrInvalidOption, n)
		}
		c.core.MaxConns = n
		return nil
	}
}

// WithKeepalive sets the keepalive interval (default 1s) and after how many
// silent intervals a neighbour is declared dead (default 3). A neighbour is
// noticed dead even when its transport reports nothing. A neighbour declared
// dead that soon comes back with the same epoch was alive all along: its
// limit doubles, up to 8 times, for the rest of its life (docs/PROTOCOL.md,
// Part 2 §4).
func WithKeepalive(interval time.Duration, missed int) Option {
	return func(c *config) error {
		if interval <= 0 || missed < 2 {
			return fmt.Errorf("%w: keepalive %v x %d", ErrInvalidOption, interval, missed)
		}
		c.core.Keepalive, c.core.DeadAfter = interval, missed
		return nil
	}
}

// WithHopLimit sets the hop limit of messages this node originates (default 64).
func WithHopLimit(n uint8) Option {
	return func(c *config) error {
		if n == 0 {
			return fmt.Errorf("%w: zero hop limit", ErrInvalidOption)
		}
		c.core.HopLimit = n
		return nil
	}
}

// WithMaxBody sets the largest message body accepted from the application and
// from the network (default message.DefaultMaxBody, 1 MiB).
func WithMaxBody(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: max body %d", ErrInvalidOption, n)
		}
		c.core.MaxBody = n
		return nil
	}
}

// WithQueues sets the inbound queue length (delivered messages waiting for
// Receive, default 1024) and the outbound backlog per destination (messages
// accepted by Send waiting for room in the window, default 64).
func WithQueues(inbound, backlogPerDestination int) Option {
	return func(c *config) error {
		if inbound < 1 || backlogPerDestination < 1 {
			return fmt.Errorf("%w: queue lengths %d, %d", ErrInvalidOption, inbound, backlogPerDestination)
		}
		c.inbound, c.core.Backlog = inbound, backlogPerDestination
		return nil
	}
}

// WithForwardBuffer sets the frames buffered per neighbour for data (default
// 1024; at most 4 MiB of them either way); data beyond it is dropped and
// recovered end to end.
func WithForwardBuffer(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: forward buffer %d", ErrInvalidOption, n)
		}
		c.core.ForwardBuf = n
		return nil
	}
}

// WithEventBuffer sets the capacity of the Events channel (default 1024).
// Events that find it full are dropped, counted in Stats and logged.
func WithEventBuffer(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: event buffer %d", ErrInvalidOption, n)
		}
		c.eventBuf = n
		return nil
	}
}

// WithReliability sets the end-to-end reliability parameters (window cap and
// initial window, index modulo, timeouts, retry budget). Zero fields take
// their defaults. Window and Modulo must be the same on every node.
func WithReliability(rc reliability.Config) Option {
	return func(c *config) error {
		rc = rc.WithDefaults()
		if err := rc.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidOption, err)
		}
		c.core.Rel = rc
		return nil
	}
}

// WithRouting sets the link-state parameters (record age, refresh interval).
// Zero fields take their defaults.
func WithRouting(rc routing.Config) Option {
	return func(c *config) error {
		c.core.Routing = rc
		return nil
	}
}

// WithRedial sets for how long the node keeps redialling, with jittered
// exponential back-off, an edge it dialled that failed (default one minute;
// zero disables). A neighbour that said goodbye is not redialled.
func WithRedial(window time.Duration) Option {
	return func(c *config) error {
		if window < 0 {
			return fmt.Errorf("%w: negative redial window", ErrInvalidOption)
		}
		c.core.RedialFor = window
		return nil
	}
}

// WithMinConnections sets how many neighbours the node keeps while the mesh
// has enough nodes (default 5; 0 turns balancing off). Below it, the node
// connects, one dial at a time about every second (jittered), to the
// farthest reachable node that has free slots, so the mesh keeps a small
// diameter.
func WithMinConnections(n int) Option {
	return func(c *config) error {
		if n < 0 || n > 1024 {
			return fmt.Errorf("%w: min connections %d not in [0,1024]", ErrInvalidOption, n)
		}
		c.core.MinConns = n
		return nil
	}
}

// WithName sets the node's human name (at most message.MaxNameLen bytes of
// UTF-8), advertised in link state: other nodes see it in their Topology.
// Names are for people: they need not be unique, and the mesh addresses a
// node by its UUID only. By default a node has no name.
func WithName(name string) Option {
	return func(c *config) error {
		if err := message.ValidateName(name); err != nil {
			return fmt.Errorf("%w: name: %w", ErrInvalidOption, err)
		}
		c.core.Name = name
		return nil
	}
}
