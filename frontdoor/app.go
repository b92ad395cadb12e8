// Package frontdoor is the `ilp` Caddy app: ILP over HTTP served on its
// own listeners, outside Caddy's HTTP server and net/http, by the same
// ilp_edge and ilp_proxy handlers a Caddy HTTP route runs. What a packet
// costs in net/http's server and Caddy's handler chain, which no handler
// can avoid, is what this app saves: it parses HTTP/1.1 itself (package
// h1) and calls ilp_edge, then ilp_proxy, directly.
//
// Only ilp_edge and ilp_proxy run in it, so that every answer is what the
// edge's front doors in Caddy's HTTP server give; anything that is not an
// ILP Prepare POST (settlement paths, a health page) belongs on a Caddy
// HTTP server listening elsewhere.
package frontdoor

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/ilp-edge/caddy-ilp/handler"
)

// App is the `ilp` app: named servers, each on its own listeners.
type App struct {
	// The servers, by a name of the operator's choice (for logs).
	Servers map[string]*Server `json:"servers,omitempty"`

	// How long a stopping config (at a reload or shutdown) waits for the
	// packets in flight to get their answers before it closes their
	// connections. Default: 30s, ilp_edge's default max_hold.
	GracePeriod caddy.Duration `json:"grace_period,omitempty"`

	ctx caddy.Context
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "ilp",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision loads each server's handlers.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	if a.GracePeriod == 0 {
		a.GracePeriod = caddy.Duration(handler.DefaultMaxHold)
	}
	for name, s := range a.Servers {
		if err := s.provision(ctx, name); err != nil {
			return fmt.Errorf("server %q: %w", name, err)
		}
	}
	return nil
}

// Start opens every server's listeners and serves them. Caddy keeps a
// listener's socket across a config reload: the new config's server
// accepts on it as soon as it starts.
func (a *App) Start() error {
	for name, s := range a.Servers {
		if err := s.start(a.ctx); err != nil {
			// Caddy stops the apps that started, not the one that failed:
			// what this one opened would stay open, its listeners too.
			a.Stop()
			return fmt.Errorf("server %q: %w", name, err)
		}
	}
	return nil
}

// Stop stops accepting and lets every packet in flight get its answer,
// for at most the grace period, then closes what is left. Idle
// keep-alive connections are closed at once.
func (a *App) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(a.GracePeriod))
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range a.Servers {
		wg.Go(func() { s.stop(ctx) })
	}
	wg.Wait()
	return nil
}

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)
