package ilpdest

import (
	"errors"
	"fmt"
)

// Sentinel errors wrapped by a *ParseError; test for them with errors.Is.
var (
	// ErrTruncated means a field or length prefix runs past the end of the input.
	ErrTruncated = errors.New("truncated")
	// ErrLengthPrefix means a length prefix is indefinite, non-canonical or too long.
	ErrLengthPrefix = errors.New("non-canonical length prefix")
	// ErrType means the packet's type byte is not the one expected.
	ErrType = errors.New("wrong packet type")
	// ErrTimestamp means expiresAt is not 17 digits naming a real UTC instant.
	ErrTimestamp = errors.New("invalid timestamp")
	// ErrAddress means an ILP address does not satisfy RFC 15.
	ErrAddress = errors.New("invalid ILP address")
	// ErrTrailing means bytes follow the last field of a CCP request.
	ErrTrailing = errors.New("trailing bytes")
	// ErrPropFlags means a route property's flag byte is one that
	// ilp-protocol-ccp never writes.
	ErrPropFlags = errors.New("invalid route property flags")
)

// ParseError reports which field of a packet is wrong and at which byte
// offset (from the start of the packet) its encoding starts.
type ParseError struct {
	Field  string
	Offset int
	Err    error
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("ilp packet: %s at offset %d: %v", e.Field, e.Offset, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

func parseError(field string, offset int, err error) error {
	return &ParseError{Field: field, Offset: offset, Err: err}
}
