package proxy

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
	"github.com/ilp-edge/caddy-ilp/internal/redistest"
	"github.com/ilp-edge/caddy-ilp/store"
)

// TestSharedTableCatchesUpThroughAnotherEdge: alice's updates reach two
// edges that share a store. A connector misses one at the first edge;
// the next update reaches the second edge, which has never seen alice
// (a restarted edge's memory is empty too) and still replays her whole
// table to that connector, from what the first saved. Without the
// store, the second edge cannot: it holds nothing to replay.
func TestSharedTableCatchesUpThroughAnotherEdge(t *testing.T) {
	r := redistest.Start(t)
	for _, shared := range []bool{true, false} {
		t.Run(map[bool]string{true: "shared", false: "alone"}[shared], func(t *testing.T) {
			peerTables.Delete("alice")
			cs, ups, _ := startConnectors(t, 3)
			e := testEdgeWith(t, func(e *handler.Edge) {
				e.RoutingProtocol = handler.RoutingFanout
				if shared {
					e.Redis = &store.Config{Address: r.Addr, KeyPrefix: t.Name() + ":"}
				}
			})
			first := testProxy(t, func(p *Proxy) { p.FailDuration = caddy.Duration(time.Minute) }, ups...)
			fulfilled(t, e, first, ccpUpdate(1, 0, 1, []string{"test.alice.a"}, nil))
			cs[2].drop.Store(true)
			w, _, err := sendPacket(t, e, first, ccpUpdate(1, 1, 2, []string{"test.alice.b"}, nil))
			wantReject(t, w, err, "T00")
			cs[2].drop.Store(false)

			// The other edge: its own memory (none) and its own health
			// state, in which cs[2] is up.
			peerTables.Delete("alice")
			other := testProxy(t, nil, ups...)
			next := ccpUpdate(1, 2, 3, []string{"test.alice.c"}, []string{"test.alice.a"})
			w, _, err = sendPacket(t, e, other, next)
			if _, ok := ilptest.FulfillData(w.Body.Bytes()); err != nil || !ok {
				t.Fatalf("through the other edge: %x, %v; want a Fulfill", w.Body.Bytes(), err)
			}
			if !shared {
				// Edges alone: the second holds none of alice's table.
				if u := updateIn(t, cs[2]); u.FromEpochIndex != 2 {
					t.Fatalf("alone: %s got an update from epoch %d, want alice's as she sent it (from 2)", cs[2].name, u.FromEpochIndex)
				}
				return
			}
			for _, c := range cs[:2] {
				if _, data := lastCCP(t, c); !bytes.Equal(data, mustPrepare(t, next).Data) {
					t.Errorf("%s, in sync, did not get the update as alice sent it", c.name)
				}
			}
			full := updateIn(t, cs[2])
			if full.FromEpochIndex != 0 || full.ToEpochIndex != 3 ||
				!slices.Equal(prefixes(full.NewRoutes), []string{"test.alice.b", "test.alice.c"}) ||
				!slices.Equal(full.WithdrawnRoutes, []string{"test.alice.a"}) {
				t.Fatalf("%s got %+v through the other edge, want alice's whole table: epochs 0 to 3, b and c, a withdrawn", cs[2].name, full)
			}

			// The admin API's view: the shared table, every connector at
			// epoch 3, and this edge alive on the store.
			f := fleet(t.Context())
			i := slices.IndexFunc(f.Tables, func(s tableStatus) bool { return s.Peer == "alice" })
			if i < 0 || !f.Tables[i].Shared || f.Tables[i].Epoch != 3 || !f.Tables[i].Complete || f.Tables[i].Routes != 2 {
				t.Fatalf("GET /ilp/fleet tables: %+v, want alice's shared table at epoch 3", f.Tables)
			}
			for _, c := range cs {
				if e, ok := f.Tables[i].Connectors[c.addr()]; !ok || e != 3 {
					t.Errorf("GET /ilp/fleet: %s at epoch %d (%v), want 3", c.name, e, ok)
				}
			}
			if len(f.Stores) == 0 || f.Stores[0].Error != "" {
				t.Errorf("GET /ilp/fleet stores: %+v", f.Stores)
			}
		})
	}
}

// TestSharedTableRoundTrip: what an edge saves of a table is what the
// next one reads back, route control included.
func TestSharedTableRoundTrip(t *testing.T) {
	a := newPeerTable()
	a.apply(&ilpdest.RouteUpdate{RoutingTableID: [16]byte{7}, CurrentEpochIndex: 5, ToEpochIndex: 5, HoldDownTime: 30000,
		Speaker: "test.alice", NewRoutes: []ilpdest.Route{{Prefix: "test.alice.x", Path: []string{"test.alice"},
			Props: []ilpdest.RouteProp{{Optional: true, ID: 9, Value: []byte("v")}}}}})
	a.apply(&ilpdest.RouteUpdate{RoutingTableID: [16]byte{7}, FromEpochIndex: 5, ToEpochIndex: 6, WithdrawnRoutes: []string{"test.alice.y"}})
	a.synced["10.0.0.1:7768"] = 6
	a.controlAccepted("10.0.0.2:7768", ilpdest.AppendRouteControl(nil, ilpdest.RouteControl{Mode: ilpdest.ModeSync, Features: []string{"f"}}))
	a.speakerIs("10.0.0.3:7768")

	b := newPeerTable()
	b.routes["stale"] = ilpdest.Route{Prefix: "stale"}
	if err := b.unmarshal(a.marshal()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.marshal(), a.marshal()) {
		t.Fatalf("read back:\n%s\nwant:\n%s", b.marshal(), a.marshal())
	}
	if _, ok := b.routes["stale"]; ok || !b.withdrawn["test.alice.y"] || b.controlTo != "10.0.0.3:7768" || !b.silence["10.0.0.2:7768"] ||
		b.control == nil || b.control.Mode != ilpdest.ModeSync || b.epoch != 6 || !b.complete {
		t.Errorf("read back %+v", b)
	}
	if err := b.unmarshal([]byte(`{"table":"AAAA"}`)); err == nil {
		t.Error("a truncated table was read")
	}
}
