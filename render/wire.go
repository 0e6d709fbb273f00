package render

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The job protocol's messages travel as node message bodies. Every message
// starts with the same 12-byte header; docs/RENDER.md is the normative
// description. All integers are big-endian.
//
//	off 0  [2]byte  magic "DR"
//	off 2  u8       version (= wireVersion)
//	off 3  u8       type
//	off 4  u64      job ID (never 0)
//	off 12          type-specific fields, then nothing: trailing bytes are an error
const (
	wireVersion = 1
	headerLen   = 12
)

var wireMagic = [2]byte{'D', 'R'}

// msgType is the type of a job protocol message.
type msgType uint8

const (
	msgJob     msgType = 1 // coordinator → worker: the job's settings
	msgRequest msgType = 2 // worker → coordinator: slot wants a tile
	msgAssign  msgType = 3 // coordinator → worker: render this tile in this slot
	msgResult  msgType = 4 // worker → coordinator: a tile's pixels; the slot wants another
	msgDone    msgType = 5 // coordinator → worker: the job is over
	msgDecline msgType = 6 // worker → coordinator: this worker will not take part
)

// String names the message type as docs/RENDER.md does.
func (t msgType) String() string {
	switch t {
	case msgJob:
		return "job"
	case msgRequest:
		return "request"
	case msgAssign:
		return "assign"
	case msgResult:
		return "result"
	case msgDone:
		return "done"
	case msgDecline:
		return "decline"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// MaxSlots is the most tiles one worker renders at once for one job; slot
// numbers on the wire are below it.
const MaxSlots = 64

// Done reasons.
const (
	doneComplete  = 0 // every tile is in
	doneCancelled = 1 // the coordinator gave up (its context ended)
)

// Decline reasons.
const (
	declineUnknownScene = 1 // the worker has no scene by that name
	declineFingerprint  = 2 // the worker would render different bytes
	declineBusy         = 3 // the worker holds too many jobs already
	declineInvalid      = 4 // the job's settings are out of range for this worker
)

func declineString(r uint8) string {
	switch r {
	case declineUnknownScene:
		return "unknown scene"
	case declineFingerprint:
		return "renderer fingerprint differs"
	case declineBusy:
		return "too many jobs"
	case declineInvalid:
		return "invalid job"
	}
	return fmt.Sprintf("reason %d", r)
}

// Errors from decoding job protocol messages.
var (
	// ErrMalformed is returned for a message that is not a well-formed job
	// protocol message: wrong magic, truncated, trailing bytes, a field out of
	// range, an unknown type.
	ErrMalformed = errors.New("render: malformed message")
	// ErrVersion is returned for a message of another protocol version.
	ErrVersion = errors.New("render: unsupported protocol version")
)

// wireMsg is one decoded message; which fields mean something depends on typ.
type wireMsg struct {
	typ   msgType
	jobID uint64

	job         Job    // msgJob (job.ID == jobID)
	fingerprint uint64 // msgJob

	slot    int           // msgRequest, msgAssign, msgResult
	tile    int           // msgAssign, msgResult
	elapsed time.Duration // msgResult: how long the worker spent rendering
	pixels  []byte        // msgResult: RGBA, aliases the decoded buffer

	reason uint8 // msgDone, msgDecline
}

func appendHeader(b []byte, t msgType, jobID uint64) []byte {
	b = append(b, wireMagic[0], wireMagic[1], wireVersion, byte(t))
	return binary.BigEndian.AppendUint64(b, jobID)
}

// encode returns the message's bytes. It does not validate m: the caller
// builds messages from valid values.
func (m *wireMsg) encode() []byte {
	size := headerLen + 48
	if m.typ == msgResult {
		size += len(m.pixels)
	}
	b := appendHeader(make([]byte, 0, size), m.typ, m.jobID)
	switch m.typ {
	case msgJob:
		j := m.job
		b = binary.BigEndian.AppendUint16(b, uint16(j.Width))
		b = binary.BigEndian.AppendUint16(b, uint16(j.Height))
		b = binary.BigEndian.AppendUint32(b, uint32(j.Samples))
		b = append(b, byte(j.Depth))
		b = binary.BigEndian.AppendUint16(b, uint16(j.TileSize))
		b = binary.BigEndian.AppendUint64(b, j.Seed)
		b = binary.BigEndian.AppendUint64(b, m.fingerprint)
		b = append(b, byte(len(j.Scene)))
		b = append(b, j.Scene...)
	case msgRequest:
		b = append(b, byte(m.slot))
	case msgAssign:
		b = append(b, byte(m.slot))
		b = binary.BigEndian.AppendUint32(b, uint32(m.tile))
	case msgResult:
		b = append(b, byte(m.slot))
		b = binary.BigEndian.AppendUint32(b, uint32(m.tile))
		b = binary.BigEndian.AppendUint64(b, uint64(max(m.elapsed, 0)))
		b = binary.BigEndian.AppendUint32(b, uint32(len(m.pixels)))
		b = append(b, m.pixels...)
	case msgDone, msgDecline:
		b = append(b, m.reason)
	}
	return b
}

// reader reads big-endian fields and remembers the first overrun.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || n < 0 || len(r.b) < n {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// decode parses one message strictly: every field in range, nothing missing,
// nothing left over. It checks what it can without knowing the job: a
// result's tile and pixel length are checked against the job by checkResult.
// Pixels alias b.
func decode(b []byte) (wireMsg, error) {
	var m wireMsg
	if len(b) < headerLen {
		return m, fmt.Errorf("%w: %d bytes, shorter than the header", ErrMalformed, len(b))
	}
	if b[0] != wireMagic[0] || b[1] != wireMagic[1] {
		return m, fmt.Errorf("%w: bad magic %q", ErrMalformed, b[:2])
	}
	if b[2] != wireVersion {
		return m, fmt.Errorf("%w: version %d, want %d", ErrVersion, b[2], wireVersion)
	}
	m.typ = msgType(b[3])
	m.jobID = binary.BigEndian.Uint64(b[4:])
	if m.jobID == 0 {
		return m, fmt.Errorf("%w: job ID 0", ErrMalformed)
	}
	r := reader{b: b[headerLen:]}
	switch m.typ {
	case msgJob:
		j := Job{ID: m.jobID}
		j.Width = int(r.u16())
		j.Height = int(r.u16())
		j.Samples = int(r.u32())
		j.Depth = int(r.u8())
		j.TileSize = int(r.u16())
		j.Seed = r.u64()
		m.fingerprint = r.u64()
		j.Scene = string(r.take(int(r.u8())))
		m.job = j
		if !r.bad {
			if err := j.Validate(); err != nil {
				return m, fmt.Errorf("%w: %w", ErrMalformed, err)
			}
		}
	case msgRequest:
		m.slot = int(r.u8())
	case msgAssign:
		m.slot = int(r.u8())
		m.tile = int(r.u32())
	case msgResult:
		m.slot = int(r.u8())
		m.tile = int(r.u32())
		ns := r.u64()
		if ns > uint64(1<<62) {
			return m, fmt.Errorf("%w: render time %d ns", ErrMalformed, ns)
		}
		m.elapsed = time.Duration(ns)
		n := r.u32()
		if n > MaxTileSize*MaxTileSize*4 {
			return m, fmt.Errorf("%w: %d pixel bytes, more than the largest tile", ErrMalformed, n)
		}
		m.pixels = r.take(int(n))
	case msgDone:
		m.reason = r.u8()
		if !r.bad && m.reason > doneCancelled {
			return m, fmt.Errorf("%w: done reason %d", ErrMalformed, m.reason)
		}
	case msgDecline:
		m.reason = r.u8()
		if !r.bad && (m.reason < declineUnknownScene || m.reason > declineInvalid) {
			return m, fmt.Errorf("%w: decline reason %d", ErrMalformed, m.reason)
		}
	default:
		return m, fmt.Errorf("%w: unknown type %d", ErrMalformed, uint8(m.typ))
	}
	if r.bad {
		return m, fmt.Errorf("%w: %s message truncated", ErrMalformed, m.typ)
	}
	if len(r.b) != 0 {
		return m, fmt.Errorf("%w: %d bytes after a %s message", ErrMalformed, len(r.b), m.typ)
	}
	if (m.typ == msgRequest || m.typ == msgAssign || m.typ == msgResult) && m.slot >= MaxSlots {
		return m, fmt.Errorf("%w: slot %d not below %d", ErrMalformed, m.slot, MaxSlots)
	}
	return m, nil
}

// checkTile reports whether m's tile (msgAssign, msgResult) is one of job's,
// and a result's pixels have exactly the tile's size.
func (m *wireMsg) checkTile(job *Job) error {
	if m.jobID != job.ID {
		return fmt.Errorf("%w: job %x, want %x", ErrInvalidJob, m.jobID, job.ID)
	}
	if m.tile < 0 || m.tile >= job.Tiles() {
		return fmt.Errorf("%w: tile %d not within 0..%d", ErrInvalidJob, m.tile, job.Tiles()-1)
	}
	if m.typ == msgResult {
		if want := job.tileBytes(m.tile); len(m.pixels) != want {
			return fmt.Errorf("%w: tile %d has %d pixel bytes, want %d", ErrInvalidJob, m.tile, len(m.pixels), want)
		}
	}
	return nil
}
