package handler

import (
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
	"github.com/ilp-edge/caddy-ilp/internal/redistest"
	"github.com/ilp-edge/caddy-ilp/store"
)

// testStore is one edge instance's view of the Redis at addr: a store of
// its own (not the shared pool's), under the test's key prefix.
func testStore(t *testing.T, addr string, mod func(*store.Config)) (*store.Store, *observer.ObservedLogs) {
	t.Helper()
	c := &store.Config{Address: addr, KeyPrefix: t.Name() + ":"}
	if mod != nil {
		mod(c)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	s, err := store.New(c, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Destruct() })
	return s, logs
}

// leasesDenied is how many leases the store's metric counts as denied.
func leasesDenied(t *testing.T) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := RegisterCollectors(reg, store.Collectors()...); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "caddy_ilp_limit_store_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == "denied" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func testSharedBudget(t *testing.T, s *store.Store, b Budget) *sharedBudget {
	t.Helper()
	sb, err := newSharedBudget(s, "alice rate", &b)
	if err != nil {
		t.Fatal(err)
	}
	return sb
}

// takes counts how many of n takes of amount each succeed, alternating
// between the budgets (instances).
func takes(t *testing.T, n int, amount uint64, bs ...*sharedBudget) int {
	t.Helper()
	ok := 0
	for i := range n {
		err := bs[i%len(bs)].take(t.Context(), time.Now().Add(time.Minute), amount)
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, errOverBudget):
			t.Fatalf("take %d: %v", i, err)
		}
	}
	return ok
}

// hour is a budget that refills too slowly to matter during a test.
var hour = caddy.Duration(time.Hour)

func TestSharedBudgetIsOneBudgetForAllInstances(t *testing.T) {
	r := redistest.Start(t)
	s1, _ := testStore(t, r.Addr, nil)
	s2, _ := testStore(t, r.Addr, nil)
	b := Budget{Limit: 40, Period: hour}
	a, c := testSharedBudget(t, s1, b), testSharedBudget(t, s2, b)
	// Each instance leases a share at a time: together, exactly the burst.
	if got := takes(t, 100, 1, a, c); got != 40 {
		t.Errorf("two instances admitted %d packets, want the budget's 40", got)
	}
	// A third instance, started later, finds the budget spent.
	s3, _ := testStore(t, r.Addr, nil)
	if got := takes(t, 5, 1, testSharedBudget(t, s3, b)); got != 0 {
		t.Errorf("a new instance admitted %d, want 0", got)
	}
}

func TestSharedBudgetIsExactAtTheLimit(t *testing.T) {
	r := redistest.Start(t)
	s, _ := testStore(t, r.Addr, nil)
	sb := testSharedBudget(t, s, Budget{Limit: 3, Period: hour})
	if got := takes(t, 3, 1, sb); got != 3 {
		t.Errorf("%d of 3 admitted, want all", got)
	}
	if got := takes(t, 1, 1, sb); got != 0 {
		t.Error("the fourth was admitted")
	}
	if got := takes(t, 1, 0, sb); got != 1 {
		t.Error("a take of 0 (a zero-amount Prepare's throughput) was refused")
	}
}

func TestSharedBudgetBurst(t *testing.T) {
	r := redistest.Start(t)
	s, _ := testStore(t, r.Addr, nil)
	sb := testSharedBudget(t, s, Budget{Limit: 10, Period: hour, Burst: 25})
	if got := takes(t, 30, 1, sb); got != 25 {
		t.Errorf("%d admitted, want the burst, 25", got)
	}
}

