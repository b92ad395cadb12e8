package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Each edge announces itself every heartbeatInterval; one that has not
// for heartbeatTTL is counted gone. Three beats in a TTL let one be lost
// or late (a busy machine, a Redis failover) without the count dipping.
const (
	heartbeatInterval = time.Second
	heartbeatTTL      = 3 * time.Second
	heartbeatTimeout  = time.Second
)

// heartbeatScript records that the edge ARGV[1] is alive for ARGV[2] ms
// more (or, with ARGV[2] = 0, that it leaves), forgets the edges whose
// time is up, and returns how many are left. KEYS[1] is a sorted set of
// edges by the time, on Redis' clock, until which each is alive: one key,
// so one hash slot on a Cluster, and no edge's clock matters.
var heartbeatScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ttl > 0 then
	redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
	redis.call('PEXPIRE', KEYS[1], 2 * ttl)
else
	redis.call('ZREM', KEYS[1], ARGV[1])
end
return redis.call('ZCARD', KEYS[1])
`)

// heartbeat announces one edge process on a store, and keeps the number
// of edges alive on it.
type heartbeat struct {
	store  *Store
	edge   string
	live   atomic.Uint64 // edges alive at the last beat that Redis answered; 0 before
	cancel context.CancelFunc
	done   chan struct{}
}

// edgeName names this edge process on the store: its host, its process id
// and a random part, since a process may restart with the same id.
func edgeName() string {
	host, _ := os.Hostname()
	var r [4]byte
	rand.Read(r[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(r[:]))
}

func startHeartbeat(s *Store) *heartbeat {
	ctx, cancel := context.WithCancel(context.Background())
	h := &heartbeat{store: s, edge: edgeName(), cancel: cancel, done: make(chan struct{})}
	go h.run(ctx)
	return h
}

func (h *heartbeat) run(ctx context.Context) {
	defer close(h.done)
	tick := time.NewTicker(heartbeatInterval)
	defer tick.Stop()
	failing := false
	for {
		err := h.beat(ctx, heartbeatTTL)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			h.store.logger.Warn("shared store: cannot announce this edge; the count of edges alive stays as it was",
				zap.Uint64("edges_alive", h.live.Load()), zap.Error(err))
			failing = true
		case err == nil && failing:
			h.store.logger.Info("shared store: announcing this edge again", zap.Uint64("edges_alive", h.live.Load()))
			failing = false
		}
		select {
		case <-ctx.Done():
			// Leave at once, so that the others' share of the limits
			// grows now and not a TTL later.
			leave, cancel := context.WithTimeout(context.Background(), heartbeatTimeout)
			h.beat(leave, 0)
			cancel()
			return
		case <-tick.C:
		}
	}
}

// beat announces the edge alive for ttl (0: gone) and records the count.
func (h *heartbeat) beat(ctx context.Context, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, heartbeatTimeout)
	defer cancel()
	n, err := heartbeatScript.Run(ctx, h.store.client, []string{h.store.keyPrefix + "edges"}, h.edge, ttl.Milliseconds()).Int64()
	if err != nil {
		return err
	}
	if ttl > 0 && n > 0 {
		h.live.Store(uint64(n))
		metricEdges.Set(float64(n))
	}
	return nil
}

func (h *heartbeat) stop() {
	h.cancel()
	<-h.done
}

// Instances is how many edges share the limits: the instances setting,
// else the edges alive at the last heartbeat Redis answered (at least 1).
// While Redis is away it stays what it was, the edges alive just before.
func (s *Store) Instances() uint64 {
	if s.instances > 0 || s.heartbeat == nil {
		return max(s.instances, 1)
	}
	return max(s.heartbeat.live.Load(), 1)
}

// Edge is an edge instance alive on the store.
type Edge struct {
	Name  string    `json:"name"`  // host/pid/random
	Until time.Time `json:"until"` // when it counts as gone without another heartbeat (Redis' clock)
	Self  bool      `json:"self,omitempty"`
}

// Edges lists the edges alive on the store.
func (s *Store) Edges(ctx context.Context) ([]Edge, error) {
	ctx, cancel := context.WithTimeout(ctx, heartbeatTimeout)
	defer cancel()
	zs, err := s.client.ZRangeWithScores(ctx, s.keyPrefix+"edges", 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	edges := make([]Edge, 0, len(zs))
	for _, z := range zs {
		name, _ := z.Member.(string)
		edges = append(edges, Edge{Name: name, Until: time.UnixMilli(int64(z.Score)), Self: name == s.heartbeat.edge})
	}
	return edges, nil
}
