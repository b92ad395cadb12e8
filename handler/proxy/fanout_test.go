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

// ccpUpdate is alice's route update from epoch from to to, under table
// id, announcing the prefixes in add and withdrawing those in withdraw.
func ccpUpdate(id byte, from, to uint32, add, withdraw []string) []byte {
	u := ilpdest.RouteUpdate{RoutingTableID: [16]byte{id}, CurrentEpochIndex: to, FromEpochIndex: from,
		ToEpochIndex: to, HoldDownTime: 45000, Speaker: "test.alice", WithdrawnRoutes: withdraw}
	for _, prefix := range add {
		u.NewRoutes = append(u.NewRoutes, ilpdest.Route{Prefix: prefix, Path: []string{"test.alice"}, Auth: [32]byte{byte(len(prefix))}})
	}
	return ilptest.NewPrepare(ilpdest.Prepare{Destination: []byte(ilpdest.PeerRouteUpdate),
		ExecutionCondition: ilpdest.PeerProtocolCondition, Data: ilpdest.AppendRouteUpdate(nil, u)})
}

// lastCCP returns the CCP request's data in the last packet c received.
func lastCCP(t *testing.T, c *connector) (destination string, data []byte) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := ilpdest.ReadPrepare([]byte(c.bodies[len(c.bodies)-1]))
	if err != nil {
		t.Fatalf("%s: last packet: %v", c.name, err)
	}
	return string(p.Destination), p.Data
}

// updateIn reads the route update c received last.
func updateIn(t *testing.T, c *connector) ilpdest.RouteUpdate {
	t.Helper()
	dest, data := lastCCP(t, c)
	u, err := ilpdest.ReadRouteUpdate(data)
	if dest != ilpdest.PeerRouteUpdate || err != nil {
		t.Fatalf("%s: last packet to %s (%v), want a route update", c.name, dest, err)
	}
	return u
}

func prefixes(routes []ilpdest.Route) []string {
	var ps []string
	for _, r := range routes {
		ps = append(ps, r.Prefix)
	}
	return ps
}

// fulfilled sends a CCP request through e and p and fails the test
// unless the peer gets a Fulfill.
func fulfilled(t *testing.T, e *handler.Edge, p *Proxy, body []byte) {
	t.Helper()
	w, _, err := sendPacket(t, e, p, body)
	if _, ok := ilptest.FulfillData(w.Body.Bytes()); err != nil || !ok {
		t.Fatalf("got %x, %v; want a Fulfill", w.Body.Bytes(), err)
	}
}

