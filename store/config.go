package store

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/ilp-edge/caddy-ilp/internal/tlsclient"
)

// Config is the shared store: a Redis deployment that every edge
// instance of one fleet uses, with the same settings, for what they must
// agree on (the peers' limits, the peers' routing tables, which edges are
// alive). One server, a Sentinel-managed master, or a Cluster.
type Config struct {
	// host:port of the one Redis server. Use Addresses for Sentinel or
	// Cluster.
	Address string `json:"address,omitempty"`

	// host:port of several nodes: the sentinels when MasterName is set,
	// else seed nodes of a Redis Cluster.
	Addresses []string `json:"addresses,omitempty"`

	// The name of the master the sentinels at Addresses watch
	// ("sentinel monitor <name> …"): the store follows it through
	// failovers.
	MasterName string `json:"master_name,omitempty"`

	// Treat a single address as a seed node of a Redis Cluster (several
	// Addresses without MasterName are one already).
	Cluster bool `json:"cluster,omitempty"`

	// Credentials (Redis 6 ACLs: a username too) and the database to use
	// (0 only on a Cluster). The passwords may be {env.NAME} or
	// {file./path} placeholders.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	DB       int    `json:"db,omitempty"`

	// The sentinels' own credentials, when they require them.
	SentinelUsername string `json:"sentinel_username,omitempty"`
	SentinelPassword string `json:"sentinel_password,omitempty"`

	// Connect with TLS.
	TLS *TLS `json:"tls,omitempty"`

	// Prefix of every key; edges that act as one must use the same.
	// Default: "caddy-ilp:".
	KeyPrefix string `json:"key_prefix,omitempty"`

	// The longest a packet waits for Redis; never past the packet's
	// expiry. Default: 50ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// What the peers' limits do while Redis cannot answer (down,
	// unreachable or slower than timeout). "allow" (default): each edge
	// enforces its share of each limit in process, the limit divided by
	// the number of edges alive when Redis last answered. "deny": refuse
	// every packet of a limited peer with T05. Either way the edge asks
	// Redis again after a second, and reconnects by itself. Routing
	// tables fall back to what each edge holds in process.
	OnStoreFailure string `json:"on_store_failure,omitempty"`

	// How many edge instances share the limits, for "allow". Default:
	// the number of edges alive, which each edge announces in Redis.
	Instances uint64 `json:"instances,omitempty"`
}

// TLS is how the store connects over TLS: ca_file, cert_file, key_file
// and server_name, read as a peer's callback_tls is. Without files, the
// system's roots verify the servers.
type TLS = tlsclient.Config

// Defaults of Config.
const (
	DefaultKeyPrefix = "caddy-ilp:"
	DefaultTimeout   = 50 * time.Millisecond
	FailureAllow     = "allow"
	FailureDeny      = "deny"
)

// check reports what is wrong with c's settings, placeholders aside.
func (c *Config) check() error {
	switch {
	case c.Address == "" && len(c.Addresses) == 0:
		return errors.New("redis: an address is required")
	case c.Address != "" && len(c.Addresses) > 0:
		return errors.New("redis: address and addresses are exclusive")
	case c.MasterName != "" && c.Cluster:
		return errors.New("redis: master_name (Sentinel) and cluster are exclusive")
	case c.DB != 0 && c.isCluster():
		return errors.New("redis: a Cluster has only db 0")
	case c.DB < 0:
		return errors.New("redis: db must be 0 or above")
	case c.Timeout < 0:
		return errors.New("redis: timeout must be above 0")
	}
	switch c.OnStoreFailure {
	case "", FailureAllow, FailureDeny:
	default:
		return fmt.Errorf("redis: on_store_failure %q: want allow or deny", c.OnStoreFailure)
	}
	return nil
}

// withDefaults is c checked, with its defaults set and its passwords'
// placeholders resolved.
func (c *Config) withDefaults() (Config, error) {
	r := *c
	if err := r.check(); err != nil {
		return r, err
	}
	if r.KeyPrefix == "" {
		r.KeyPrefix = DefaultKeyPrefix
	}
	if r.Timeout == 0 {
		r.Timeout = caddy.Duration(DefaultTimeout)
	}
	if r.OnStoreFailure == "" {
		r.OnStoreFailure = FailureAllow
	}
	repl := caddy.NewReplacer()
	for _, pw := range []*string{&r.Password, &r.SentinelPassword} {
		v, err := repl.ReplaceOrErr(*pw, true, true)
		if err != nil {
			return r, fmt.Errorf("redis: password: %w", err)
		}
		*pw = v
	}
	return r, nil
}

func (c *Config) isCluster() bool {
	return c.Cluster || (c.MasterName == "" && len(c.Addresses) > 1)
}

// client makes the go-redis client for c, whose defaults are set.
func (c *Config) client() (redis.UniversalClient, error) {
	addrs := c.Addresses
	if c.Address != "" {
		addrs = []string{c.Address}
	}
	var tlsConfig *tls.Config
	if c.TLS != nil {
		var err error
		if tlsConfig, err = c.TLS.Load(); err != nil {
			return nil, fmt.Errorf("redis: tls: %w", err)
		}
	}
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: addrs, MasterName: c.MasterName, IsClusterMode: c.Cluster,
		Username: c.Username, Password: c.Password, DB: c.DB,
		SentinelUsername: c.SentinelUsername, SentinelPassword: c.SentinelPassword,
		TLSConfig: tlsConfig,
		// The packet's context bounds every exchange, dial included; a
		// failure falls back at once instead of retrying (a Cluster still
		// follows MOVED and ASK redirects: they are not failures).
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DialTimeout:           time.Second,
		DisableIdentity:       true,
	}), nil
}
