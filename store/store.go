// Package store is the edges' shared store: one Redis deployment (a
// server, a Sentinel-managed master, or a Cluster) that every edge
// instance of a fleet uses, so that they act as one edge. It owns every
// key the edges keep there, the scripts that change them, and what an
// edge does while Redis cannot answer.
//
// What is shared, each in its own file: the peers' limit budgets
// (lease.go), which edges are alive (heartbeat.go) and the peers' CCP
// routing tables (tables.go). Every key that one script touches is in
// one hash slot, so that each works on a Cluster.
package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/ilp-edge/caddy-ilp/internal/loglimit"
)

// RetryInterval is how long an edge goes without Redis after a failure
// before it asks again (one request asks; the rest go on without).
const RetryInterval = time.Second

// ErrUnavailable marks the store's failures: Redis down, unreachable or
// slower than its timeout. A packet's own cancellation is not one.
var ErrUnavailable = errors.New("shared store unavailable")

// Store is a Config, provisioned: one client per distinct config, shared
// through Load by every handler and reload that has the same, with
// whether Redis is answering and how many edges are alive.
type Store struct {
	id        string // identifies the config: a hash of it, never logged
	client    redis.UniversalClient
	keyPrefix string
	timeout   time.Duration
	deny      bool
	instances uint64 // Config.Instances; 0: the live count
	logger    *zap.Logger

	downUntil atomic.Int64 // UnixNano until which Redis is not asked; 0 while it answers
	probing   atomic.Bool  // one request is asking Redis whether it is back
	warn      loglimit.Limiter

	heartbeat *heartbeat
	replies   *replies
}

var stores = caddy.NewUsagePool()

// Load checks c, resolves its passwords' placeholders, and returns the
// store for it: the one already in use with the same settings, or a new
// one, whose edge starts announcing itself. Release it when done.
func Load(c *Config, logger *zap.Logger) (*Store, error) {
	r, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	settings, _ := json.Marshal(r)
	sum := sha256.Sum256(settings)
	id := "redis " + hex.EncodeToString(sum[:8])
	v, _, err := stores.LoadOrNew(id, func() (caddy.Destructor, error) { return newStore(&r, id, logger) })
	if err != nil {
		return nil, err
	}
	return v.(*Store), nil
}

// New is a store for c of its own, not shared with the handlers that
// load the same settings: one edge's view of Redis, for tests that play
// several edges in one process. Destruct it when done.
func New(c *Config, logger *zap.Logger) (*Store, error) {
	r, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	return newStore(&r, "new", logger)
}

// newStore makes the store for r, whose defaults are set, and starts its
// edge's heartbeat.
func newStore(r *Config, id string, logger *zap.Logger) (*Store, error) {
	client, err := r.client()
	if err != nil {
		return nil, err
	}
	s := &Store{
		id: id, client: client, keyPrefix: r.KeyPrefix, timeout: time.Duration(r.Timeout),
		deny: r.OnStoreFailure == FailureDeny, instances: r.Instances,
		logger: logger.Named("store"), warn: loglimit.Limiter{Interval: 10 * time.Second},
		replies: newReplies(),
	}
	s.heartbeat = startHeartbeat(s)
	return s, nil
}

// Loaded returns the stores that configs in use have loaded.
func Loaded() []*Store {
	var out []*Store
	stores.Range(func(_, v any) bool {
		out = append(out, v.(*Store))
		return true
	})
	return out
}

// Release gives back what Load returned; the last release of a store
// stops its heartbeat and closes its client.
func (s *Store) Release() { stores.Delete(s.id) }

// Destruct stops the heartbeat and the listening for relayed replies, and
// closes the client, when no config uses the store any more.
func (s *Store) Destruct() error {
	s.heartbeat.stop()
	s.replies.stopListening()
	return s.client.Close()
}

// ID identifies the store's settings (a hash, without secrets): keys of
// in-process state derived from the store include it.
func (s *Store) ID() string { return s.id }

// Deny reports whether limited peers are refused while Redis cannot
// answer (on_store_failure deny).
func (s *Store) Deny() bool { return s.deny }

// Asking reports whether a request at t should ask Redis: while Redis
// answers, every one; after a failure, one once RetryInterval has passed.
func (s *Store) Asking(t time.Time) bool {
	until := s.downUntil.Load()
	if until == 0 {
		return true
	}
	return t.UnixNano() >= until && s.probing.CompareAndSwap(false, true)
}

// Degraded reports whether Redis failed and has not answered since.
func (s *Store) Degraded() bool { return s.downUntil.Load() != 0 }

// failed stops asking Redis for RetryInterval from t, when it failed,
// and says so, at most once every ten seconds.
func (s *Store) failed(t time.Time, err error) {
	s.downUntil.Store(t.Add(RetryInterval).UnixNano())
	s.probing.Store(false)
	metricDegraded.Set(1)
	if s.warn.Allow("", t) {
		mode := "limits enforced at each edge's share in process"
		if s.deny {
			mode = "limited peers' packets refused with T05"
		}
		s.logger.Warn("shared store unreachable; "+mode+", routing tables kept in process", zap.Error(err))
	}
}

// answered notes that Redis answered, and says so if it had not.
func (s *Store) answered() {
	if s.downUntil.Load() != 0 && s.downUntil.Swap(0) != 0 {
		s.probing.Store(false)
		metricDegraded.Set(0)
		s.logger.Info("shared store answering again")
	}
}

// gaveUp notes a request that ended without Redis being at fault (the
// packet expired or its peer left): the next one may ask.
func (s *Store) gaveUp() { s.probing.Store(false) }
