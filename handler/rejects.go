package handler

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// This file is the one place that decides which ILP Reject a peer gets for
// a failure. A peer must never see a bare 5xx: ilp-plugin-http turns any
// HTTP error into a final F02, which aborts a whole STREAM payment, where a
// T-code Reject would have been retried.

// edgeReject is a Reject the edge makes instead of a reply from a backend.
type edgeReject struct {
	code    ilpdest.Code
	message string
	cause   error // for the log; never sent
}

func invalidPacket(err error) *edgeReject {
	return &edgeReject{ilpdest.CodeF01, "invalid packet: " + err.Error(), err}
}

var errDestinationMismatch = errors.New("ILP-Destination header does not match the packet's destination")

func insufficientTimeout(expired bool) *edgeReject {
	if expired {
		return &edgeReject{ilpdest.CodeR02, "packet already expired", nil}
	}
	return &edgeReject{ilpdest.CodeR02, "packet expires too soon", nil}
}

// upstreamReject maps the outcome of the next handler to a Reject, or
// returns nil when the captured reply is a Fulfill or Reject to relay.
// err is what the next handler returned, expired whether the packet's
// deadline passed while it ran.
func upstreamReject(c *responseCapture, err error, expired bool) *edgeReject {
	switch {
	// Only a failure counts as a timeout: a reply that made it back, even
	// as the deadline passed, is relayed, because the connector has already
	// acted on it and a Reject now would leave the two sides' books apart.
	case err != nil && expired:
		return &edgeReject{ilpdest.CodeR00, "no reply from a connector before the packet expired", err}
	case errors.Is(err, errAborted):
		return &edgeReject{ilpdest.CodeT00, "connector reply broke off", err}
	case err != nil:
		var he caddyhttp.HandlerError
		if errors.As(err, &he) && (he.StatusCode == http.StatusBadGateway || he.StatusCode == http.StatusServiceUnavailable) {
			// reverse_proxy: dial failure or no healthy upstream.
			return &edgeReject{ilpdest.CodeT01, "no connector reachable", err}
		}
		return &edgeReject{ilpdest.CodeT00, "connector error", err}
	case c.status != http.StatusOK:
		return &edgeReject{ilpdest.CodeT00, "connector answered HTTP " + strconv.Itoa(c.status),
			fmt.Errorf("upstream status %d", c.status)}
	case c.overflow:
		return &edgeReject{ilpdest.CodeT00, "connector reply too large", errors.New("upstream reply over 64 KiB")}
	}
	if _, err := ilpdest.ReadResponseType(c.bytes()); err != nil {
		return &edgeReject{ilpdest.CodeT00, "connector reply is not an ILP packet", err}
	}
	return nil
}

// errAborted stands for a reply that broke off mid-body: reverse_proxy
// panics with http.ErrAbortHandler then, after the backend may have seen
// the packet.
var errAborted = errors.New("connection to the connector broke mid-reply")
