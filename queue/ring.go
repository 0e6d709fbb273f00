package queue

// Ring is a bounded FIFO for use by a single goroutine. It takes no locks and
// allocates nothing after NewRing; it is not safe for concurrent use.
//
// Pop clears the slot it frees, so a Ring never keeps a popped value (and the
// memory it references, such as a large message body) alive.
//
// Push never overwrites: it refuses a value when the ring is full. A caller
// that must not lose values checks Full first, or handles Push's false result.
type Ring[T any] struct {
	buf  []T
	head int // index of the oldest value
	n    int // number of values
}

// NewRing returns an empty Ring that holds at most capacity values.
// It panics if capacity is less than 1.
func NewRing[T any](capacity int) *Ring[T] {
	if capacity < 1 {
		panic("queue: NewRing with capacity < 1")
	}
	return &Ring[T]{buf: make([]T, capacity)}
}

// Push appends v and reports true, or reports false and leaves the ring
// unchanged when it is full.
func (r *Ring[T]) Push(v T) bool {
	if r.n == len(r.buf) {
		return false
	}
	i := r.head + r.n
	if i >= len(r.buf) {
		i -= len(r.buf)
	}
	r.buf[i] = v
	r.n++
	return true
}

// Pop removes and returns the oldest value, or the zero value and false when
// the ring is empty. The freed slot is cleared.
func (r *Ring[T]) Pop() (T, bool) {
	var zero T
	if r.n == 0 {
		return zero, false
	}
	v := r.buf[r.head]
	r.buf[r.head] = zero
	r.head++
	if r.head == len(r.buf) {
		r.head = 0
	}
	r.n--
	return v, true
}

// Peek returns the oldest value without removing it, or the zero value and
// false when the ring is empty.
func (r *Ring[T]) Peek() (T, bool) {
	if r.n == 0 {
		var zero T
		return zero, false
	}
	return r.buf[r.head], true
}

// Len returns the number of values in the ring.
func (r *Ring[T]) Len() int { return r.n }

// Cap returns the ring's capacity.
func (r *Ring[T]) Cap() int { return len(r.buf) }

// Full reports whether the ring holds Cap values, so that Push would fail.
func (r *Ring[T]) Full() bool { return r.n == len(r.buf) }