func TestSharedBudgetConvertsExactlyToUint64Max(t *testing.T) {
	s := new(store.Store)
	sb, err := newSharedBudget(s, "x", &Budget{Limit: math.MaxUint64, Period: caddy.Duration(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	day := uint64(24 * time.Hour / time.Microsecond)
	if sb.toleranceUS != day {
		t.Fatalf("tolerance %d µs, want a day's %d", sb.toleranceUS, day)
	}
	if got := sb.costUS(math.MaxUint64 - 5); got != day {
		t.Errorf("2^64-6 units cost %d µs, want %d (rounded up)", got, day)
	}
	if got := sb.costUS(1); got != 1 {
		t.Errorf("1 unit costs %d µs, want 1 (rounded up)", got)
	}
	// A day's lease holds exactly 2^64-1 units: a float64 cannot tell
	// 2^64-1 from 2^64-6, or either from 2^64.
	sb.lease = mul64(day, sb.limit)
	for _, n := range []uint64{math.MaxUint64 - 5, 4, 1} {
		if err := sb.take(t.Context(), time.Now().Add(time.Minute), n); err != nil {
			t.Fatalf("take %d of a lease of 2^64-1: %v", n, err)
		}
	}
	if sb.lease != (u128{}) {
		t.Errorf("%+v left of the lease after taking 2^64-1, want 0", sb.lease)
	}
}

func TestSharedBudgetAdmitsAmountsNearUint64Max(t *testing.T) {
	r := redistest.Start(t)
	s1, _ := testStore(t, r.Addr, nil)
	s2, _ := testStore(t, r.Addr, nil)
	// A burst of 2^64-1 that refills 2^64/10000 a day: ~2.1e10 units a
	// second, far less than the margins below during the test.
	b := Budget{Limit: math.MaxUint64 / 10000, Period: caddy.Duration(24 * time.Hour), Burst: math.MaxUint64}
	a, c := testSharedBudget(t, s1, b), testSharedBudget(t, s2, b)
	if got := takes(t, 1, math.MaxUint64-1<<41, a); got != 1 {
		t.Fatal("a Prepare of 2^64-1-2^41 was refused by a burst of 2^64-1")
	}
	if got := takes(t, 1, 1<<42, c); got != 0 {
		t.Error("the other instance was given 2^42 of a spent budget")
	}
	if got := takes(t, 1, 1<<40, a); got != 1 {
		t.Error("2^40 of the lease's rest was refused")
	}
}

func TestSharedBudgetRefundGoesBackToTheLease(t *testing.T) {
	r := redistest.Start(t)
	s, _ := testStore(t, r.Addr, nil)
	sb := testSharedBudget(t, s, Budget{Limit: 1000, Period: hour})
	if got := takes(t, 1, 1000, sb); got != 1 {
		t.Fatal("the whole budget was refused")
	}
	sb.refund(400)
	if got := takes(t, 2, 400, sb); got != 1 {
		t.Errorf("after a refund of 400: %d takes of 400 admitted, want 1", got)
	}
	sb.refund(math.MaxUint64) // bounded: never more than a burst
	if full := mul64(1000, sb.periodUS); sb.lease != full {
		t.Errorf("a refund of 2^64-1 left %+v, want the burst, %+v", sb.lease, full)
	}
}

func TestSharedBudgetRemembersADenial(t *testing.T) {
	r := redistest.Start(t)
	s, _ := testStore(t, r.Addr, nil)
	sb := testSharedBudget(t, s, Budget{Limit: 2, Period: hour})
	takes(t, 3, 1, sb)
	denied := leasesDenied(t)
	if got := takes(t, 50, 1, sb); got != 0 {
		t.Fatalf("%d admitted from a spent budget", got)
	}
	if d := leasesDenied(t) - denied; d != 0 {
		t.Errorf("Redis was asked %v more times within the wait it gave", d)
	}
}

func TestSharedBudgetIgnoresTheInstancesClocks(t *testing.T) {
	r := redistest.Start(t)
	s, _ := testStore(t, r.Addr, nil)
	sb := testSharedBudget(t, s, Budget{Limit: 5, Period: hour})
	takes(t, 5, 1, sb)
	// An instance whose clock is an hour ahead gets nothing more: Redis'
	// clock decides when a budget refills.
	ahead := time.Now().Add(time.Hour)
	setClock(t, func() time.Time { return ahead })
	s2, _ := testStore(t, r.Addr, nil)
	if got := takes(t, 5, 1, testSharedBudget(t, s2, Budget{Limit: 5, Period: hour})); got != 0 {
		t.Errorf("an instance with a clock an hour ahead admitted %d", got)
	}
}

func TestSharedBudgetAllowsAShareWhileRedisIsDown(t *testing.T) {
	r := redistest.Start(t)
	s, logs := testStore(t, r.Addr, func(c *store.Config) { c.Instances = 4 })
	sb := testSharedBudget(t, s, Budget{Limit: 40, Period: hour})
	clock := time.Now()
	setClock(t, func() time.Time { return clock })
	r.Kill()
	// limit/instances: 10 of 40.
	if got := takes(t, 20, 1, sb); got != 10 {
		t.Errorf("with Redis down, %d admitted, want this instance's share, 10", got)
	}
	if !s.Degraded() {
		t.Error("the store is not degraded while Redis is down")
	}
	if n := logs.FilterMessageSnippet("shared store unreachable").Len(); n != 1 {
		t.Errorf("%d warnings for 20 packets, want 1", n)
	}
	r.Restart()
	clock = clock.Add(store.RetryInterval)
	// The first packet after the retry interval asks Redis, which is back
	// (and empty: a restarted Redis without persistence forgets).
	if got := takes(t, 40, 1, sb); got != 40 {
		t.Errorf("with Redis back, %d admitted, want the budget's 40", got)
	}
	if s.Degraded() {
		t.Error("the store is still degraded")
	}
	if logs.FilterMessage("shared store answering again").Len() != 1 {
		t.Error("no log line saying the store answers again")
	}
}

// TestSharedBudgetShareFollowsTheLiveEdges: without instances, the share
// an edge enforces while Redis is away is of the edges alive when Redis
// last answered: a third of the limit with three, a half once one of them
// stopped.
func TestSharedBudgetShareFollowsTheLiveEdges(t *testing.T) {
	r := redistest.Start(t)
	a, _ := testStore(t, r.Addr, nil)
	testStore(t, r.Addr, nil)
	c, _ := testStore(t, r.Addr, nil)
	waitFor(t, "three edges alive", func() bool { return a.Instances() == 3 })
	c.Destruct()
	waitFor(t, "two edges alive", func() bool { return a.Instances() == 2 })
	sb := testSharedBudget(t, a, Budget{Limit: 60, Period: hour})
	r.Kill()
	if got := takes(t, 60, 1, sb); got != 30 {
		t.Errorf("with Redis down and two edges alive: %d admitted, want half of 60", got)
	}
}

func TestSharedBudgetDeniesWhileRedisIsDownWhenAsked(t *testing.T) {
	r := redistest.Start(t)
	e, _ := testEdge(t, func(e *Edge) {
		e.Limits = &Limits{Rate: &Budget{Limit: 100, Period: hour}}
		e.Redis = &store.Config{Address: r.Addr, KeyPrefix: t.Name() + ":", OnStoreFailure: store.FailureDeny}
	})
	be := &backend{}
	if got := sendAmount(t, e, be, "Bearer "+aliceToken, 1); got != "fulfill" {
		t.Fatalf("with Redis up: %s", got)
	}
	r.Kill()
	// What the lease holds was paid for on Redis: it is spent first.
	fulfilled := 1
	for {
		got := sendAmount(t, e, be, "Bearer "+aliceToken, 1)
		if got == "T05" {
			break
		}
		if got != "fulfill" || fulfilled > 100 {
			t.Fatalf("after %d packets with Redis down: %s", fulfilled, got)
		}
		fulfilled++
	}
	body := ilptest.NewPrepare(ilpdest.Prepare{Amount: 1, Destination: []byte("g.us.bank.alice"), ExpiresAt: now().Add(time.Minute)})
	w, err := serve(t, e, newRequest(http.MethodPost, body, "Authorization", "Bearer "+aliceToken), be)
	wantReject(t, w, err, "T05")
	rej, _ := ilpdest.ReadReject(w.Body.Bytes())
	if !strings.Contains(string(rej.Message), "limit store unavailable") {
		t.Errorf("T05 message %q does not say the store is unavailable", rej.Message)
	}
}

func TestSharedBudgetNeverWaitsPastTheExpiry(t *testing.T) {
	r := redistest.Start(t)
	s, _ := testStore(t, r.Addr, func(c *store.Config) {
		c.Timeout = caddy.Duration(time.Hour)
		c.OnStoreFailure = store.FailureDeny
	})
	sb := testSharedBudget(t, s, Budget{Limit: 10, Period: hour})
	r.Pause()
	defer r.Resume()
	// With a timeout of an hour, only the packet's expiry ends this (or
	// the test binary's timeout fails it).
	err := sb.take(t.Context(), time.Now().Add(100*time.Millisecond), 1)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("a take with Redis hung: %v, want the store unavailable at the packet's deadline", err)
	}
	// Running out of its own time is the packet's matter: Redis is not
	// counted as down for it.
	if s.Degraded() {
		t.Error("a packet's expiry marked the store down")
	}
}

func TestSharedBudgetFallsBackWhenRedisIsSlow(t *testing.T) {
	r := redistest.Start(t)
	s, _ := testStore(t, r.Addr, func(c *store.Config) { c.Timeout = caddy.Duration(20 * time.Millisecond) })
	sb := testSharedBudget(t, s, Budget{Limit: 10, Period: hour})
	r.Pause()
	defer r.Resume()
	if got := takes(t, 20, 1, sb); got != 10 {
		t.Errorf("with Redis hung: %d admitted, want the fallback's 10", got)
	}
	if !s.Degraded() {
		t.Error("a store slower than its timeout was not marked down")
	}
}

func TestSharedBudgetSettings(t *testing.T) {
	s := new(store.Store)
	for _, tc := range []struct {
		b   Budget
		err string
	}{
		{Budget{Limit: 1, Period: caddy.Duration(time.Nanosecond)}, "below a microsecond"},
		{Budget{Limit: 10_000_000, Period: caddy.Duration(time.Second), Burst: 9999}, "raise burst"},
		{Budget{Limit: 10_000_000, Period: caddy.Duration(time.Second), Burst: 10000}, ""},
		{Budget{Limit: 1, Period: caddy.Duration(24 * time.Hour), Burst: 1 << 40}, "too long"},
		{Budget{Limit: math.MaxUint64, Period: caddy.Duration(time.Second)}, ""},
	} {
		_, err := newSharedBudget(s, "x", &tc.b)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: %v, want %q", tc.b, err, tc.err)
		}
	}
}

// BenchmarkSharedBudgetTake is a packet's cost when its lease has room:
// no round trip.
func BenchmarkSharedBudgetTake(b *testing.B) {
	s := new(store.Store)
	sb, err := newSharedBudget(s, "bench", &Budget{Limit: math.MaxUint64, Period: caddy.Duration(time.Second)})
	if err != nil {
		b.Fatal(err)
	}
	sb.lease = mul64(sb.toleranceUS, sb.limit)
	ctx, expiry := b.Context(), time.Now().Add(time.Hour)
	for b.Loop() {
		if err := sb.take(ctx, expiry, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSharedBudgetLease is one lease from a real redis-server on
// loopback: the round trip a lease costs, spread over the packets it
// covers (a twentieth of the burst).
func BenchmarkSharedBudgetLease(b *testing.B) {
	r := redistest.Start(b)
	s, err := store.New(&store.Config{Address: r.Addr, KeyPrefix: "bench:"}, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Destruct()
	ctx, expiry := b.Context(), time.Now().Add(time.Hour)
	for b.Loop() {
		if _, _, err := s.Lease(ctx, time.Now(), expiry, "bench", 1, 1, 1<<40); err != nil {
			b.Fatal(err)
		}
	}
}

// waitFor polls cond every 20 ms for up to five seconds, then fails the
// test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
	}
}
