// Package async is the asynchronous side of ILP over HTTP (RFC 35 draft
// 3) at the edge: a Prepare is answered 202 Accepted at once, and its
// Fulfill or Reject is POSTed later to the sender's callback URL with the
// same Request-Id. It holds what that takes and ilp_edge does not: the
// Request-Id (this file), which callback URLs a peer may name
// (callbackurl.go), the table that forwards each Request-Id once
// (claims.go), the bound on what is in flight (inflight.go) and the
// sender of replies with its retries (sender.go).
package async

import (
	"errors"
)

// RequestID is a Request-Id as RFC 35 draft 3 requires it: a version 4
// UUID, in its 36-character text form, lower-cased.
type RequestID string

var errRequestID = errors.New("Request-Id is not a version 4 UUID (8-4-4-4-12 hex digits)")

// ParseRequestID reads a Request-Id header value. Only a version 4 UUID
// (random, RFC 9562) is accepted: the draft asks for one from a CSPRNG,
// and a sender's ids are keys of the edge's table, so anything else (a
// counter, a name) is refused rather than trusted to be unique. Hex
// digits may be in either case (RFC 9562 §4); the id is compared
// lower-cased.
func ParseRequestID(s string) (RequestID, error) {
	if len(s) != 36 {
		return "", errRequestID
	}
	var b [36]byte
	for i := range 36 {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", errRequestID
			}
			b[i] = c
			continue
		}
		switch {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
		case 'A' <= c && c <= 'F':
			c += 'a' - 'A'
		default:
			return "", errRequestID
		}
		b[i] = c
	}
	// The version nibble is 4; the variant's top bits are 10 (8, 9, a, b).
	if b[14] != '4' || (b[19] != '8' && b[19] != '9' && b[19] != 'a' && b[19] != 'b') {
		return "", errRequestID
	}
	return RequestID(b[:]), nil
}
