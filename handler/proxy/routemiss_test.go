package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestRouteMissGoesToTheNextConnector: with route_miss_failover on the
// edge, a packet that its first-ranked connector rejects with a route
// miss is sent to the next connector, which fulfills it, and the stale
// connector gets no second copy.
func TestRouteMissGoesToTheNextConnector(t *testing.T) {
	var staleGot int
	stale := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		staleGot++
		w.Write(ilptest.Reject("F02", "test.fleet", "no route found. source=test.edge destination=g.usd.x"))
	}))
	t.Cleanup(stale.Close)
	fresh := startConnector(t, "fresh", false)
	addrs := []string{strings.TrimPrefix(stale.URL, "http://"), fresh.addr()}
	dest := destRankedFirst(addrs)

	e := testEdgeWith(t, func(e *handler.Edge) {
		e.RouteMiss = &handler.RouteMiss{FleetAddresses: []string{"test.fleet"}}
	})
	p := testProxy(t, nil, addrs...)
	rec, _, err := send(t, e, p, dest, time.Minute)
	if got := fulfilledBy(t, rec, err); got != "fresh" {
		t.Fatalf("fulfilled by %q, want fresh", got)
	}
	if staleGot != 1 || fresh.packets.Load() != 1 {
		t.Errorf("stale got %d packets, fresh %d; want 1 each", staleGot, fresh.packets.Load())
	}

	// The admin API shows which connector missed.
	var shown uint64
	for _, ps := range statuses("", "") {
		for _, u := range ps.Upstreams {
			if u.Address == addrs[0] {
				shown = u.RouteMisses
			}
			if u.Address == addrs[1] && u.RouteMisses != 0 {
				t.Errorf("/ilp/upstreams: fresh connector has %d route misses", u.RouteMisses)
			}
		}
	}
	if shown != 1 {
		t.Errorf("/ilp/upstreams: stale connector has %d route misses, want 1", shown)
	}

	// Without failover, the peer gets the route miss.
	rec, _, err = send(t, testEdge(t), p, dest, time.Minute)
	wantReject(t, rec, err, "F02")
	if fresh.packets.Load() != 1 {
		t.Errorf("without failover, fresh got the packet too")
	}
}
