package proxy

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"sort"

	"github.com/caddyserver/caddy/v2"

	"github.com/ilp-edge/caddy-ilp/store"
)

// fleetStatus is GET /ilp/fleet's answer: what the edges share, as this
// edge sees it.
type fleetStatus struct {
	Stores []storeStatus `json:"stores"`
	Tables []tableStatus `json:"tables"`
}

// storeStatus is one shared store in use.
type storeStatus struct {
	Edges     []store.Edge `json:"edges"`     // alive on it, this one marked self
	Instances uint64       `json:"instances"` // what limits are divided by while Redis is away
	Degraded  bool         `json:"degraded"`  // Redis failed and has not answered since
	Error     string       `json:"error,omitempty"`
}

// tableStatus is one peer's routing table (routing_protocol fanout).
type tableStatus struct {
	Peer string `json:"peer"`
	// Read from the shared store, which every edge uses; else this
	// edge's own copy (no store, or the store did not answer: Error).
	Shared         bool   `json:"shared"`
	RoutingTableID string `json:"routing_table_id"`
	Epoch          uint32 `json:"epoch"`
	// The edge holds the whole table since epoch 0, and can replay it to
	// a connector that missed updates.
	Complete bool `json:"complete"`
	Routes   int  `json:"routes"`
	// The connector that holds the peer's route control: it sends the
	// peer the fleet's routes.
	RouteControl string `json:"route_control,omitempty"`
	// The epoch of the table each connector is known to hold.
	Connectors map[string]uint32 `json:"connectors"`
	Error      string            `json:"error,omitempty"`
}

func (t *peerTable) status(peer string) tableStatus {
	return tableStatus{
		Peer: peer, RoutingTableID: uuid(t.id), Epoch: t.epoch, Complete: t.complete, Routes: len(t.routes),
		RouteControl: t.controlTo, Connectors: t.synced,
	}
}

func uuid(b [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// fleet reads the stores in use and the peers' tables: from the store
// each was last shared through, else this edge's copy.
func fleet(ctx context.Context) fleetStatus {
	out := fleetStatus{Stores: []storeStatus{}, Tables: []tableStatus{}}
	for _, s := range store.Loaded() {
		st := storeStatus{Instances: s.Instances(), Degraded: s.Degraded()}
		edges, err := s.Edges(ctx)
		if err != nil {
			st.Error = err.Error()
		}
		st.Edges = edges
		out.Stores = append(out.Stores, st)
	}
	peerTables.Range(func(k, v any) bool {
		peer, t := k.(string), v.(*peerTable)
		t.mu.Lock()
		local, shared := t.status(peer), t.shared
		local.Connectors = maps.Clone(local.Connectors)
		t.mu.Unlock()
		if shared == nil {
			out.Tables = append(out.Tables, local)
			return true
		}
		data, err := shared.ReadTable(ctx, peer)
		if err == nil && data != nil {
			s := newPeerTable()
			if err = s.unmarshal(data); err == nil {
				st := s.status(peer)
				st.Shared = true
				out.Tables = append(out.Tables, st)
				return true
			}
		}
		if err != nil {
			local.Error = err.Error()
		}
		out.Tables = append(out.Tables, local)
		return true
	})
	sort.Slice(out.Tables, func(i, j int) bool { return out.Tables[i].Peer < out.Tables[j].Peer })
	return out
}

func serveFleet(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	return writeJSON(w, fleet(r.Context()))
}
