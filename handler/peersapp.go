package handler

import (
	"errors"
	"fmt"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/ilp-edge/caddy-ilp/store"
)

// PeersApp is the `ilp_peers` app: the peers of the whole config, each
// defined once with everything the edge knows of it (its credentials
// both ways, its mode and callback URLs, its limits), and the shared
// store, for every ilp_edge to refer to: in Caddy sites and in the ilp
// app's front door alike. A peer's limits are then one budget however
// many listeners it reaches the fleet through, and changing its token
// is one edit.
//
// An ilp_edge takes the peers it names (`peers <name...>`), or, when it
// defines no peer of its own, every one of them; it uses this store
// unless it has a `redis` of its own. Inline `peer` blocks in ilp_edge
// keep working, for configs with one edge.
type PeersApp struct {
	// The peers, as in ilp_edge's `peers`. Names are unique.
	Peers []*Peer `json:"peers,omitempty"`

	// The shared store every ilp_edge uses unless it sets its own; see
	// ilp_edge's `redis`.
	Redis *store.Config `json:"redis,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (PeersApp) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "ilp_peers",
		New: func() caddy.Module { return new(PeersApp) },
	}
}

// Validate checks that every peer has a unique name.
func (a *PeersApp) Validate() error {
	seen := make(map[string]bool, len(a.Peers))
	for _, p := range a.Peers {
		if p.Name == "" {
			return errors.New("ilp_peers: a peer has no name")
		}
		if seen[p.Name] {
			return fmt.Errorf("ilp_peers: peer %q defined twice", p.Name)
		}
		seen[p.Name] = true
	}
	return nil
}

// Start does nothing: the app only holds configuration.
func (*PeersApp) Start() error { return nil }

// Stop does nothing.
func (*PeersApp) Stop() error { return nil }

// peer returns the peer named name, or nil.
func (a *PeersApp) peer(name string) *Peer {
	if i := slices.IndexFunc(a.Peers, func(p *Peer) bool { return p.Name == name }); i >= 0 {
		return a.Peers[i]
	}
	return nil
}

// usePeersApp completes e's peers and store from the ilp_peers app, when
// the config has one: the peers e names, or all of them when e defines
// none of its own; the app's store when e has none.
func (e *Edge) usePeersApp(ctx caddy.Context) error {
	v, err := ctx.AppIfConfigured("ilp_peers")
	if errors.Is(err, caddy.ErrNotConfigured) {
		if len(e.PeerNames) > 0 {
			return fmt.Errorf("peers %v: no ilp_peers global option defines them", e.PeerNames)
		}
		return nil
	}
	if err != nil {
		return err
	}
	app := v.(*PeersApp)
	names := e.PeerNames
	if len(names) == 0 && len(e.Peers) == 0 {
		for _, p := range app.Peers {
			names = append(names, p.Name)
		}
	}
	for _, name := range names {
		p := app.peer(name)
		if p == nil {
			return fmt.Errorf("peer %q: not defined in ilp_peers", name)
		}
		if slices.ContainsFunc(e.Peers, func(q *Peer) bool { return q.Name == name }) {
			return fmt.Errorf("peer %q: defined in ilp_peers and in ilp_edge", name)
		}
		e.Peers = append(e.Peers, p)
	}
	if e.Redis == nil {
		e.Redis = app.Redis
	}
	return nil
}

// ParsePeersGlobalOption sets up the `ilp_peers` app from the global
// option of that name. Syntax:
//
//	ilp_peers {
//		redis <host:port...> { … }
//		peer <name> { … }
//	}
//
// peer takes what it takes in ilp_edge, and may be repeated; redis is
// ilp_edge's.
func ParsePeersGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("the ilp_peers global option is given twice")
	}
	app := new(PeersApp)
	d.Next() // the option's name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "redis":
			if app.Redis != nil {
				return nil, d.Err("ilp_peers: redis given twice")
			}
			r, err := store.UnmarshalCaddyfile(d)
			if err != nil {
				return nil, err
			}
			app.Redis = r
		case "peer":
			p, err := unmarshalPeer(d)
			if err != nil {
				return nil, err
			}
			if app.peer(p.Name) != nil {
				return nil, d.Errf("ilp_peers: peer %q defined twice", p.Name)
			}
			app.Peers = append(app.Peers, p)
		default:
			return nil, d.Errf("unrecognized ilp_peers option %q", d.Val())
		}
	}
	return httpcaddyfile.App{Name: "ilp_peers", Value: caddyconfig.JSON(app, nil)}, nil
}

// Interface guards
var (
	_ caddy.App       = (*PeersApp)(nil)
	_ caddy.Validator = (*PeersApp)(nil)
)
