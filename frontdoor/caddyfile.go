package frontdoor

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddytls"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/handler/proxy"
)

// ParseGlobalOption sets up the `ilp` app from the global option of that
// name. Syntax:
//
//	ilp {
//		grace_period <duration>
//		server <listen-address...> {
//			read_header_timeout <duration>
//			read_body_timeout <duration>
//			idle_timeout <duration>
//			write_timeout <duration>
//			max_header_bytes <size>
//			max_concurrent_streams <n>
//			access_log
//			tls [<names...>] {
//				client_auth { … }
//			}
//			ilp_edge { … }
//			ilp_proxy <upstreams...> { … }
//		}
//	}
//
// server may be repeated; ilp_edge and ilp_proxy take the options they
// take in a site, and client_auth those of a site's tls block. The
// servers are named srv0, srv1, … in order.
func ParseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("the ilp global option is given twice")
	}
	app := App{Servers: map[string]*Server{}}
	var warnings []caddyconfig.Warning
	d.Next() // the option's name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "grace_period":
			dur, err := handler.ParseDurationArg(d)
			if err != nil {
				return nil, err
			}
			app.GracePeriod = dur
		case "server":
			s, err := unmarshalServer(d, &warnings)
			if err != nil {
				return nil, err
			}
			app.Servers[fmt.Sprintf("srv%d", len(app.Servers))] = s
		default:
			return nil, d.Errf("unrecognized ilp option %q", d.Val())
		}
	}
	if len(app.Servers) == 0 {
		return nil, d.Err("ilp: no server")
	}
	return httpcaddyfile.App{Name: "ilp", Value: caddyconfig.JSON(app, &warnings)}, nil
}

func unmarshalServer(d *caddyfile.Dispenser, warnings *[]caddyconfig.Warning) (*Server, error) {
	s := &Server{Listen: d.RemainingArgs()}
	if len(s.Listen) == 0 {
		return nil, d.Err("server: a listen address is required")
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch name := d.Val(); name {
		case "read_header_timeout", "read_body_timeout", "idle_timeout", "write_timeout":
			dst := map[string]*caddy.Duration{"read_header_timeout": &s.ReadHeaderTimeout,
				"read_body_timeout": &s.ReadBodyTimeout, "idle_timeout": &s.IdleTimeout, "write_timeout": &s.WriteTimeout}[name]
			dur, err := handler.ParseDurationArg(d)
			if err != nil {
				return nil, err
			}
			*dst = dur
		case "max_concurrent_streams":
			n, err := handler.ParseCountArg(d)
			if err != nil {
				return nil, err
			}
			s.MaxConcurrentStreams = uint32(n)
		case "max_header_bytes":
			n, err := handler.ParseSizeArg(d)
			if err != nil {
				return nil, err
			}
			s.MaxHeaderBytes = int(n)
		case "access_log":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			s.AccessLog = true
		case "tls":
			t, err := unmarshalTLS(d)
			if err != nil {
				return nil, err
			}
			s.TLS = t
		case "ilp_edge":
			e := new(handler.Edge)
			if err := e.UnmarshalCaddyfile(d.NewFromNextSegment()); err != nil {
				return nil, err
			}
			s.HandlersRaw = append(s.HandlersRaw, caddyconfig.JSONModuleObject(e, "handler", "ilp_edge", warnings))
		case "ilp_proxy":
			p := new(proxy.Proxy)
			if err := p.UnmarshalCaddyfile(d.NewFromNextSegment()); err != nil {
				return nil, err
			}
			s.HandlersRaw = append(s.HandlersRaw, caddyconfig.JSONModuleObject(p, "handler", "ilp_proxy", warnings))
		default:
			return nil, d.Errf("unrecognized ilp server option %q", name)
		}
	}
	return s, nil
}

func unmarshalTLS(d *caddyfile.Dispenser) (*TLS, error) {
	t := &TLS{Names: d.RemainingArgs()}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "client_auth":
			ca := new(caddytls.ClientAuthentication)
			if err := ca.UnmarshalCaddyfile(d.NewFromNextSegment()); err != nil {
				return nil, err
			}
			t.ClientAuthentication = ca
		default:
			return nil, d.Errf("unrecognized tls option %q", d.Val())
		}
	}
	return t, nil
}
