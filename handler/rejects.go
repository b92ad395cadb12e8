package handler

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// This file is the one place that decides which ILP Reject a peer gets for
// a failure, whichever forwarder runs after ilp_edge. A peer must never
// see a bare 5xx: ilp-plugin-http turns any HTTP error into a final F02,
// which aborts a whole STREAM payment, where a T-code Reject would have
// been retried.
//
//	what happened                                    Reject
//	packet expired before a reply came                R00
//	no connector to try (none, or every one full)     T01
//	no connector reached (dial failed, nothing sent)  T01
//	connector may have it, exchange broke off         T00
//	no reply within the forwarder's hold limit        T00
//	reply not readable HTTP, or over 64 KiB           T00
//	connector answered a status other than 200        T00
//	200 whose body is not a Fulfill or Reject         T00
//	no forwarder answered at all                      T00
//	over the peer's max_packet_amount (limits.go)     F08
//	beyond the peer's rate / throughput               T05 / T04
//	limits on Redis, Redis silent, on_store_failure deny  T05

// edgeRejectCodes are the codes of the table above: the Rejects the edge
// makes (the tests' wantReject checks each edge Reject against them).
var edgeRejectCodes = []ilpdest.Code{ilpdest.CodeF01, ilpdest.CodeR02, ilpdest.CodeR00, ilpdest.CodeT01, ilpdest.CodeT00,
	ilpdest.CodeF08, ilpdest.CodeT04, ilpdest.CodeT05} // the last three: a peer's Limits

// edgeReject is a Reject the edge makes instead of a reply from a backend.
type edgeReject struct {
	code    ilpdest.Code
	message string
	cause   error  // for the log; never sent
	data    []byte // the Reject's data: F08's amounts
}

func invalidPacket(err error) *edgeReject {
	return &edgeReject{code: ilpdest.CodeF01, message: "invalid packet: " + err.Error(), cause: err}
}

var errDestinationMismatch = errors.New("ILP-Destination header does not match the packet's destination")

func insufficientTimeout(expired bool) *edgeReject {
	if expired {
		return &edgeReject{code: ilpdest.CodeR02, message: "packet already expired"}
	}
	return &edgeReject{code: ilpdest.CodeR02, message: "packet expires too soon"}
}

// errNoForwarder is the cause of the Reject for a request that nothing
// after ilp_edge answered: the route has no reverse_proxy or ilp_proxy.
var errNoForwarder = errors.New("no handler after ilp_edge answered: the route needs reverse_proxy or ilp_proxy after ilp_edge")

// upstreamReject maps the outcome of the next handler to a Reject, or
// returns nil when the captured reply is a Fulfill or Reject to relay.
// err is what the next handler returned, expired whether the packet's
// expiry has passed.
func upstreamReject(c *responseCapture, err error, expired bool) *edgeReject {
	if re, ok := errors.AsType[*RejectError](err); ok {
		return re.reject // a decision, not a failure: before any expiry
	}
	if err != nil {
		// Only a failure counts as a timeout: a reply that made it back,
		// even as the deadline passed, is relayed, because the connector
		// has already acted on it and a Reject now would leave the two
		// sides' books apart.
		if expired {
			return &edgeReject{code: ilpdest.CodeR00, message: "no reply from a connector before the packet expired", cause: err}
		}
		switch failureOf(err) {
		case NoUpstream:
			return &edgeReject{code: ilpdest.CodeT01, message: "no connector available", cause: err}
		case NotDelivered:
			return &edgeReject{code: ilpdest.CodeT01, message: "no connector reachable", cause: err}
		case TimedOut:
			return &edgeReject{code: ilpdest.CodeT00, message: "no reply from a connector within the hold limit", cause: err}
		case BadReply:
			return &edgeReject{code: ilpdest.CodeT00, message: "connector reply is not valid HTTP", cause: err}
		}
		return &edgeReject{code: ilpdest.CodeT00, message: "connector connection broke before its reply", cause: err}
	}
	switch {
	case c.status == 0:
		return &edgeReject{code: ilpdest.CodeT00, message: "no connector configured", cause: errNoForwarder}
	case c.status != http.StatusOK:
		return &edgeReject{code: ilpdest.CodeT00, message: "connector answered HTTP " + strconv.Itoa(c.status), cause: fmt.Errorf("upstream status %d", c.status)}
	case c.overflow:
		return &edgeReject{code: ilpdest.CodeT00, message: "connector reply too large", cause: fmt.Errorf("upstream reply over %d bytes", MaxReplySize)}
	}
	if _, err := ilpdest.ReadResponseType(c.bytes()); err != nil {
		return &edgeReject{code: ilpdest.CodeT00, message: "connector reply is not an ILP packet", cause: err}
	}
	return nil
}

// failureOf classifies a forwarder's error: a *ForwardError says itself;
// reverse_proxy's are read from what it returns.
func failureOf(err error) Failure {
	if fe, ok := errors.AsType[*ForwardError](err); ok {
		return fe.Failure
	}
	if errors.Is(err, errAborted) {
		return Broken
	}
	// A DialError is the one failure after which reverse_proxy knows the
	// request never left; it retries those (lb_retries) before giving up.
	if _, ok := errors.AsType[reverseproxy.DialError](err); ok {
		return NotDelivered
	}
	if ne, ok := errors.AsType[net.Error](err); (ok && ne.Timeout()) || errors.Is(err, context.DeadlineExceeded) {
		return TimedOut
	}
	if he, ok := errors.AsType[caddyhttp.HandlerError](err); ok && he.StatusCode == http.StatusServiceUnavailable {
		return NoUpstream // reverse_proxy: no upstream available
	}
	return Broken
}

// errAborted stands for a reply that broke off mid-body: reverse_proxy
// panics with http.ErrAbortHandler then, after the backend may have seen
// the packet.
var errAborted = errors.New("connection to the connector broke mid-reply")
