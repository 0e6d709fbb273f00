package meshapi

import (
	"errors"
	"sync"
	"sync/atomic"
)

// sseItem is one pre-encoded SSE event, shared by every stream it goes to.
// An empty event is a heartbeat comment.
type sseItem struct {
	event string
	data  []byte
}

// subscriber is one open /v1/recv stream.
type subscriber struct {
	ch       chan sseItem
	events   bool          // wants node events
	messages bool          // wants messages
	dropped  atomic.Uint64 // items dropped since the stream was last told
}

// hub fans items out to subscribers without ever blocking the publisher: an
// item that finds a subscriber's buffer full is dropped for that subscriber
// and counted.
type hub struct {
	max, buf int
	done     chan struct{} // closed by close: streams end

	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	closed  bool
	dropped uint64
}

var (
	errTooManyStreams = errors.New("too many open /v1/recv streams")
	errShuttingDown   = errors.New("the API is shutting down")
)

func newHub(max, buf int) *hub {
	return &hub{max: max, buf: buf, done: make(chan struct{}), subs: map[*subscriber]struct{}{}}
}

func (h *hub) subscribe(events, messages bool) (*subscriber, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errShuttingDown
	}
	if len(h.subs) >= h.max {
		return nil, errTooManyStreams
	}
	s := &subscriber{ch: make(chan sseItem, h.buf), events: events, messages: messages}
	h.subs[s] = struct{}{}
	return s, nil
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, s)
}

// publish offers it to every subscriber that asked for its kind (event or
// message) and returns to how many it was offered.
func (h *hub) publish(it sseItem, event bool) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for s := range h.subs {
		if event && !s.events || !event && !s.messages {
			continue
		}
		n++
		select {
		case s.ch <- it:
		default:
			s.dropped.Add(1)
			h.dropped++
		}
	}
	return n
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
}

func (h *hub) stats() (subs int, dropped uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs), h.dropped
}
