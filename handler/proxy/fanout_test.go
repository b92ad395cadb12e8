package proxy

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// routeUpdate is a peer.route.update Prepare whose data tells it apart.
func routeUpdate(n int) []byte {
	return ilptest.NewPrepare(ilpdest.Prepare{Destination: []byte(ilpdest.PeerRouteUpdate),
		ExecutionCondition: ilpdest.PeerProtocolCondition, Data: fmt.Appendf(nil, "update %d", n)})
}

func withRouting(routing string) func(*handler.Edge) {
	return func(e *handler.Edge) { e.RoutingProtocol = routing }
}

func startConnectors(t *testing.T, n int) (cs []*connector, ups, names []string) {
	for i := range n {
		c := startConnector(t, fmt.Sprint("c", i), false)
		cs, ups, names = append(cs, c), append(ups, "http://"+c.addr()), append(names, c.addr())
	}
	return cs, ups, names
}

// TestFanOutDeliversToEveryUpstream: under routing_protocol fanout each
// of a peer's route updates reaches every connector, all of them in the
// same order even when the updates arrive at once, and the peer gets one
// Fulfill per update; its payments still go to one connector. Under
// sticky, an update reaches one.
func TestFanOutDeliversToEveryUpstream(t *testing.T) {
	cs, ups, _ := startConnectors(t, 3)
	e := testEdgeWith(t, withRouting(handler.RoutingFanout))
	p := testProxy(t, nil, ups...)

	const updates = 20
	var wg sync.WaitGroup
	for n := range updates {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, _, err := sendPacket(t, e, p, routeUpdate(n))
			if err != nil {
				t.Errorf("update %d: handler error %v", n, err)
			} else if _, ok := ilptest.FulfillData(w.Body.Bytes()); !ok {
				t.Errorf("update %d: answer %x, want a Fulfill", n, w.Body.Bytes())
			}
		}()
	}
	wg.Wait()
	for _, c := range cs[1:] {
		if len(c.bodies) != updates || !slices.Equal(c.bodies, cs[0].bodies) {
			t.Fatalf("%s got %d updates, %s %d, or in another order", c.name, len(c.bodies), cs[0].name, len(cs[0].bodies))
		}
	}
	w, _, err := send(t, e, p, "g.usd.bob", time.Minute)
	fulfilledBy(t, w, err)
	if total := cs[0].packets.Load() + cs[1].packets.Load() + cs[2].packets.Load(); total != 3*updates+1 {
		t.Errorf("the connectors got %d packets, want %d: a payment reaches one", total, 3*updates+1)
	}

	sticky := testEdgeWith(t, withRouting(handler.RoutingSticky))
	w, _, err = sendPacket(t, sticky, p, routeUpdate(updates))
	fulfilledBy(t, w, err)
	if total := cs[0].packets.Load() + cs[1].packets.Load() + cs[2].packets.Load(); total != 3*updates+2 {
		t.Errorf("the connectors got %d packets, want %d: a sticky update reaches one", total, 3*updates+2)
	}
}

// TestFanOutAnswersTheFirstRefusal: an update some connector refuses, or
// could not get, is answered with that refusal, and the others still get
// it. Once passive health marks the dead connector down, updates skip it
// and are fulfilled.
func TestFanOutAnswersTheFirstRefusal(t *testing.T) {
	cs, ups, _ := startConnectors(t, 2)
	e := testEdgeWith(t, withRouting(handler.RoutingFanout))
	p := testProxy(t, nil, ups...)
	cs[1].reject.Store(true)
	w, _, err := sendPacket(t, e, p, routeUpdate(0))
	wantReject(t, w, err, "T00")
	if cs[0].packets.Load() != 1 || cs[1].packets.Load() != 1 {
		t.Fatalf("the connectors got %d and %d updates, want one each", cs[0].packets.Load(), cs[1].packets.Load())
	}

	cs[1].reject.Store(false)
	p = testProxy(t, func(p *Proxy) { p.FailDuration = caddy.Duration(time.Minute) },
		append(ups, "http://"+ilptest.DeadAddress(t))...)
	w, _, err = sendPacket(t, e, p, routeUpdate(1))
	wantReject(t, w, err, "T01") // not delivered to the dead one
	w, _, err = sendPacket(t, e, p, routeUpdate(2))
	if _, ok := ilptest.FulfillData(w.Body.Bytes()); err != nil || !ok {
		t.Fatalf("with the dead connector marked down: %x, %v; want a Fulfill", w.Body.Bytes(), err)
	}
	for _, c := range cs {
		if n := c.packets.Load(); n != 3 {
			t.Errorf("%s got %d updates, want 3", c.name, n)
		}
	}
}

// TestFanOutRouteControlGoesToThePeersConnector: under fanout a peer's
// route control reaches the connector its name ranks first, whatever the
// forwarder's key, and the next one when that one is dead.
func TestFanOutRouteControlGoesToThePeersConnector(t *testing.T) {
	cs, ups, names := startConnectors(t, 5)
	control := ilptest.NewPrepare(ilpdest.Prepare{Destination: []byte(ilpdest.PeerRouteControl),
		ExecutionCondition: ilpdest.PeerProtocolCondition, Data: []byte{1}})
	e := testEdgeWith(t, withRouting(handler.RoutingFanout))
	p := testProxy(t, func(p *Proxy) { p.FailDuration = caddy.Duration(time.Minute) }, ups...)
	order := ilpdest.Rank("alice", names, nil)
	for range 3 {
		w, _, err := sendPacket(t, e, p, control)
		if got, want := fulfilledBy(t, w, err), cs[order[0]].name; got != want {
			t.Fatalf("route control went to %s, want %s, alice's first", got, want)
		}
	}
	cs[order[0]].srv.Close()
	for range 2 { // the first finds it dead and moves on, the second skips it
		w, _, err := sendPacket(t, e, p, control)
		if got, want := fulfilledBy(t, w, err), cs[order[1]].name; got != want {
			t.Fatalf("with %s dead, route control went to %s, want %s, alice's second", cs[order[0]].name, got, want)
		}
	}
}
