package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/store"
)

// heldTable is a peer's routing table held for one route update or route
// control: this edge's copy, locked, and, when the peer's edge has a
// shared store, first brought up to what the edges last saved there, and
// saved back when released. So every edge of a fleet applies a peer's
// updates to one table, whichever edge each update reaches, and one
// record says which connector holds the peer's route control.
type heldTable struct {
	*peerTable
	lock *store.TableLock // nil: the table is this edge's alone
}

// tableLockSlack is how long a shared table's lock outlives the packet's
// deadline: enough to save the table after the last reply came in.
const tableLockSlack = time.Second

// holdTable locks the routing table of pkt's peer until release, for a
// packet answered by deadline. Without the store, or while it cannot be
// used, the edge goes on with its own copy, as a single edge does.
func (p *Proxy) holdTable(ctx context.Context, pkt *handler.Packet, deadline time.Time) *heldTable {
	peer := pkt.Peer()
	t := peerTableOf(peer)
	t.mu.Lock()
	st := pkt.SharedStore()
	if st == nil {
		return &heldTable{peerTable: t}
	}
	lock, saved, err := st.LockTable(ctx, peer, time.Until(deadline)+tableLockSlack, deadline)
	if err != nil {
		store.CountLocalTable()
		if p.tableLog.Allow(peer, time.Now()) {
			p.logger.Warn("peer's shared routing table unavailable; using this edge's copy",
				zap.String("peer", peer), zap.Error(err))
		}
		return &heldTable{peerTable: t}
	}
	if saved != nil {
		if err := t.unmarshal(saved); err != nil {
			// Only an edge of another version writes what this one
			// cannot read; its own copy is the best it has.
			p.logger.Error("peer's shared routing table unreadable; using this edge's copy",
				zap.String("peer", peer), zap.Error(err))
		}
	}
	t.shared = st
	return &heldTable{peerTable: t, lock: lock}
}

// release saves the table to the shared store, if it came from there,
// and unlocks it.
func (h *heldTable) release(p *Proxy) {
	defer h.mu.Unlock()
	if h.lock == nil {
		return
	}
	// The peer may have gone; the table is saved all the same.
	if err := h.lock.Save(context.Background(), h.marshal()); err != nil {
		level := zap.WarnLevel
		if errors.Is(err, store.ErrLockLost) {
			level = zap.ErrorLevel
		}
		p.logger.Log(level, "peer's routing table not saved to the shared store; the next update replays it as this edge had it",
			zap.String("peer", h.lock.Peer), zap.Error(err))
	}
}

// sharedTable is a peerTable as the shared store keeps it (JSON).
type sharedTable struct {
	// The table (id, epochs, speaker, hold-down, routes, withdrawals) as
	// one route update from epoch 0, in CCP's encoding.
	Table     []byte            `json:"table"`
	Complete  bool              `json:"complete,omitempty"`
	Synced    map[string]uint32 `json:"synced,omitempty"`
	Control   []byte            `json:"control,omitempty"` // the peer's route control, in CCP's encoding
	ControlTo string            `json:"control_to,omitempty"`
	Silence   []string          `json:"silence,omitempty"`
	FromStart bool              `json:"from_start,omitempty"`
}

func (t *peerTable) marshal() []byte {
	s := sharedTable{
		Table: ilpdest.AppendRouteUpdate(nil, t.asUpdate()), Complete: t.complete, Synced: t.synced,
		ControlTo: t.controlTo, Silence: slices.Sorted(maps.Keys(t.silence)), FromStart: t.fromStart,
	}
	if t.control != nil {
		s.Control = ilpdest.AppendRouteControl(nil, *t.control)
	}
	b, _ := json.Marshal(s)
	return b
}

// unmarshal replaces t's contents with the table in data.
func (t *peerTable) unmarshal(data []byte) error {
	var s sharedTable
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	u, err := ilpdest.ReadRouteUpdate(s.Table)
	if err != nil {
		return fmt.Errorf("table: %w", err)
	}
	var control *ilpdest.RouteControl
	if s.Control != nil {
		c, err := ilpdest.ReadRouteControl(s.Control)
		if err != nil {
			return fmt.Errorf("control: %w", err)
		}
		control = &c
	}
	t.id, t.epoch, t.current, t.speaker, t.holdDown = u.RoutingTableID, u.ToEpochIndex, u.CurrentEpochIndex, u.Speaker, u.HoldDownTime
	clear(t.routes)
	for _, r := range u.NewRoutes {
		t.routes[r.Prefix] = r
	}
	clear(t.withdrawn)
	for _, prefix := range u.WithdrawnRoutes {
		t.withdrawn[prefix] = true
	}
	t.complete = s.Complete
	clear(t.synced)
	maps.Copy(t.synced, s.Synced)
	t.control, t.controlTo = control, s.ControlTo
	clear(t.silence)
	for _, addr := range s.Silence {
		t.silence[addr] = true
	}
	t.fromStart = s.FromStart
	return nil
}
