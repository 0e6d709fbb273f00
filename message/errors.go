package message

import (
	"errors"
	"strconv"
)

// Sentinel errors. Every error returned by Decode, DecodeHeader and the payload
// decoders is a *DecodeError wrapping exactly one of them, so callers test the
// class with errors.Is and the position with errors.As.
var (
	// ErrTruncated means the input ended before a field it declares: a frame
	// shorter than HeaderSize or than its body length, or a payload shorter
	// than its counts and lengths require.
	ErrTruncated = errors.New("message: truncated")
	// ErrTooLarge means a frame's declared body length exceeds the decoder's limit.
	ErrTooLarge = errors.New("message: too large")
	// ErrVersion means a frame's version byte is not Version.
	ErrVersion = errors.New("message: unknown version")
	// ErrType means a frame's type byte is not a Type this version knows.
	ErrType = errors.New("message: unknown type")
	// ErrMalformed means the input is complete but invalid: unknown flag bits,
	// trailing bytes, an index the type forbids, a count beyond its limit, an
	// empty or non-UTF-8 address, an unknown reject reason.
	ErrMalformed = errors.New("message: malformed")
)

// DecodeError is the error every decoder in this package returns.
//
// It is only allocated when decoding fails: decoding a valid frame allocates
// nothing.
type DecodeError struct {
	// Err is the class: ErrTruncated, ErrTooLarge, ErrVersion, ErrType or ErrMalformed.
	Err error
	// Offset is the byte offset, within the buffer given to the decoder (the
	// frame for Decode and DecodeHeader, the body for payload decoders), of the
	// field that was rejected.
	Offset int
	// Detail says which field was rejected and why, for humans.
	Detail string
}

// Error returns the sentinel's text, the detail and the offset.
func (e *DecodeError) Error() string {
	s := e.Err.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s + " (offset " + strconv.Itoa(e.Offset) + ")"
}

// Unwrap returns the sentinel, so errors.Is(err, ErrTruncated) and friends work.
func (e *DecodeError) Unwrap() error { return e.Err }

// decodeErr builds a *DecodeError. It is only called on failure paths.
func decodeErr(class error, off int, detail string) error {
	return &DecodeError{Err: class, Offset: off, Detail: detail}
}

// itoa is strconv.Itoa, short for building error details.
func itoa(n int) string { return strconv.Itoa(n) }
