package proxy

import (
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// fanOutLocks holds a *sync.Mutex per peer that sent route updates: one
// peer's fan-outs run one at a time, across configs too, so that a reload
// does not let two of them cross.
var fanOutLocks sync.Map

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
// in the order the edge got them, as the peer sent them.
func (p *Proxy) fanOut(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, pkt *handler.Packet,
	set *upstreamSet, order []int, key string, deadline time.Time,
) error {
	lock, _ := fanOutLocks.LoadOrStore(pkt.Peer(), new(sync.Mutex))
	lock.(*sync.Mutex).Lock()
	defer lock.(*sync.Mutex).Unlock()

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
	replies := make([]fanOutReply, len(targets))
	var wg sync.WaitGroup
	for n, rank := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := set.upstreams[order[rank]]
			reply, err := u.exchange(r, repl, pkt.Bytes(), deadline, nil)
			u.metrics.count(err)
			if err != nil {
				u.countFailure(time.Duration(p.FailDuration), p.maxFails)
			}
			replies[n] = fanOutReply{reply: reply, err: err, rank: rank, accepted: acceptedUpdate(reply, err)}
			u.metrics.countRouteUpdate(replies[n].accepted, err)
		}()
	}
	wg.Wait()
	pkt.SetFannedOut()

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