// TestFanOutReplaysTheTableToAConnectorThatMissedUpdates: a connector
// that dropped one of alice's updates, and was marked down for the next,
// would see a gap at every later update, which ilp-connector ignores. It
// gets the whole table instead, from epoch 0, withdrawals included,
// once it takes updates again; after that, and for the others all along,
// the updates go as alice sent them.
func TestFanOutReplaysTheTableToAConnectorThatMissedUpdates(t *testing.T) {
	peerTables.Delete("alice")
	cs, ups, _ := startConnectors(t, 3)
	e := testEdgeWith(t, withRouting(handler.RoutingFanout))
	p := testProxy(t, func(p *Proxy) { p.FailDuration = caddy.Duration(2 * time.Second) }, ups...)

	fulfilled(t, e, p, ccpUpdate(1, 0, 1, []string{"test.alice.a"}, nil))
	cs[2].drop.Store(true)
	w, _, err := sendPacket(t, e, p, ccpUpdate(1, 1, 2, []string{"test.alice.b"}, nil))
	wantReject(t, w, err, "T00") // cs[2] broke off: it may or may not have it
	cs[2].drop.Store(false)
	fulfilled(t, e, p, ccpUpdate(1, 2, 3, []string{"test.alice.c"}, []string{"test.alice.a"}))
	if n := cs[2].packets.Load(); n != 1 {
		t.Fatalf("%s got %d updates while marked down, want only the first", cs[2].name, n)
	}
	waitFor(t, cs[2].name+" healthy again", func() bool { return p.static.upstreams[2].healthy(p.maxFails) })

	heartbeat := ccpUpdate(1, 3, 3, nil, nil)
	fulfilled(t, e, p, heartbeat)
	for _, c := range cs[:2] {
		if _, data := lastCCP(t, c); string(data) != string(mustPrepare(t, heartbeat).Data) {
			t.Errorf("%s, in sync, did not get the heartbeat as alice sent it", c.name)
		}
	}
	full := updateIn(t, cs[2])
	if full.FromEpochIndex != 0 || full.ToEpochIndex != 3 || full.RoutingTableID != [16]byte{1} ||
		!slices.Equal(prefixes(full.NewRoutes), []string{"test.alice.b", "test.alice.c"}) ||
		!slices.Equal(full.WithdrawnRoutes, []string{"test.alice.a"}) || full.Speaker != "test.alice" || full.HoldDownTime != 45000 {
		t.Fatalf("%s got %+v, want the whole table: epochs 0 to 3, routes b and c, a withdrawn", cs[2].name, full)
	}

	next := ccpUpdate(1, 3, 4, []string{"test.alice.d"}, nil)
	fulfilled(t, e, p, next)
	for _, c := range cs {
		if _, data := lastCCP(t, c); string(data) != string(mustPrepare(t, next).Data) {
			t.Errorf("%s did not get the update after the replay as alice sent it", c.name)
		}
	}
}

// TestFanOutWithoutTheWholeTable: an edge that saw alice's updates only
// from the middle (it restarted) cannot replay her table, so a connector
// that missed one gets the next as she sent it; once she sends her
// table from epoch 0, the edge holds it, and replays it again.
func TestFanOutWithoutTheWholeTable(t *testing.T) {
	peerTables.Delete("alice")
	cs, ups, _ := startConnectors(t, 2)
	e := testEdgeWith(t, withRouting(handler.RoutingFanout))
	p := testProxy(t, nil, ups...)

	fulfilled(t, e, p, ccpUpdate(2, 5, 6, []string{"test.alice.x"}, nil))
	cs[1].reject.Store(true)
	wantRejectOf(t, e, p, ccpUpdate(2, 6, 7, []string{"test.alice.y"}, nil), "T00")
	cs[1].reject.Store(false)
	fulfilled(t, e, p, ccpUpdate(2, 7, 8, nil, nil))
	if u := updateIn(t, cs[1]); u.FromEpochIndex != 7 {
		t.Fatalf("%s got an update from epoch %d, want alice's own (7): the edge holds no whole table", cs[1].name, u.FromEpochIndex)
	}

	fulfilled(t, e, p, ccpUpdate(2, 0, 8, []string{"test.alice.x", "test.alice.y"}, nil))
	cs[1].reject.Store(true)
	wantRejectOf(t, e, p, ccpUpdate(2, 8, 9, []string{"test.alice.z"}, nil), "T00")
	cs[1].reject.Store(false)
	fulfilled(t, e, p, ccpUpdate(2, 9, 9, nil, nil))
	if u := updateIn(t, cs[1]); u.FromEpochIndex != 0 || u.ToEpochIndex != 9 ||
		!slices.Equal(prefixes(u.NewRoutes), []string{"test.alice.x", "test.alice.y", "test.alice.z"}) {
		t.Fatalf("%s got %+v, want the whole table from epoch 0 to 9", cs[1].name, u)
	}
	if u := updateIn(t, cs[0]); u.FromEpochIndex != 9 {
		t.Errorf("%s, in sync, got an update from epoch %d, want alice's heartbeat", cs[0].name, u.FromEpochIndex)
	}
}

