package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/ilp-edge/caddy-ilp/internal/redistest"
)

// edge is one edge instance's store on c: its own client and heartbeat,
// as another process would have.
func edge(t *testing.T, c Config) *Store {
	t.Helper()
	if c.KeyPrefix == "" {
		c.KeyPrefix = t.Name() + ":"
	}
	// The default 50 ms is for a Redis next to the edge; here the tests
	// share 2 cores with others under -race, and a new client's first
	// round trips (a dial, a Cluster's slot map, a script's load) took
	// longer in CI. Tests about the timeout set their own.
	if c.Timeout == 0 {
		c.Timeout = caddy.Duration(time.Second)
	}
	s, err := New(&c, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Destruct() })
	return s
}

// waitFor polls cond every 20 ms until it holds, or fails the test after
// within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// TestHeartbeatCountsLiveEdges: the edges on one store count each other;
// one that stops leaves the count at once, and instances overrides it.
func TestHeartbeatCountsLiveEdges(t *testing.T) {
	r := redistest.Start(t)
	a := edge(t, Config{Address: r.Addr})
	b := edge(t, Config{Address: r.Addr})
	c := edge(t, Config{Address: r.Addr})
	waitFor(t, 3*time.Second, "three edges counted", func() bool { return a.Instances() == 3 })
	edges, err := a.Edges(t.Context())
	if err != nil || len(edges) != 3 {
		t.Fatalf("Edges: %v, %v; want three", edges, err)
	}
	self := 0
	for _, e := range edges {
		if e.Self {
			self++
		}
	}
	if self != 1 {
		t.Errorf("%d edges marked as this one, want 1", self)
	}
	c.Destruct()
	took := waitFor(t, 2*time.Second, "two edges counted after one stopped", func() bool { return a.Instances() == 2 && b.Instances() == 2 })
	t.Logf("an edge that stopped left the count after %v", took.Round(time.Millisecond))

	fixed := edge(t, Config{Address: r.Addr, Instances: 5})
	if n := fixed.Instances(); n != 5 {
		t.Errorf("instances 5: %d", n)
	}
}

// TestHeartbeatCountStaysWhileRedisIsAway: while Redis is away the count
// is the last one Redis gave, the edges alive just before, so that the
// fallback share does not grow to the whole limit.
func TestHeartbeatCountStaysWhileRedisIsAway(t *testing.T) {
	r := redistest.Start(t)
	a := edge(t, Config{Address: r.Addr})
	edge(t, Config{Address: r.Addr})
	waitFor(t, 3*time.Second, "two edges counted", func() bool { return a.Instances() == 2 })
	r.Kill()
	time.Sleep(2 * heartbeatInterval)
	if n := a.Instances(); n != 2 {
		t.Errorf("with Redis down: %d edges, want the 2 counted before", n)
	}
}

// TestTableLockIsOnePerPeer: one edge at a time holds a peer's table;
// another waits for it until its deadline, then gets what the first
// saved. Another peer's table is not held up.
func TestTableLockIsOnePerPeer(t *testing.T) {
	r := redistest.Start(t)
	a := edge(t, Config{Address: r.Addr})
	b := edge(t, Config{Address: r.Addr})
	ctx := t.Context()
	la, saved, err := a.LockTable(ctx, "alice", time.Minute, time.Now().Add(time.Second))
	if err != nil || saved != nil {
		t.Fatalf("first lock: %q, %v; want nothing saved yet", saved, err)
	}
	_, _, err = b.LockTable(ctx, "alice", time.Minute, time.Now().Add(300*time.Millisecond))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "locked by another edge") {
		t.Fatalf("a second edge locked alice's table: %v", err)
	}
	if b.Degraded() {
		t.Error("waiting for a table another edge holds marked the store down")
	}
	lb, _, err := b.LockTable(ctx, "bob", time.Minute, time.Now().Add(time.Second))
	if err != nil {
		t.Fatalf("bob's table: %v", err)
	}
	lb.Save(ctx, nil)

	done := make(chan []byte)
	go func() {
		l, saved, err := b.LockTable(ctx, "alice", time.Minute, time.Now().Add(5*time.Second))
		if err != nil {
			t.Error(err)
		} else {
			l.Save(ctx, nil)
		}
		done <- saved
	}()
	time.Sleep(50 * time.Millisecond)
	if err := la.Save(ctx, []byte("epoch 1")); err != nil {
		t.Fatal(err)
	}
	if got := <-done; string(got) != "epoch 1" {
		t.Errorf("the waiting edge read %q, want what the first saved", got)
	}
}

// TestTableSaveAfterItsLeaseIsRefused: an edge that stalled past its
// lease cannot overwrite what the next holder saved.
func TestTableSaveAfterItsLeaseIsRefused(t *testing.T) {
	r := redistest.Start(t)
	a := edge(t, Config{Address: r.Addr})
	b := edge(t, Config{Address: r.Addr})
	ctx := t.Context()
	la, _, err := a.LockTable(ctx, "alice", 50*time.Millisecond, time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(120 * time.Millisecond)
	lb, _, err := b.LockTable(ctx, "alice", time.Minute, time.Now().Add(time.Second))
	if err != nil {
		t.Fatalf("the lease ran out but the lock is still held: %v", err)
	}
	if err := lb.Save(ctx, []byte("b's")); err != nil {
		t.Fatal(err)
	}
	if err := la.Save(ctx, []byte("a's, late")); !errors.Is(err, ErrLockLost) {
		t.Fatalf("a save after the lease: %v, want ErrLockLost", err)
	}
	l, saved, err := a.LockTable(ctx, "alice", time.Minute, time.Now().Add(time.Second))
	if err != nil || string(saved) != "b's" {
		t.Fatalf("read %q, %v; want b's", saved, err)
	}
	l.Save(ctx, nil)
}

// TestTableWhileRedisIsDown: without Redis the lock fails at once with
// ErrUnavailable, and later asks wait for the retry interval.
func TestTableWhileRedisIsDown(t *testing.T) {
	r := redistest.Start(t)
	s := edge(t, Config{Address: r.Addr})
	r.Kill()
	start := time.Now()
	_, _, err := s.LockTable(t.Context(), "alice", time.Minute, time.Now().Add(10*time.Second))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("with Redis down: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the lock took %v to fail", took)
	}
	if !s.Degraded() {
		t.Error("not degraded")
	}
	if _, _, err := s.LockTable(t.Context(), "alice", time.Minute, time.Now().Add(10*time.Second)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("second try: %v", err)
	}
}

// lease takes one µs of a large budget, as a packet of a limited peer
// would.
func lease(ctx context.Context, s *Store, budget string) error {
	_, _, err := s.Lease(ctx, time.Now(), time.Now().Add(time.Second), budget, 1, 1, 1<<40)
	return err
}
