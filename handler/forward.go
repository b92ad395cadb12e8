package handler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/ilp-edge/caddy-ilp/async"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// This file is the contract between ilp_edge and the forwarder that runs
// after it: reverse_proxy with the ilp_prefix policy, ilp_proxy, or any
// other handler. A forwarder reads the packet through PacketFrom, sends
// its bytes on unchanged, and when it cannot relay a connector's reply it
// returns a *ForwardError saying how far the packet got. ilp_edge alone
// turns that into the peer's Reject (rejects.go).

// Limits and defaults shared by ilp_edge and the forwarders.
const (
	// DefaultMaxPacketSize is the largest request body accepted unless
	// configured: what interledger-rs accepts. The largest legal Prepare
	// is 33857 bytes.
	DefaultMaxPacketSize = 40000

	// MaxReplySize bounds what the edge accepts from a connector as its
	// reply: the largest legal Fulfill or Reject is well under it.
	MaxReplySize = 64 << 10

	// DefaultMaxHold is the longest a packet is held for its reply
	// unless configured, whatever its expiry: ilp_edge's and ilp_proxy's
	// max_hold.
	DefaultMaxHold = 30 * time.Second

	// DefaultPrefixSegments is how many segments of the destination make
	// the routing key unless configured: g.<connector>.<account>
	// addresses put one receiver's traffic under three segments.
	DefaultPrefixSegments = 3
)

// VarUpstreamRank is the var in which the forwarder records the chosen
// upstream's place in the packet's ranking: 0 when the first choice took
// the packet, more when it was moved off it ({vars.ilp_upstream_rank} in
// a log format shows when that happens).
const VarUpstreamRank = "ilp_upstream_rank"

// PacketFrom returns the packet ilp_edge read from r, or nil when r did
// not come through ilp_edge.
func PacketFrom(r *http.Request) *Packet {
	if v, ok := caddyhttp.GetVar(r.Context(), VarDestination).(*destinationView); ok {
		return (*Packet)(v)
	}
	return nil
}

// SetRoute records how a forwarder routes the packet, each time it sends
// it to an upstream: the routing key it ranked upstreams by, the upstream
// (host:port) and its rank. It sets {vars.ilp_upstream_rank} and the
// placeholders {http.ilp.upstream} and {http.ilp.rerouted}, and the
// packet's debug log line shows the key.
func (p *Packet) SetRoute(r *http.Request, key, upstream string, rank int) {
	p.routeKey, p.upstream, p.rank = key, upstream, rank
	caddyhttp.SetVar(r.Context(), VarUpstreamRank, rank)
}

// SetEgressRequestID records the Request-Id a forwarder sent the packet
// with to a draft 3 peer (ilp_egress), for {http.ilp.egress_request_id}.
func (p *Packet) SetEgressRequestID(id async.RequestID) { p.egressRequestID = id }

// Failure says how far a packet got before forwarding it failed, which
// alone decides the Reject the peer gets.
type Failure uint8

// The failures a forwarder reports.
const (
	// NoUpstream: no connector was available to try (every one marked
	// down, or none known). The packet reached no connector.
	NoUpstream Failure = iota + 1
	// NotDelivered: every attempt failed before any byte of the packet
	// left for a connector (dial refused or timed out, connection closed
	// before the write).
	NotDelivered
	// Broken: a connector may have received the packet, but the exchange
	// broke off before a complete reply (reset, closed mid-reply).
	Broken
	// TimedOut: no reply before the forwarder's deadline, the packet's
	// expiry or a shorter hold limit.
	TimedOut
	// BadReply: the connector answered, but not in readable HTTP
	// (malformed framing, a body over MaxReplySize).
	BadReply
)

func (f Failure) String() string {
	switch f {
	case NoUpstream:
		return "no upstream"
	case NotDelivered:
		return "not delivered"
	case Broken:
		return "broken"
	case TimedOut:
		return "timed out"
	case BadReply:
		return "bad reply"
	}
	return "unknown"
}

// HTTPStatus is the status a failure has when no ilp_edge turns it into a
// Reject (a forwarder used on its own, handle_errors routes): 503 for
// NoUpstream, 504 for TimedOut, 502 otherwise, as reverse_proxy answers.
func (f Failure) HTTPStatus() int {
	switch f {
	case NoUpstream:
		return http.StatusServiceUnavailable
	case TimedOut:
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// ForwardError is a forwarder's failure to relay a reply for a packet.
// A forwarder returns it as the Err of a caddyhttp.HandlerError with the
// failure's HTTPStatus (NewForwardError does both).
type ForwardError struct {
	Failure  Failure
	Upstream string // host:port of the connector last tried; "" for NoUpstream
	Err      error
}

// NewForwardError returns the handler error for a failure of a forwarder.
func NewForwardError(f Failure, upstream string, err error) error {
	return caddyhttp.Error(f.HTTPStatus(), &ForwardError{Failure: f, Upstream: upstream, Err: err})
}

func (e *ForwardError) Error() string {
	if e.Upstream == "" {
		return fmt.Sprintf("%s: %v", e.Failure, e.Err)
	}
	return fmt.Sprintf("upstream %s: %s: %v", e.Upstream, e.Failure, e.Err)
}

func (e *ForwardError) Unwrap() error { return e.Err }

// RejectError is a forwarder's own decision to reject a packet without
// sending it (over a limit of its own, or for a destination it cannot
// send to): ilp_edge answers the Reject it holds, by the edge's address,
// as it answers its own.
type RejectError struct{ reject *edgeReject }

func (e *RejectError) Error() string {
	return fmt.Sprintf("%s %s", e.reject.code, e.reject.message)
}

// NewUnreachable returns the error of a forwarder that has nowhere to
// send the packet, for good: ilp_edge answers F02 Unreachable with
// message.
func NewUnreachable(message string) error {
	return caddyhttp.Error(http.StatusNotFound, &RejectError{&edgeReject{code: ilpdest.CodeF02, message: message}})
}

// FailedExchange classifies a forwarder's failed exchange with the
// connector or peer at upstream (host:port): sent tells whether any byte
// of the packet may have reached it, badReply whether what came back was
// not a readable reply. Nothing sent is NotDelivered, whatever the error;
// then a deadline is TimedOut, a bad reply BadReply, anything else Broken.
func FailedExchange(upstream string, sent, badReply bool, err error) *ForwardError {
	f := Broken
	switch {
	case !sent:
		f = NotDelivered
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		f = TimedOut
	case badReply:
		f = BadReply
	}
	return &ForwardError{Failure: f, Upstream: upstream, Err: err}
}
