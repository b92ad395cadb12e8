package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// Admin is the `admin.api.ilp_proxy` module: on Caddy's admin endpoint,
// what every running ilp_proxy handler knows about its upstreams.
//
//	GET /ilp/upstreams               each handler's upstreams and their health
//	GET /ilp/route?address=<addr>    where each handler sends a packet to addr now
//	GET /ilp/fleet                   the edges alive on the shared store, and each
//	                                 peer's routing table: its route control, and
//	                                 where each connector stands in it
//
// reverse_proxy's own upstreams, ilp_prefix's included, are at Caddy's
// GET /reverse_proxy/upstreams.
type Admin struct{}

// CaddyModule returns the Caddy module information.
func (Admin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.ilp_proxy",
		New: func() caddy.Module { return new(Admin) },
	}
}

// Routes implements caddy.AdminRouter.
func (Admin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/ilp/upstreams", Handler: caddy.AdminHandlerFunc(serveUpstreams)},
		{Pattern: "/ilp/route", Handler: caddy.AdminHandlerFunc(serveRoute)},
		{Pattern: "/ilp/fleet", Handler: caddy.AdminHandlerFunc(serveFleet)},
	}
}

// running holds the provisioned ilp_proxy handlers, in provisioning
// order: during a reload the old config's are there too, until cleaned up.
var running struct {
	sync.Mutex
	proxies []*Proxy
}

func register(p *Proxy) {
	running.Lock()
	running.proxies = append(running.proxies, p)
	running.Unlock()
}

func unregister(p *Proxy) {
	running.Lock()
	defer running.Unlock()
	for i, q := range running.proxies {
		if q == p {
			running.proxies = append(running.proxies[:i], running.proxies[i+1:]...)
			return
		}
	}
}

// upstreamStatus is one upstream in the admin API's answers.
type upstreamStatus struct {
	Address string `json:"address"` // host:port, the rendezvous key
	Scheme  string `json:"scheme"`
	Healthy bool   `json:"healthy"` // gets packets before any marked-down upstream
	// Passive health: failures counted within fail_duration.
	PassiveFailures uint32 `json:"passive_failures"`
	// Active health: the last check failed.
	HealthCheckFailing bool `json:"health_check_failing"`
	// Route-miss failover: the packets this connector rejected for want
	// of a route that went to the next connector, and the last one. A
	// connector that keeps missing is stale: its routes lag its siblings'.
	RouteMisses   uint64     `json:"route_misses,omitempty"`
	LastRouteMiss *time.Time `json:"last_route_miss,omitempty"`
}

// proxyStatus is one ilp_proxy handler in the admin API's answers.
type proxyStatus struct {
	Upstreams      []upstreamStatus `json:"upstreams"`
	PrefixSegments int              `json:"prefix_segments"`
	RouteBy        string           `json:"route_by"`                    // the key setting: destination, peer or peer_destination
	Dynamic        bool             `json:"dynamic_upstreams,omitempty"` // only the static ones are listed
	// With ?address= (and &peer=): its routing key, and the upstreams in
	// rank order.
	Key         string `json:"key,omitempty"`
	WouldSendTo string `json:"would_send_to,omitempty"` // the first healthy one, else the first (see Proxy)
}

func (u *upstream) status(maxFails int32, misses map[string]handler.RouteMissStatus) upstreamStatus {
	s := upstreamStatus{Address: u.addr, Scheme: u.scheme, Healthy: u.healthy(maxFails),
		PassiveFailures: u.state.failures(), HealthCheckFailing: u.state.down.Load()}
	if m, ok := misses[u.addr]; ok {
		s.RouteMisses, s.LastRouteMiss = m.Total, &m.Last
	}
	return s
}

// statuses describes every running handler; with dest, in the rank order
// of a packet from peer to dest.
func statuses(dest, peer string) []proxyStatus {
	misses := make(map[string]handler.RouteMissStatus)
	for _, m := range handler.RouteMisses() {
		misses[m.Upstream] = m
	}
	running.Lock()
	defer running.Unlock()
	out := make([]proxyStatus, 0, len(running.proxies))
	for _, p := range running.proxies {
		s := proxyStatus{PrefixSegments: p.segments, RouteBy: p.Key, Dynamic: p.dynamic != nil}
		order := make([]int, len(p.static.upstreams))
		for i := range order {
			order[i] = i
		}
		if dest != "" {
			s.Key = handler.RouteKey(p.Key, peer, dest, p.segments)
			order = ilpdest.Rank(s.Key, p.static.names, nil)
		}
		for _, i := range order {
			s.Upstreams = append(s.Upstreams, p.static.upstreams[i].status(p.maxFails, misses))
		}
		if dest != "" && len(s.Upstreams) > 0 {
			s.WouldSendTo = s.Upstreams[0].Address // as ServeHTTP: the first healthy, else the first
			for _, u := range s.Upstreams {
				if u.Healthy {
					s.WouldSendTo = u.Address
					break
				}
			}
		}
		out = append(out, s)
	}
	return out
}

func serveUpstreams(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	return writeJSON(w, statuses("", ""))
}

func serveRoute(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	dest := r.URL.Query().Get("address")
	if !ilpdest.ValidAddress(dest) {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("address %q is not a valid ILP address", dest)}
	}
	return writeJSON(w, statuses(dest, r.URL.Query().Get("peer")))
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

// Interface guard
var _ caddy.AdminRouter = Admin{}
