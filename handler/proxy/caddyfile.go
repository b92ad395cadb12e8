package proxy

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/caddyserver/caddy/v2/modules/caddytls"

	"github.com/ilp-edge/caddy-ilp/handler"
)

// ParseProxyCaddyfile sets up a Proxy from the `ilp_proxy` directive; see
// Proxy.UnmarshalCaddyfile for the syntax.
func ParseProxyCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	p := new(Proxy)
	err := p.UnmarshalCaddyfile(h.Dispenser)
	return p, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	ilp_proxy [<upstreams...>] {
//		to <upstreams...>
//		dynamic <source> [...]
//		dynamic_scheme http|h2c|https
//		dynamic_path <path>
//		tls_trust_pool <source> [...]
//		tls_client_auth <cert_file> <key_file>
//		tls_server_name <name>
//		prefix_segments <n>
//		key destination|peer|peer_destination
//		max_hold <duration>
//		dial_timeout <duration>
//		keepalive <duration>
//		keepalive_idle_conns <n>
//		fail_duration <duration>
//		max_fails <n>
//		health_uri <path>
//		health_port <port>
//		health_interval <duration>
//		health_timeout <duration>
//		metrics on|off
//	}
//
// An upstream is http://, h2c:// or https:// host:port with an optional
// path, which may hold placeholders. `dynamic` takes the same source
// modules and syntax as reverse_proxy's.
func (p *Proxy) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive
	p.Upstreams = append(p.Upstreams, d.RemainingArgs()...)
	// healthPortAt is the health_port line, for an error found once the
	// whole block is read.
	var healthPortAt *caddyfile.Dispenser
	for d.NextBlock(0) {
		opt := d.Val()
		var err error
		switch opt {
		case "to":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			p.Upstreams = append(p.Upstreams, args...)
		case "dynamic":
			if p.DynamicUpstreamsRaw != nil {
				return d.Err("dynamic upstreams already specified")
			}
			p.DynamicUpstreamsRaw, err = handler.UnmarshalInlineModule[reverseproxy.UpstreamSource](d, "http.reverse_proxy.upstreams", "source")
		case "dynamic_scheme":
			if !d.AllArgs(&p.DynamicScheme) {
				return d.ArgErr()
			}
			if err := checkDynamic(p.DynamicScheme, "/"); err != nil {
				return d.Errf("%v", err)
			}
		case "dynamic_path":
			if !d.AllArgs(&p.DynamicPath) {
				return d.ArgErr()
			}
			if err := checkDynamic("http", p.DynamicPath); err != nil {
				return d.Errf("%v", err)
			}
		case "tls_trust_pool":
			if p.tlsSettings().CARaw != nil {
				return d.Err("tls_trust_pool already specified")
			}
			p.TLS.CARaw, err = handler.UnmarshalInlineModule[caddytls.CA](d, "tls.ca_pool.source", "provider")
		case "tls_client_auth":
			if !d.AllArgs(&p.tlsSettings().ClientCertificateFile, &p.TLS.ClientCertificateKeyFile) {
				return d.ArgErr()
			}
		case "tls_server_name":
			if !d.AllArgs(&p.tlsSettings().ServerName) {
				return d.ArgErr()
			}
		case "max_hold":
			p.MaxHold, err = handler.ParseDurationArg(d)
		case "dial_timeout":
			p.DialTimeout, err = handler.ParseDurationArg(d)
		case "keepalive":
			p.KeepAlive, err = handler.ParseDurationArg(d)
		case "fail_duration":
			p.FailDuration, err = handler.ParseDurationArg(d)
		case "health_interval":
			p.HealthInterval, err = handler.ParseDurationArg(d)
		case "health_timeout":
			p.HealthTimeout, err = handler.ParseDurationArg(d)
		case "health_uri":
			if !d.AllArgs(&p.HealthURI) {
				return d.ArgErr()
			}
		case "health_port":
			healthPortAt = caddyfile.NewDispenser([]caddyfile.Token{d.Token()})
			healthPortAt.Next()
			p.HealthPort, err = handler.ParseCountArg(d)
			if err == nil && p.HealthPort > 65535 {
				err = d.Errf("health_port %d: want a port number, 65535 at most", p.HealthPort)
			}
		case "prefix_segments":
			var n int
			n, err = handler.ParseCountArg(d)
			p.PrefixSegments = &n
		case "key":
			p.Key, err = handler.ParseRouteKeyArg(d)
		case "max_fails":
			p.MaxFails, err = handler.ParseCountArg(d)
		case "keepalive_idle_conns":
			p.KeepAliveIdleConns, err = handler.ParseCountArg(d)
		case "metrics":
			p.DisableMetrics, err = handler.ParseMetricsArg(d)
		default:
			return d.Errf("unrecognized ilp_proxy option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	if len(p.Upstreams) == 0 && p.DynamicUpstreamsRaw == nil {
		return d.Err("ilp_proxy needs at least one upstream, or dynamic upstreams (an unset {$VAR} in a Caddyfile reads as nothing: is the variable that lists them set?)")
	}
	if healthPortAt != nil && p.HealthURI == "" {
		return healthPortAt.Err("health_port without health_uri: add health_uri with the path to GET on that port (active health checks are off without it)")
	}
	for _, s := range p.Upstreams {
		if _, err := parseUpstream(s); err != nil {
			return d.Errf("%v", err)
		}
	}
	return nil
}

// tlsSettings returns p.TLS, making it first if need be.
func (p *Proxy) tlsSettings() *reverseproxy.TLSConfig {
	if p.TLS == nil {
		p.TLS = new(reverseproxy.TLSConfig)
	}
	return p.TLS
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Proxy)(nil)