// TestFanOutMovesRouteControl: alice's route control goes to the
// connector her name ranks first. When that one stops taking her updates,
// the next one that takes them is handed her route control as she sent
// it; when the first one is back, it gets it again and the stand-in is
// told MODE_IDLE, so one connector sends alice its table at a time. Her
// table sent from epoch 0 sends it to the holder again.
func TestFanOutMovesRouteControl(t *testing.T) {
	peerTables.Delete("alice")
	cs, ups, names := startConnectors(t, 3)
	e := testEdgeWith(t, withRouting(handler.RoutingFanout))
	p := testProxy(t, func(p *Proxy) { p.FailDuration = caddy.Duration(2 * time.Second) }, ups...)
	order := ilpdest.Rank("alice", names, nil)
	first, second, third := cs[order[0]], cs[order[1]], cs[order[2]]

	sync := ilpdest.RouteControl{Mode: ilpdest.ModeSync, LastKnownRoutingTableID: [16]byte{7}, LastKnownEpoch: 12}
	control := ilptest.NewPrepare(ilpdest.Prepare{Destination: []byte(ilpdest.PeerRouteControl),
		ExecutionCondition: ilpdest.PeerProtocolCondition, Data: ilpdest.AppendRouteControl(nil, sync)})
	w, _, err := sendPacket(t, e, p, control)
	if got := fulfilledBy(t, w, err); got != first.name {
		t.Fatalf("route control went to %s, want %s", got, first.name)
	}
	fulfilled(t, e, p, ccpUpdate(3, 0, 1, []string{"test.alice.a"}, nil))
	if second.packets.Load() != 1 || third.packets.Load() != 1 {
		t.Fatalf("with %s taking updates, the others got route control too", first.name)
	}

	first.drop.Store(true)
	wantRejectOf(t, e, p, ccpUpdate(3, 1, 1, nil, nil), "T00")
	first.drop.Store(false)
	wantControl(t, second, ilpdest.ModeSync, sync)
	if third.packets.Load() != 2 {
		t.Errorf("%s got route control too", third.name)
	}

	waitFor(t, first.name+" healthy again", func() bool { return p.static.upstreams[order[0]].healthy(p.maxFails) })
	fulfilled(t, e, p, ccpUpdate(3, 1, 1, nil, nil))
	wantControl(t, first, ilpdest.ModeSync, sync)
	wantControl(t, second, ilpdest.ModeIdle, sync)
	if third.packets.Load() != 3 {
		t.Errorf("%s got route control", third.name)
	}

	// alice's table from epoch 0 again: some connector asked for it, maybe
	// the one that holds her route control, restarted with no memory of
	// it. It gets it again; the others do not.
	sent := second.packets.Load()
	fulfilled(t, e, p, ccpUpdate(3, 0, 1, []string{"test.alice.a"}, nil))
	wantControl(t, first, ilpdest.ModeSync, sync)
	if second.packets.Load() != sent+1 || third.packets.Load() != 4 {
		t.Errorf("the update from epoch 0 sent route control beyond %s", first.name)
	}
}

func wantControl(t *testing.T, c *connector, mode uint8, sent ilpdest.RouteControl) {
	t.Helper()
	dest, data := lastCCP(t, c)
	got, err := ilpdest.ReadRouteControl(data)
	sent.Mode = mode
	if dest != ilpdest.PeerRouteControl || err != nil || got.Mode != sent.Mode ||
		got.LastKnownRoutingTableID != sent.LastKnownRoutingTableID || got.LastKnownEpoch != sent.LastKnownEpoch {
		t.Fatalf("%s last got %s %+v (%v), want route control %+v", c.name, dest, got, err, sent)
	}
}

func wantRejectOf(t *testing.T, e *handler.Edge, p *Proxy, body []byte, code string) {
	t.Helper()
	w, _, err := sendPacket(t, e, p, body)
	wantReject(t, w, err, code)
}

func mustPrepare(t *testing.T, b []byte) ilpdest.Prepare {
	t.Helper()
	p, err := ilpdest.ReadPrepare(b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
