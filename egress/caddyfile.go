package egress

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/ilp-edge/caddy-ilp/handler"
)

// ParseEgressCaddyfile sets up an Egress from the `ilp_egress` directive;
// see Egress.UnmarshalCaddyfile for the syntax.
func ParseEgressCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	e := new(Egress)
	err := e.UnmarshalCaddyfile(h.Dispenser)
	return e, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	ilp_egress {
//		path_prefix <path>
//		dial_timeout <duration>
//		keepalive <duration>
//		metrics on|off
//		callback_url <url>
//	}
//
// The peers, their URLs and credentials are the ilp_peers global option's.
func (e *Egress) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch opt := d.Val(); opt {
		case "path_prefix":
			if !d.AllArgs(&e.PathPrefix) {
				return d.ArgErr()
			}
			if err := checkPathPrefix(e.PathPrefix); err != nil {
				return d.Errf("%v", err)
			}
		case "dial_timeout":
			e.DialTimeout, err = handler.ParseDurationArg(d)
		case "keepalive":
			e.KeepAlive, err = handler.ParseDurationArg(d)
		case "metrics":
			e.DisableMetrics, err = handler.ParseMetricsArg(d)
		case "callback_url":
			if !d.AllArgs(&e.CallbackURL) {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized ilp_egress option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Egress)(nil)
