package handler

import (
	"encoding/json"
	"math"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
)

// The Caddyfile argument readers every caddy-ilp directive uses, so that
// one option spelled in two modules reads, and fails, the same way. Each
// reads the arguments of the option the dispenser is on, and its errors
// point at that line.

// ParseDurationArg reads the one non-negative duration argument of an
// option, such as `max_hold 30s`.
func ParseDurationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	opt := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return 0, d.Errf("%s %q: %v", opt, s, err)
	}
	if dur < 0 {
		return 0, d.Errf("%s %s: must not be negative", opt, strconv.Quote(s))
	}
	return caddy.Duration(dur), nil
}

// ParseSizeArg reads the one size argument of an option, more than 0
// bytes, such as `max_packet_size 32KiB`.
func ParseSizeArg(d *caddyfile.Dispenser) (int64, error) {
	opt := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return 0, d.ArgErr()
	}
	n, err := humanize.ParseBytes(s)
	if err != nil || n == 0 || n > math.MaxInt32 {
		return 0, d.Errf("%s %q: not a size in bytes", opt, s)
	}
	return int64(n), nil
}

// ParseCountArg reads the one whole-number argument (0 or more) of an
// option, such as `max_fails 3`.
func ParseCountArg(d *caddyfile.Dispenser) (int, error) {
	opt := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return 0, d.ArgErr()
	}
	return parseCount(d, opt, s)
}

// parseCount reads s, the value of opt, as a whole number, 0 or more.
func parseCount(d *caddyfile.Dispenser, opt, s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, d.Errf("%s %q: want a whole number, 0 or more", opt, s)
	}
	return n, nil
}

// ParseMetricsArg reads `metrics on|off` and reports whether metrics are
// off.
func ParseMetricsArg(d *caddyfile.Dispenser) (off bool, err error) {
	var s string
	if !d.AllArgs(&s) {
		return false, d.ArgErr()
	}
	switch s {
	case "on":
		return false, nil
	case "off":
		return true, nil
	}
	return false, d.Errf("metrics %q: want on or off", s)
}

// UnmarshalInlineModule reads `<name> [<args...>] [{ … }]` as the module
// namespace.<name>, which must be a T, and returns its JSON with inlineKey
// naming it, as reverse_proxy's `dynamic`, `lb_policy` and
// `tls_trust_pool` do.
func UnmarshalInlineModule[T any](d *caddyfile.Dispenser, namespace, inlineKey string) (json.RawMessage, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	name := d.Val()
	modID := namespace + "." + name
	unm, err := caddyfile.UnmarshalModule(d, modID)
	if err != nil {
		return nil, err
	}
	mod, ok := unm.(T)
	if !ok {
		return nil, d.Errf("module %s (%T) cannot be used here", modID, unm)
	}
	return caddyconfig.JSONModuleObject(mod, inlineKey, name, nil), nil
}

// ParseRouteKeyArg reads the argument of `key destination|peer|
// peer_destination`, what ilp_prefix and ilp_proxy route by.
func ParseRouteKeyArg(d *caddyfile.Dispenser) (string, error) {
	var key string
	if !d.AllArgs(&key) {
		return "", d.ArgErr()
	}
	if err := CheckRouteKey(key); err != nil {
		return "", d.Errf("%v", err)
	}
	return key, nil
}
