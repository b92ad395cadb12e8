// Package caddyilp registers the caddy-ilp modules with Caddy. It is the
// package that `xcaddy build --with github.com/ilp-edge/caddy-ilp` imports;
// the modules themselves live in packages handler, handler/proxy, egress
// and frontdoor (the `ilp` app), and the `caddy ilp` commands in package
// ilpcmd.
package caddyilp

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/ilp-edge/caddy-ilp/egress"
	"github.com/ilp-edge/caddy-ilp/frontdoor"
	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/handler/proxy"
	_ "github.com/ilp-edge/caddy-ilp/ilpcmd" // caddy ilp …
	"github.com/ilp-edge/caddy-ilp/sharedtcp"
)

func init() {
	caddy.RegisterNetwork(sharedtcp.Network, sharedtcp.Listen)
	caddy.RegisterModule(handler.Edge{})
	caddy.RegisterModule(handler.PeersApp{})
	httpcaddyfile.RegisterGlobalOption("ilp_peers", handler.ParsePeersGlobalOption)
	caddy.RegisterModule(handler.PrefixSelection{})
	caddy.RegisterModule(proxy.Proxy{})
	caddy.RegisterModule(proxy.Admin{})
	httpcaddyfile.RegisterHandlerDirective("ilp_edge", handler.ParseEdgeCaddyfile)
	// Before basic_auth, so that ilp_edge wraps handle and route blocks
	// (with "before reverse_proxy" it would sort after them and never run).
	httpcaddyfile.RegisterDirectiveOrder("ilp_edge", httpcaddyfile.Before, "basic_auth")
	httpcaddyfile.RegisterHandlerDirective("ilp_proxy", proxy.ParseProxyCaddyfile)
	// A terminal handler in reverse_proxy's place.
	httpcaddyfile.RegisterDirectiveOrder("ilp_proxy", httpcaddyfile.After, "reverse_proxy")
	caddy.RegisterModule(egress.Egress{})
	caddy.RegisterModule(egress.Admin{})
	httpcaddyfile.RegisterHandlerDirective("ilp_egress", egress.ParseEgressCaddyfile)
	// A terminal handler in reverse_proxy's place, as ilp_proxy.
	httpcaddyfile.RegisterDirectiveOrder("ilp_egress", httpcaddyfile.After, "reverse_proxy")
	caddy.RegisterModule(frontdoor.App{})
	httpcaddyfile.RegisterGlobalOption("ilp", frontdoor.ParseGlobalOption)
}
