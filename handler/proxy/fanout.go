package proxy

import (
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// fanOutReply is one upstream's part in a fan-out.
type fanOutReply struct {
	reply    upstreamReply
	err      *handler.ForwardError
	rank     int
	accepted bool // a 200 carrying a Fulfill
}

// acceptedUpdate reports whether an upstream's reply takes the route
// update: a 200 carrying a Fulfill.
func acceptedUpdate(reply upstreamReply, err *handler.ForwardError) bool {
	if err != nil || reply.status != http.StatusOK {
		return false
	}
	t, terr := ilpdest.ReadResponseType(reply.body)
	return terr == nil && t == ilpdest.TypeFulfill
}

// fanOut delivers a peer's route update (pkt.FanOut) to every healthy
// upstream of set (to all of them when none is healthy, as for one
// packet), at once, and answers the peer once: with a Fulfill when every
// upstream fulfilled, else with the first refusal in rank order, an
// upstream's Reject or a failure ilp_edge turns into one. One peer's
// updates are delivered one at a time, so every connector applies them
// in the order the edge got them, as the peer sent them. An upstream
// that missed earlier updates gets the whole table instead (peerTable),
// and when the upstream that speaks to the peer no longer takes its
// updates, the route control moves on (moveRouteControl).
func (p *Proxy) fanOut(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, pkt *handler.Packet,
	set *upstreamSet, order []int, key string, deadline time.Time,
) error {
	held := p.holdTable(r.Context(), pkt, deadline)
	defer held.release(p)
	t := held.peerTable

	var targets []int // ranks in order
	for _, healthy := range [2]bool{true, false} {
		for rank, i := range order {
			if set.upstreams[i].healthy(p.maxFails) == healthy {
				targets = append(targets, rank)
			}
		}
		if len(targets) > 0 {
			break
		}
	}
	if len(targets) == 0 {
		return handler.NewForwardError(handler.NoUpstream, "", errNoUpstream)
	}
	bodies, holds := p.routeUpdateBodies(t, pkt, set, order, targets)
	replies := make([]fanOutReply, len(targets))
	var wg sync.WaitGroup
	for n, rank := range targets {
		// Not order in the goroutine: the caller's order, on its stack for
		// every other packet, would escape to the heap.
		u := set.upstreams[order[rank]]
		wg.Add(1)
		go func() {
			defer wg.Done()
			reply, err := p.exchangeCounted(r, repl, u, bodies[n], deadline, nil)
			replies[n] = fanOutReply{reply: reply, err: err, rank: rank, accepted: acceptedUpdate(reply, err)}
			u.metrics.countRouteUpdate(replies[n].accepted, err)
		}()
	}
	wg.Wait()
	pkt.SetFannedOut()

	var took []string // the upstreams that accepted, in rank order
	for n, rank := range targets {
		addr := set.names[order[rank]]
		switch {
		case holds == nil: // an update the edge could not read
		case replies[n].accepted && holds[n]:
			t.accepted(addr)
		default:
			delete(t.synced, addr)
		}
		if replies[n].accepted {
			took = append(took, addr)
		}
	}
	p.moveRouteControl(r, repl, pkt.Peer(), t, set, took, pkt.Prepare().ExpiresAt, deadline)

	answer := &replies[0]
	for i := range replies {
		if !replies[i].accepted {
			answer = &replies[i]
			break
		}
	}
	pkt.SetRoute(r, key, set.names[order[answer.rank]], answer.rank)
	if answer.err != nil {
		return caddyhttp.Error(answer.err.Failure.HTTPStatus(), answer.err)
	}
	w.Header()["Content-Type"] = octetStream
	w.WriteHeader(answer.reply.status)
	_, err := w.Write(answer.reply.body)
	return err
}

// routeUpdateBodies applies the peer's update in pkt to its table t and
// returns what each target gets: the update as the peer sent it, or the
// whole table for an upstream that missed updates before it; and for
// each, whether it holds the table once it accepts what it gets (not
// when it missed updates and the edge cannot replay the table). holds
// is nil when the update cannot be read: every target gets it as it
// is, and the table is left as it was.
func (p *Proxy) routeUpdateBodies(t *peerTable, pkt *handler.Packet, set *upstreamSet, order, targets []int) (bodies [][]byte, holds []bool) {
	bodies = make([][]byte, len(targets))
	for n := range bodies {
		bodies[n] = pkt.Bytes()
	}
	prepare := pkt.Prepare()
	update, err := ilpdest.ReadRouteUpdate(prepare.Data)
	if err != nil {
		if c := p.logger.Check(zap.DebugLevel, "route update unreadable; delivered as it is"); c != nil {
			c.Write(zap.String("peer", pkt.Peer()), zap.Error(err))
		}
		return bodies, nil
	}
	holds = make([]bool, len(targets))
	for n, rank := range targets {
		holds[n] = t.inOrder(set.names[order[rank]], &update)
	}
	t.apply(&update)
	var full []byte
	for n, rank := range targets {
		if holds[n] {
			continue
		}
		if full == nil {
			if full = t.fullUpdate(prepare.ExpiresAt); full == nil {
				return bodies, holds // the edge does not hold the whole table
			}
		}
		bodies[n], holds[n] = full, true
		u := set.upstreams[order[rank]]
		u.metrics.countTableReplay()
		p.logger.Info("route table replayed to an upstream that missed updates",
			zap.String("peer", pkt.Peer()), zap.String("upstream", u.addr),
			zap.Uint32("epoch", t.epoch), zap.Int("routes", len(t.routes)))
	}
	return bodies, holds
}

// moveRouteControl hands the peer's route control to the first-ranked
// upstream that took its update (took, in rank order) when another one
// holds it, or again when the peer sent its table from epoch 0 (the
// holder may have restarted and forgotten it), and tells the upstreams
// that held it before, reachable now, to stop sending the peer their
// tables. The peer's updates come at
// every broadcast interval, heartbeats included, so a dead speaker is
// replaced within one interval: the fleet's route changes reach the peer
// again, before the hold-down time of the routes it has runs out at a
// peer that expires them (ilp-connector 23 keeps them until withdrawn).
func (p *Proxy) moveRouteControl(r *http.Request, repl *caddy.Replacer, peer string, t *peerTable, set *upstreamSet,
	took []string, expiresAt, deadline time.Time,
) {
	if t.control == nil || len(took) == 0 {
		return
	}
	if first := took[0]; first != t.controlTo || t.fromStart {
		if p.sendControl(r, repl, set, first, t.controlPrepare(t.control.Mode, expiresAt), deadline) {
			if first != t.controlTo {
				p.logger.Info("route control moved to the first upstream that takes the peer's updates",
					zap.String("peer", peer), zap.String("from", t.controlTo), zap.String("to", first))
			}
			t.speakerIs(first)
			t.fromStart = false
		}
	}
	for _, addr := range took {
		if t.silence[addr] && p.sendControl(r, repl, set, addr, t.controlPrepare(ilpdest.ModeIdle, expiresAt), deadline) {
			delete(t.silence, addr)
		}
	}
}

// sendControl sends a route control Prepare to the upstream addr of set
// and reports whether it fulfilled it.
func (p *Proxy) sendControl(r *http.Request, repl *caddy.Replacer, set *upstreamSet, addr string, body []byte, deadline time.Time) bool {
	i := slices.Index(set.names, addr)
	if i < 0 {
		return false
	}
	reply, err := p.exchangeCounted(r, repl, set.upstreams[i], body, deadline, nil)
	return acceptedUpdate(reply, err)
}
