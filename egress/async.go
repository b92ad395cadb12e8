package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/ilp-edge/caddy-ilp/async"
	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/store"
)

// This file is ilp_egress toward an RFC 35 draft 3 (asynchronous) peer:
// the Prepare POSTed with a Request-Id of the edge's and its callback
// URL, a 202 expected, and the connector's request held until the
// peer's reply arrives at the callback route (ilp_edge with `replies`,
// through async.Pending) or the packet's deadline passes.

var (
	respondAsync   = []string{"respond-async"}
	errNoReply     = errors.New("no reply by callback before the packet's deadline")
	errFulfillment = errors.New("the peer's Fulfill by callback does not match the Prepare's execution condition")
)

// sendAsync sends the packet to a draft 3 peer and waits for its reply
// by callback, until r's deadline. It returns the reply to relay (a
// status other than 200 for a peer that refused the Prepare), or the
// failure.
func (p *peer) sendAsync(r *http.Request, pkt *handler.Packet, target string, s *store.Store, callbackURL string) (reply, *handler.ForwardError) {
	ctx := r.Context()
	deadline, _ := ctx.Deadline() // ilp_edge sets one: the expiry, or max_hold
	// Registered before the first POST: a peer may call back before its
	// 202 reaches the edge.
	wait := async.Pending.Register(ctx, s, p.name, pkt.Prepare().ExecutionCondition, deadline)
	defer async.Pending.Unregister(wait)
	pkt.SetEgressRequestID(wait.ID()) // for the access log: the peer knows the exchange by it
	sent := false                     // whether any try may have reached the peer
	for try := 0; ; try++ {
		status, wrote, err := p.postAsync(ctx, pkt, target, wait.ID(), callbackURL)
		sent = sent || wrote
		if err == nil && status == http.StatusAccepted {
			break
		}
		if err == nil && status < 500 {
			// Refused (4xx: the Prepare is wrong for the peer, or the
			// edge's credential is; a 3xx is not followed): the peer will
			// not call back, and the same request would be refused again.
			// Another 2xx is not the draft's answer either. The status
			// goes to ilp_edge, which answers T00.
			return reply{status: status}, nil
		}
		// A 5xx, or no answer: tried again with the same Request-Id until
		// the deadline. Safe even if the peer got the packet: a draft 3
		// receiver processes a Request-Id once ("the ability to safely
		// retry", interledger/rfcs#598) and answers a replay 202 without
		// forwarding it again, as ilp_edge does (async.Claims).
		d, ok := async.RetrySchedule.Wait(try, time.Now(), deadline)
		if !ok || ctx.Err() != nil {
			if err == nil {
				return reply{status: status}, nil
			}
			return reply{}, p.failure(sent, err)
		}
		t := time.NewTimer(d)
		select {
		case a := <-wait.Reply():
			// The peer processed a try whose answer was lost, and called
			// back meanwhile.
			t.Stop()
			return p.arrived(a)
		case <-ctx.Done():
			t.Stop()
			if err == nil {
				return reply{status: status}, nil
			}
			return reply{}, p.failure(sent, err)
		case <-t.C:
		}
	}
	select {
	case a := <-wait.Reply():
		return p.arrived(a)
	case <-ctx.Done():
		return reply{}, &handler.ForwardError{Failure: handler.TimedOut, Upstream: p.host, Err: errNoReply}
	}
}

// arrived is the reply that came by callback, as sendAsync returns it.
// async.Pending checked a Fulfill against the condition, so that a bad
// one is never relayed: here it is a failure (T00).
func (p *peer) arrived(a async.Arrived) (reply, *handler.ForwardError) {
	if a.Result != async.CallbackDelivered {
		return reply{}, &handler.ForwardError{Failure: handler.BadReply, Upstream: p.host, Err: errFulfillment}
	}
	return reply{status: http.StatusOK, body: a.Body}, nil
}

// postAsync makes one try: the Prepare POSTed with its Request-Id and
// the callback URL. It returns the peer's status, or the error of a try
// that got none and whether any of the packet may have been sent. The
// answer's body is not read beyond a small bound: a draft 3 peer sends
// none with its 202, and another status's is of no use.
func (p *peer) postAsync(ctx context.Context, pkt *handler.Packet, target string, id async.RequestID, callbackURL string) (int, bool, error) {
	resp, wrote, err := p.post(ctx, pkt, target, http.Header{
		"Request-Id":   {string(id)},
		"Callback-Url": {callbackURL},
		"Prefer":       respondAsync, // for peers of the 2021–2024 drafts, which asked for it
	})
	if err != nil {
		return 0, wrote, err
	}
	// Drained (a little) so that the connection is reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, handler.MaxReplySize))
	resp.Body.Close()
	return resp.StatusCode, true, nil
}

// withEdge is the callback URL u naming the edge edge, for the edge a
// reply lands on to relay it there.
func withEdge(u, edge string) string {
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + async.EdgeParam + "=" + edge
}

// checkCallbackURL checks ilp_egress's callback_url: where peers POST
// their replies, an absolute http or https URL as a peer's url is.
func checkCallbackURL(s string) error {
	if _, err := handler.ParsePeerURL(s); err != nil {
		return fmt.Errorf("callback_url: %w", err)
	}
	return nil
}
