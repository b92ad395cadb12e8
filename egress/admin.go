package egress

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"

	"github.com/ilp-edge/caddy-ilp/async"
)

// Admin is the `admin.api.ilp_egress` module: on Caddy's admin endpoint,
// what every running ilp_egress sends where.
//
//	GET /ilp/egress    each handler's path prefix, callback URL and, with
//	                   a shared store, this edge's name in it (edge); and
//	                   its peers: URL (without its query), mode, and the
//	                   asynchronous exchanges waiting for their reply now
type Admin struct{}

// CaddyModule returns the Caddy module information.
func (Admin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.ilp_egress",
		New: func() caddy.Module { return new(Admin) },
	}
}

// Routes implements caddy.AdminRouter.
func (Admin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/ilp/egress", Handler: caddy.AdminHandlerFunc(serveEgress)}}
}

// running holds the provisioned ilp_egress handlers: during a reload the
// old config's too, until cleaned up.
var running struct {
	sync.Mutex
	egresses []*Egress
}

func register(e *Egress) {
	running.Lock()
	running.egresses = append(running.egresses, e)
	running.Unlock()
}

func unregister(e *Egress) {
	running.Lock()
	defer running.Unlock()
	running.egresses = slices.DeleteFunc(running.egresses, func(x *Egress) bool { return x == e })
}

// egressStatus is one ilp_egress in the admin API's answer.
type egressStatus struct {
	PathPrefix  string       `json:"path_prefix"`
	CallbackURL string       `json:"callback_url,omitempty"`
	Edge        string       `json:"edge,omitempty"` // the Callback-Url's edge parameter
	Peers       []peerStatus `json:"peers"`
}

type peerStatus struct {
	Name    string `json:"name"`
	URL     string `json:"url"`  // without its query, where a peer may keep a secret
	Mode    string `json:"mode"` // sync, or async (RFC 35 draft 3)
	Waiting int    `json:"waiting,omitempty"`
}

func statuses() []egressStatus {
	running.Lock()
	defer running.Unlock()
	out := make([]egressStatus, 0, len(running.egresses))
	for _, e := range running.egresses {
		s := egressStatus{PathPrefix: e.PathPrefix, CallbackURL: withoutQuery(e.callbackURL), Peers: []peerStatus{}}
		if e.store != nil {
			s.Edge = e.store.ReplyEdge()
		}
		for _, p := range e.peers {
			ps := peerStatus{Name: p.name, URL: withoutQuery(p.url), Mode: "sync"}
			if p.async {
				ps.Mode, ps.Waiting = "async", async.Pending.WaitingFor(p.name)
			}
			s.Peers = append(s.Peers, ps)
		}
		slices.SortFunc(s.Peers, func(a, b peerStatus) int { return strings.Compare(a.Name, b.Name) })
		out = append(out, s)
	}
	return out
}

func withoutQuery(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	u.RawQuery, u.ForceQuery = "", false
	return u.String()
}

func serveEgress(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(statuses())
}

// Interface guard
var _ caddy.AdminRouter = Admin{}
