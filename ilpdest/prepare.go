package ilpdest

import (
	"encoding/binary"
	"time"
)

// Prepare is a read-only view of an ILP Prepare packet's fields. Its slices
// alias the bytes it was read from: nothing is copied.
type Prepare struct {
	Amount             uint64
	ExpiresAt          time.Time
	ExecutionCondition []byte // 32 bytes
	Destination        []byte // a valid ILP address
	// Data is nil after ReadPrepareHeader, which stops at the destination.
	Data []byte
}

const (
	amountLen    = 8
	conditionLen = 32
	// fixedLen is the size of the fixed fields before the destination.
	fixedLen = amountLen + timestampLen + conditionLen
)

// ReadPrepareHeader reads a Prepare's routing fields (amount, expiresAt,
// executionCondition, destination) from b, which may be just the first bytes
// of a larger body: it needs only the bytes up to the end of the destination.
// The destination must lie inside the contents length the envelope declares.
// It refuses what ilp-packet and interledger-rs refuse in those fields:
// a wrong type byte, indefinite or non-canonical length prefixes, truncation,
// a timestamp that is not a real instant, an invalid destination address.
// Errors are *ParseError values naming the field and its offset.
func ReadPrepareHeader(b []byte) (Prepare, error) {
	var p Prepare
	_, _, err := readPrepareHeader(b, &p)
	return p, err
}

// ReadPrepare reads a whole Prepare from b: the routing fields as
// ReadPrepareHeader does, then the data field, and it checks that the whole
// envelope is present. Bytes after the envelope, or after the data inside
// the contents, are ignored, as RFC 30 requires.
func ReadPrepare(b []byte) (Prepare, error) {
	var p Prepare
	next, end, err := readPrepareHeader(b, &p)
	if err != nil {
		return p, err
	}
	if end > len(b) {
		return p, parseError("envelope length", 1, ErrTruncated)
	}
	p.Data, _, err = readVarOctets(b[:end], next, "data")
	return p, err
}

// readPrepareHeader is ReadPrepareHeader filling p, and returning the offset
// just past the destination and the declared end of the contents.
func readPrepareHeader(b []byte, p *Prepare) (next, end int, err error) {
	start, end, err := readEnvelope(b, TypePrepare)
	if err != nil {
		return 0, 0, err
	}
	// Read the fields from b cut at the declared end of the contents, so a
	// destination that overruns the envelope counts as truncation.
	c := b
	if end < len(c) {
		c = c[:end]
	}
	if len(c)-start < fixedLen {
		return 0, 0, parseError("amount, expiresAt and executionCondition", start, ErrTruncated)
	}
	p.Amount = binary.BigEndian.Uint64(c[start:])
	off := start + amountLen
	var ok bool
	if p.ExpiresAt, ok = parseTimestamp(c[off : off+timestampLen]); !ok {
		return 0, 0, parseError("expiresAt", off, ErrTimestamp)
	}
	off += timestampLen
	p.ExecutionCondition = c[off : off+conditionLen : off+conditionLen]
	off += conditionLen
	dest, next, err := readVarOctets(c, off, "destination")
	if err != nil {
		return 0, 0, err
	}
	if !ValidAddress(dest) {
		return 0, 0, parseError("destination", off, ErrAddress)
	}
	p.Destination = dest
	return next, end, nil
}
