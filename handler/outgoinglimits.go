package handler

import (
	"context"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/ilp-edge/caddy-ilp/store"
)

// OutgoingLimits are what the edge may send one peer (its
// outgoing_limits), for ilp_egress: the same budgets and Rejects as a
// peer's inbound limits, kept apart from them (another name in process
// and on the store), since sending to a peer and being sent to by it are
// two budgets.
type OutgoingLimits struct{ pl *peerLimits }

// NewOutgoingLimits provisions c's outgoing_limits, shared through st
// when it is not nil; nil when c has none. Release them when done.
func NewOutgoingLimits(c *Peer, st *store.Store) (*OutgoingLimits, error) {
	if c.OutgoingLimits == nil {
		return nil, nil
	}
	if err := c.OutgoingLimits.validate(fmt.Sprintf("peer %q: outgoing_limits:", c.Name)); err != nil {
		return nil, err
	}
	pl, err := newPeerLimits("egress to "+c.Name, c.OutgoingLimits, st)
	if err != nil {
		return nil, err
	}
	return &OutgoingLimits{pl}, nil
}

// Release gives up the budgets.
func (o *OutgoingLimits) Release() { o.pl.release() }

// Admit spends pkt's share of the budgets before it is sent. It returns
// whether its amount was taken from the throughput budget (Refund it
// unless the peer fulfills it), or the error a forwarder returns for
// ilp_edge to answer with the limit's Reject (F08, T05 or T04).
func (o *OutgoingLimits) Admit(ctx context.Context, pkt *Packet) (charged bool, err error) {
	charged, rej := o.pl.admit(ctx, pkt)
	if rej != nil {
		return false, caddyhttp.Error(http.StatusTooManyRequests, &RejectError{rej})
	}
	return charged, nil
}

// Refund gives a charged packet's amount back: it was not fulfilled.
func (o *OutgoingLimits) Refund(pkt *Packet) { o.pl.throughput.refund(pkt.prepare.Amount) }
