package handler

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/ilp-edge/caddy-ilp/async"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// This file is ilp_edge with `replies`: the route where draft 3 peers
// POST their Fulfills and Rejects for the Prepares the edge itself sent
// them asynchronously (ilp_egress). The peer authenticates as for its
// own Prepares; its reply goes to the exchange of that peer waiting
// under its Request-Id (async.Pending), and nowhere else: the route
// forwards nothing, and never calls the next handler. The exchange may
// wait at another edge, the one the Callback-Url names: the reply is
// relayed there through the shared store (store/replies.go).

var errReplyNotILP = errors.New("the body is not a well-formed ILP Fulfill or Reject")

// serveReply takes peer p's reply to one of the edge's asynchronous
// Prepares: 200 when the exchange waiting for it got it, 400 for a
// Request-Id no exchange of p's waits for, a reply already answered
// ("the sender of the ILP Prepare should only process the first ILP
// reply"), a bad fulfillment, or a body that is no Fulfill or Reject;
// 503 when the edge the exchange may wait at cannot be reached now.
func (e *Edge) serveReply(w http.ResponseWriter, r *http.Request, p *peer) error {
	caddyhttp.SetVar(r.Context(), VarPeer, p.nameValue)
	refuse := func(status int, err error) error {
		return caddyhttp.Error(status, fmt.Errorf("ilp_edge: peer %q: reply by callback: %w", p.name, err))
	}
	// The head before the body, as for an asynchronous Prepare: a refusal
	// leaves the body unread, so the connection closes.
	id, err := async.ParseRequestID(firstValue(r.Header, "Request-Id"))
	if err != nil {
		async.CountCallback(p.name, async.CallbackMalformed)
		w.Header()["Connection"] = connectionClose
		return refuse(http.StatusBadRequest, err)
	}
	var body Packet
	tooLarge, err := body.readBody(r, e.MaxPacketSize)
	switch {
	case tooLarge:
		w.Header()["Connection"] = connectionClose
		return refuse(http.StatusRequestEntityTooLarge, fmt.Errorf("body over max_packet_size %d", e.MaxPacketSize))
	case err != nil:
		return refuse(http.StatusBadRequest, fmt.Errorf("reading body: %w", err))
	}
	if _, err := ilpdest.ReadResponseType(body.body); err != nil {
		async.CountCallback(p.name, async.CallbackMalformed)
		return refuse(http.StatusBadRequest, fmt.Errorf("%w: %v", errReplyNotILP, err))
	}
	edge := r.URL.Query().Get(async.EdgeParam)
	switch res := async.Pending.Deliver(r.Context(), e.store, edge, p.name, id, body.body); res {
	case async.CallbackDelivered:
		w.WriteHeader(http.StatusOK)
		return nil
	case async.CallbackUnavailable:
		return caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("ilp_edge: peer %q: reply by callback: Request-Id %s: %s", p.name, id, res))
	default:
		return refuse(http.StatusBadRequest, fmt.Errorf("Request-Id %s: %s", id, res))
	}
}
