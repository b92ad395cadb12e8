package handler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// RedisStore keeps the peers' Limits on a Redis server, so that every edge
// instance using the same server and key prefix enforces one limit per
// peer for all of them, whichever instance a packet reaches.
//
// Each instance leases a share of a peer's budget from Redis at a time
// (a twentieth of its burst, or what one packet needs if more; the burst
// must last at least a millisecond at the limit's rate) and spends
// it locally: one round trip per lease, not per packet. Redis keeps each
// budget as the generic cell rate algorithm does, one theoretical arrival
// time in microseconds on Redis' own clock, so that the instances' clocks
// do not matter; the conversion between units and microseconds is done
// by the edge in 128-bit integers, so amounts are exact up to 2^64-1.
type RedisStore struct {
	// host:port of the Redis server. Required.
	Address string `json:"address"`

	// Credentials (Redis 6 ACLs: a username too) and the database to use.
	// The password may be an {env.NAME} or {file./path} placeholder.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	DB       int    `json:"db,omitempty"`

	// Prefix of the keys, one per peer and budget; instances that share a
	// limit must use the same. Default: "caddy-ilp:".
	KeyPrefix string `json:"key_prefix,omitempty"`

	// The longest a packet waits for Redis; never past the packet's
	// expiry. Default: 50ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// What to do while Redis cannot answer (down, unreachable or slower
	// than timeout). "allow" (default): enforce the limits in process, at
	// a share of each: limit/instances and burst/instances, so that the
	// fleet still stays near the limit when the balancer spreads a peer
	// evenly. "deny": refuse every packet of a limited peer with T05
	// (retried after a back-off, like a rate limit). Either way the edge
	// tries Redis again after a second, and reconnects by itself.
	OnStoreFailure string `json:"on_store_failure,omitempty"`

	// How many edge instances share the limits, for "allow". Default: 1.
	Instances uint64 `json:"instances,omitempty"`
}

// Defaults of RedisStore.
const (
	DefaultRedisKeyPrefix = "caddy-ilp:"
	DefaultRedisTimeout   = 50 * time.Millisecond
	StoreFailureAllow     = "allow"
	StoreFailureDeny      = "deny"
)

// storeRetryInterval is how long the edge uses its fallback after Redis
// failed before it asks Redis again (one packet asks; the rest go on
// with the fallback).
const storeRetryInterval = time.Second

// limitStore is a RedisStore, provisioned: one client per distinct
// config, shared through limitStores by every handler and reload that has
// the same, together with whether Redis is answering.
type limitStore struct {
	id        string // identifies the config: a hash of it, never logged
	client    *redis.Client
	keyPrefix string
	timeout   time.Duration
	deny      bool
	instances uint64
	logger    *zap.Logger

	downUntil atomic.Int64 // UnixNano until which Redis is not asked; 0 while it answers
	probing   atomic.Bool  // one packet is asking Redis whether it is back
	warn      LogLimiter
}

var limitStores = caddy.NewUsagePool()

// Destruct closes the client when no config uses it any more.
func (s *limitStore) Destruct() error { return s.client.Close() }

