package store

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/ilp-edge/caddy-ilp/internal/tlsclient"
)

// UnmarshalCaddyfile reads a redis block, the dispenser at its name.
// Syntax:
//
//	redis <host:port...> {
//		master_name <name>
//		cluster
//		username <name>
//		password <secret>
//		sentinel_username <name>
//		sentinel_password <secret>
//		db <n>
//		tls {
//			ca_file <path>
//			cert_file <path>
//			key_file <path>
//			server_name <name>
//		}
//		key_prefix <prefix>
//		timeout <duration>
//		on_store_failure allow|deny
//		instances <n>
//	}
//
// One address is one server (or, with cluster, a Cluster's seed node);
// several are a Cluster's seed nodes, or the sentinels with master_name.
func UnmarshalCaddyfile(d *caddyfile.Dispenser) (*Config, error) {
	c := new(Config)
	switch addrs := d.RemainingArgs(); len(addrs) {
	case 0:
		return nil, d.Err("redis takes an address, host:port, or several (Sentinel, Cluster)")
	case 1:
		c.Address = addrs[0]
	default:
		c.Addresses = addrs
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "cluster":
			if d.NextArg() {
				return nil, d.Errf("redis: cluster takes no argument")
			}
			c.Cluster = true
			continue
		case "tls":
			t, err := tlsclient.UnmarshalCaddyfile(d, "redis: tls")
			if err != nil {
				return nil, err
			}
			c.TLS = t
			continue
		}
		var v string
		if !d.AllArgs(&v) {
			return nil, d.Errf("redis: %s takes exactly one argument", opt)
		}
		switch opt {
		case "master_name":
			c.MasterName = v
		case "username":
			c.Username = v
		case "password":
			c.Password = v
		case "sentinel_username":
			c.SentinelUsername = v
		case "sentinel_password":
			c.SentinelPassword = v
		case "key_prefix":
			c.KeyPrefix = v
		case "db":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, d.Errf("redis: db %q: want a whole number from 0", v)
			}
			c.DB = n
		case "timeout":
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return nil, d.Errf("redis: timeout %q: want a duration above 0", v)
			}
			c.Timeout = caddy.Duration(dur)
		case "on_store_failure":
			if v != FailureAllow && v != FailureDeny {
				return nil, d.Errf("redis: on_store_failure %q: want allow or deny", v)
			}
			c.OnStoreFailure = v
		case "instances":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || n == 0 {
				return nil, d.Errf("redis: instances %q: want a whole number above 0", v)
			}
			c.Instances = n
		default:
			return nil, d.Errf("unrecognized redis option %q", opt)
		}
	}
	if err := c.check(); err != nil {
		return nil, d.Errf("%v", err)
	}
	return c, nil
}
