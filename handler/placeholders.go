package handler

import (
	"strconv"
	"strings"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// answer is what the peer got for its packet, kept for the placeholders:
// the reply's bytes are pooled and gone by the time an access log line is
// written.
type answer struct {
	result      string // resultFulfill, resultReject or resultEdgeReject; empty until answered
	code        ilpdest.Code
	triggeredBy string
}

// record keeps what the peer got: reply is the packet that went back, rej
// the edge's own Reject when it made one, edgeAddress its triggeredBy.
func (a *answer) record(reply []byte, rej *edgeReject, edgeAddress string) {
	switch {
	case rej != nil:
		*a = answer{resultEdgeReject, rej.code, edgeAddress}
	case len(reply) > 0 && ilpdest.Type(reply[0]) == ilpdest.TypeFulfill:
		*a = answer{result: resultFulfill}
	default:
		a.result = resultReject
		if r, err := ilpdest.ReadReject(reply); err == nil {
			a.code, a.triggeredBy = r.Code, strings.Clone(r.TriggeredBy)
		}
	}
}

// destinationView is the packet as {vars.ilp_destination}: boxing a
// pointer in an interface does not allocate, so the var costs nothing
// until it is formatted.
type destinationView Packet

func (v *destinationView) String() string { return v.destination }

// placeholderPrefix starts every placeholder the packet answers but one,
// authUserPlaceholder.
const (
	placeholderPrefix   = "http.ilp."
	authUserPlaceholder = "http.auth.user.id"
)

// placeholder resolves the {http.ilp.*} placeholders: it is the packet's
// replacer provider, so nothing is formatted, or stored in the replacer,
// unless a log format or another handler asks for it.
//
//	peer, destination, amount, expires_at  the Prepare and who sent it
//	result        fulfill, reject (from a connector) or edge_reject
//	code          the Reject's code; empty for a Fulfill
//	triggered_by  the Reject's triggeredBy
//	upstream      the connector (host:port) the packet was last sent to
//	rerouted      true when that was not the packet's first choice
//	request_id    an asynchronous Prepare's Request-Id; empty for a sync one
//	egress_request_id  the Request-Id ilp_egress sent it with to a draft 3 peer
//	mode          async or sync: how the peer gets its reply
//
// It also answers {http.auth.user.id}, the access log's user_id, with the
// peer's name, as Caddy's authentication handler sets it: from here
// rather than with Replacer.Set, which would allocate the replacer's map
// for every packet.
func (p *Packet) placeholder(key string) (any, bool) {
	name, ok := strings.CutPrefix(key, placeholderPrefix)
	if !ok {
		if key == authUserPlaceholder {
			return p.peer.nameValue, true
		}
		return nil, false
	}
	switch name {
	case "peer":
		return p.peer.nameValue, true
	case "destination":
		return p.destination, true
	case "amount":
		return strconv.FormatUint(p.prepare.Amount, 10), true
	case "expires_at":
		if p.prepare.ExpiresAt.IsZero() {
			return "", true
		}
		return p.prepare.ExpiresAt.Format(time.RFC3339Nano), true
	case "result":
		return p.answer.result, true
	case "code":
		if p.answer.result == resultFulfill || p.answer.result == "" {
			return "", true
		}
		return p.answer.code.String(), true
	case "triggered_by":
		return p.answer.triggeredBy, true
	case "upstream":
		return p.upstream, true
	case "rerouted":
		return p.upstream != "" && p.rank > 0, true
	case "request_id":
		return string(p.requestID), true
	case "egress_request_id":
		return string(p.egressRequestID), true
	case "mode":
		if p.requestID != "" {
			return ModeAsync, true
		}
		return ModeSync, true
	}
	return nil, false
}