// provision checks the settings, resolves the password's placeholder and
// loads the store from limitStores. It must be released.
func (c *RedisStore) provision(logger *zap.Logger) (*limitStore, error) {
	r, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	settings, _ := json.Marshal(r)
	sum := sha256.Sum256(settings)
	id := "redis " + hex.EncodeToString(sum[:8])
	v, _, err := limitStores.LoadOrNew(id, func() (caddy.Destructor, error) {
		return newLimitStore(&r, id, logger), nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*limitStore), nil
}

// withDefaults is c checked, with its defaults set and its password's
// placeholder resolved.
func (c *RedisStore) withDefaults() (RedisStore, error) {
	r := *c
	if r.Address == "" {
		return r, errors.New("redis: address is required")
	}
	if r.KeyPrefix == "" {
		r.KeyPrefix = DefaultRedisKeyPrefix
	}
	if r.Timeout == 0 {
		r.Timeout = caddy.Duration(DefaultRedisTimeout)
	}
	if r.Timeout < 0 {
		return r, errors.New("redis: timeout must be above 0")
	}
	if r.Instances == 0 {
		r.Instances = 1
	}
	switch r.OnStoreFailure {
	case "":
		r.OnStoreFailure = StoreFailureAllow
	case StoreFailureAllow, StoreFailureDeny:
	default:
		return r, fmt.Errorf("redis: on_store_failure %q: want allow or deny", r.OnStoreFailure)
	}
	pw, err := caddy.NewReplacer().ReplaceOrErr(r.Password, true, true)
	if err != nil {
		return r, fmt.Errorf("redis: password: %w", err)
	}
	r.Password = pw
	return r, nil
}

// newLimitStore makes the store for r, whose defaults are set.
func newLimitStore(r *RedisStore, id string, logger *zap.Logger) *limitStore {
	return &limitStore{
		id: id,
		client: redis.NewClient(&redis.Options{
			Addr: r.Address, Username: r.Username, Password: r.Password, DB: r.DB,
			// The packet's context bounds every exchange, dial included;
			// a failure falls back at once instead of retrying.
			ContextTimeoutEnabled: true,
			MaxRetries:            -1,
			DialTimeout:           time.Second,
			DisableIdentity:       true,
		}),
		keyPrefix: r.KeyPrefix,
		timeout:   time.Duration(r.Timeout),
		deny:      r.OnStoreFailure == StoreFailureDeny,
		instances: r.Instances,
		logger:    logger,
		warn:      LogLimiter{Interval: 10 * time.Second},
	}
}

func (s *limitStore) release() { limitStores.Delete(s.id) }

// asking reports whether a packet at t should ask Redis: while Redis
// answers, every packet that needs a lease; after a failure, one packet
// once storeRetryInterval has passed.
func (s *limitStore) asking(t time.Time) bool {
	until := s.downUntil.Load()
	if until == 0 {
		return true
	}
	return t.UnixNano() >= until && s.probing.CompareAndSwap(false, true)
}

// leaseScript takes up to want µs of a budget's tolerance (its burst, in
// time), at least need, and returns {granted, 0}; or, when even need does
// not fit, {0, µs until it will}. KEYS[1] holds the budget's theoretical
// arrival time in µs on Redis' clock. Every number stays below 2^53, so
// Lua's doubles hold them exactly; they are formatted with %.0f because
// Lua's tostring rounds to 14 digits.
var leaseScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local need, want, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local free = tolerance - (tat - now)
if free < need then
	return {0, need - free}
end
local grant = math.min(want, free)
tat = tat + grant
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', string.format('%.0f', math.floor((tat - now) / 1000) + 1))
return {grant, 0}
`)

// The series of metricStoreRequests, looked up once.
var (
	storeRequestsGranted = metricStoreRequests.WithLabelValues("granted")
	storeRequestsDenied  = metricStoreRequests.WithLabelValues("denied")
	storeRequestsError   = metricStoreRequests.WithLabelValues("error")
)

// errStoreUnavailable marks the store's failures; the packet's own
// cancellation is not one.
var errStoreUnavailable = errors.New("limit store unavailable")

// lease asks Redis for up to want µs of the budget at key, at least need.
// It returns what was granted, or how long until need will be; it gives up
// at the store's timeout or the packet's expiry, whichever is sooner.
func (s *limitStore) lease(parent context.Context, expiry time.Time, key string, need, want, tolerance uint64) (granted uint64, wait time.Duration, err error) {
	start := time.Now()
	deadline := start.Add(s.timeout)
	expiring := expiry.Before(deadline)
	if expiring {
		deadline = expiry
	}
	ctx, cancel := context.WithDeadline(parent, deadline)
	defer cancel()
	res, err := leaseScript.Run(ctx, s.client, []string{key}, need, want, tolerance).Int64Slice()
	metricStoreDuration.Observe(time.Since(start).Seconds())
	if err == nil && (len(res) != 2 || res[0] < 0 || res[1] < 0) {
		err = fmt.Errorf("unexpected reply %v", res)
	}
	if err != nil {
		storeRequestsError.Inc()
		// Redis' fault is an error of its own, or no answer within
		// timeout; not the packet running out of time or its peer going
		// away. (The client's read deadline may fire before ctx's.)
		timedOut := ctx.Err() != nil || !time.Now().Before(deadline)
		if parent.Err() == nil && (!timedOut || !expiring) {
			s.failed(err)
		} else {
			s.probing.Store(false)
		}
		return 0, 0, fmt.Errorf("%w: %w", errStoreUnavailable, err)
	}
	s.answered()
	if res[0] == 0 {
		storeRequestsDenied.Inc()
		return 0, time.Duration(res[1]) * time.Microsecond, nil
	}
	storeRequestsGranted.Inc()
	return uint64(res[0]), 0, nil
}

// failed stops asking Redis for storeRetryInterval and says so, at most
// once every ten seconds.
func (s *limitStore) failed(err error) {
	t := now()
	s.downUntil.Store(t.Add(storeRetryInterval).UnixNano())
	s.probing.Store(false)
	metricStoreDegraded.Set(1)
	if s.warn.Allow("", t) {
		mode := "enforcing each limit's share in process"
		if s.deny {
			mode = "refusing limited peers' packets with T05"
		}
		s.logger.Warn("limit store unreachable; "+mode, zap.Error(err))
	}
}

// answered notes that Redis answered, and says so if it had not.
func (s *limitStore) answered() {
	if s.downUntil.Load() != 0 && s.downUntil.Swap(0) != 0 {
		s.probing.Store(false)
		metricStoreDegraded.Set(0)
		s.logger.Info("limit store answering again")
	}
}
