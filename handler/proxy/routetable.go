package proxy

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/store"
)

// maxDataSize is the largest data an ILP packet may carry (RFC 27): a
// table too large for one update is not replayed.
const maxDataSize = 32767

// peerTables holds a *peerTable per peer whose routing_protocol is
// fanout. It is package-level so that a reload keeps what the edge
// knows, as the connectors keep what they applied. With a shared store,
// it is this edge's copy of what the store holds (heldTable).
var peerTables sync.Map

func peerTableOf(peer string) *peerTable {
	if t, ok := peerTables.Load(peer); ok {
		return t.(*peerTable)
	}
	t, _ := peerTables.LoadOrStore(peer, newPeerTable())
	return t.(*peerTable)
}

func newPeerTable() *peerTable {
	return &peerTable{
		routes: map[string]ilpdest.Route{}, withdrawn: map[string]bool{},
		synced: map[string]uint32{}, silence: map[string]bool{},
	}
}

// peerTable is what the edge knows of one peer's routing table (CCP),
// from the route updates it fanned out, and of how far each connector
// holds it.
//
// A connector applies an update only if it holds the epochs before it:
// ilp-connector's ccp-receiver ignores one that leaves a gap, fulfils it
// anyway, and never asks the peer again. So a connector that missed
// updates, unreachable or marked down when they went out, is sent the
// whole table instead: one update from epoch 0 under the peer's table
// id, which it applies whatever it held, withdrawals included.
//
// The table also remembers the peer's route control and the connector
// that accepted it, the one that sends the peer the fleet's routes. When
// that connector stops taking the peer's updates, the next one in the
// peer's ranking is handed the route control, so that it starts sending
// its own table (one reset at the peer), and a connector that was sent
// it before is told to stop (MODE_IDLE) once reachable, so that one
// table speaks to the peer at a time.
type peerTable struct {
	mu sync.Mutex // held across a whole fan-out: one peer's updates in order

	id        [16]byte
	epoch     uint32 // where the last update applied ended
	complete  bool   // every update since epoch 0 of id was applied
	current   uint32 // from the last update: the peer's current epoch,
	speaker   string // its address,
	holdDown  uint32 // and how long its routes hold (ms)
	routes    map[string]ilpdest.Route
	withdrawn map[string]bool // withdrawn since epoch 0 and not announced again

	// synced is the epoch each upstream (host:port) is known to hold
	// under id: where the last update it accepted in order ended.
	synced map[string]uint32

	control   *ilpdest.RouteControl // the peer's last route control
	controlTo string                // the upstream that accepted it
	silence   map[string]bool       // upstreams sent it before controlTo, to tell MODE_IDLE

	// fromStart is set when the peer sends its table from epoch 0, as it
	// does when a connector asks it to (one that started, perhaps the
	// one controlTo names, at the same address but with no memory of the
	// peer's route control): the route control is sent to controlTo
	// again.
	fromStart bool

	// shared is the store the table was last read from and saved to;
	// nil: it is this edge's alone.
	shared *store.Store
}

// inOrder reports whether the upstream addr applies u as it is: u starts
// at epoch 0, or where addr is known to be under u's table.
func (t *peerTable) inOrder(addr string, u *ilpdest.RouteUpdate) bool {
	if u.FromEpochIndex == 0 {
		return true
	}
	e, ok := t.synced[addr]
	return ok && u.RoutingTableID == t.id && e >= u.FromEpochIndex
}

// apply records u as a connector that holds the table applies it.
func (t *peerTable) apply(u *ilpdest.RouteUpdate) {
	switch {
	case u.RoutingTableID != t.id || u.FromEpochIndex == 0:
		// A new table, or the peer sending its table again from the
		// start: updates from epoch 0 carry every route it has.
		if u.RoutingTableID != t.id {
			clear(t.synced)
		}
		t.id = u.RoutingTableID
		clear(t.routes)
		clear(t.withdrawn)
		t.complete = u.FromEpochIndex == 0
		t.fromStart = t.fromStart || u.FromEpochIndex == 0
	case u.FromEpochIndex > t.epoch:
		t.complete = false // the edge missed updates: it restarted since
	case u.ToEpochIndex < t.epoch:
		return // older than what it holds: connectors ignore it too
	}
	for _, prefix := range u.WithdrawnRoutes {
		delete(t.routes, prefix)
		t.withdrawn[prefix] = true
	}
	for _, r := range u.NewRoutes {
		t.routes[r.Prefix] = r
		delete(t.withdrawn, r.Prefix)
	}
	t.epoch = u.ToEpochIndex
	t.current, t.speaker, t.holdDown = u.CurrentEpochIndex, u.Speaker, u.HoldDownTime
}

// accepted records that the upstream addr took what it was sent: an
// update in order, or the whole table, so it holds the table up to the
// last epoch applied.
func (t *peerTable) accepted(addr string) {
	if e, ok := t.synced[addr]; !ok || e < t.epoch {
		t.synced[addr] = t.epoch
	}
}

// asUpdate is the table as one route update from epoch 0.
func (t *peerTable) asUpdate() ilpdest.RouteUpdate {
	u := ilpdest.RouteUpdate{
		RoutingTableID: t.id, CurrentEpochIndex: t.current, ToEpochIndex: t.epoch,
		HoldDownTime: t.holdDown, Speaker: t.speaker,
		WithdrawnRoutes: slices.Sorted(maps.Keys(t.withdrawn)),
	}
	for _, prefix := range slices.Sorted(maps.Keys(t.routes)) {
		u.NewRoutes = append(u.NewRoutes, t.routes[prefix])
	}
	return u
}

// fullUpdate is the route update Prepare that holds the whole table,
// from epoch 0, expiring at expiresAt; nil when the edge does not hold
// the whole table, or it is too large for one packet.
func (t *peerTable) fullUpdate(expiresAt time.Time) []byte {
	if !t.complete {
		return nil
	}
	data := ilpdest.AppendRouteUpdate(nil, t.asUpdate())
	if len(data) > maxDataSize {
		return nil
	}
	return peerProtocolPrepare(ilpdest.PeerRouteUpdate, data, expiresAt)
}

// controlPrepare is the peer's route control, with mode, as a Prepare
// expiring at expiresAt.
func (t *peerTable) controlPrepare(mode uint8, expiresAt time.Time) []byte {
	c := *t.control
	c.Mode = mode
	return peerProtocolPrepare(ilpdest.PeerRouteControl, ilpdest.AppendRouteControl(nil, c), expiresAt)
}

// controlAccepted records the peer's route control (data), which the
// upstream addr accepted: addr now speaks to the peer, and the one that
// did before is to stop.
func (t *peerTable) controlAccepted(addr string, data []byte) {
	c, err := ilpdest.ReadRouteControl(data)
	if err != nil {
		return // the connector took what the edge cannot read: nothing to hand on
	}
	t.control = &c
	t.speakerIs(addr)
}

// speakerIs records that addr holds the peer's route control.
func (t *peerTable) speakerIs(addr string) {
	if t.controlTo != "" && t.controlTo != addr {
		t.silence[t.controlTo] = true
	}
	t.controlTo = addr
	delete(t.silence, addr)
}

// peerProtocolPrepare is a peer protocol request to destination, as
// ilp-protocol-ccp makes them: amount 0 and the fixed condition.
func peerProtocolPrepare(destination string, data []byte, expiresAt time.Time) []byte {
	return ilpdest.AppendPrepare(nil, ilpdest.Prepare{
		ExpiresAt: expiresAt, ExecutionCondition: ilpdest.PeerProtocolCondition,
		Destination: []byte(destination), Data: data,
	})
}
