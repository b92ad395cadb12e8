package handler

import (
	"context"
	"fmt"
	"math/bits"
	"sync"
	"time"

	"github.com/ilp-edge/caddy-ilp/store"
)

// leasesPerBurst is how many leases a burst is taken in: the larger, the
// more round trips to Redis and the fewer units an instance holds that
// another could have used.
const leasesPerBurst = 20

// A budget's burst, in microseconds, must be at least minToleranceUS, so
// that cutting it to whole microseconds costs at most 0.1% of it; and at
// most maxToleranceUS, so that it stays exact in Lua's doubles (below
// 2^53) with Redis' clock added to it.
const (
	minToleranceUS = 1000
	maxToleranceUS = 1 << 50
)

// sharedBudget is a budget kept on Redis for every edge instance (the
// shared store's Lease), of which this instance holds a lease: time taken
// from Redis and not yet spent. Each instance leases a share of a peer's
// budget at a time (a twentieth of its burst, or what one packet needs if
// more; the burst must last at least a millisecond at the limit's rate)
// and spends it locally: one round trip per lease, not per packet.
//
// On Redis, the budget is time: a unit costs period/limit, and the
// budget's tolerance, its burst, is burst units' worth, both in
// microseconds. The conversion is done here in 128-bit integers, so
// amounts are exact up to 2^64-1.
//
// The lease is kept exactly, scaled by periodUS·limit like gcra's clock:
// a unit is periodUS, a microsecond is limit. So no fraction of a unit is
// lost when Redis grants a time that is not a whole number of units.
type sharedBudget struct {
	store                  *store.Store
	name                   string // on Redis
	limit, burst, periodUS uint64
	period                 time.Duration
	toleranceUS, leaseUS   uint64

	mu          sync.Mutex
	fallback    *gcra     // this instance's share, while Redis cannot answer
	fallbackFor uint64    // the number of instances it is a share of
	lease       u128      // leased and not spent, scaled
	deniedUntil time.Time // Redis said that no take of deniedFrom or more fits until then
	deniedFrom  uint64
}

func newSharedBudget(st *store.Store, name string, b *Budget) (*sharedBudget, error) {
	period := time.Duration(b.Period)
	periodUS := uint64(period / time.Microsecond)
	burst := b.burst()
	if periodUS == 0 {
		return nil, fmt.Errorf("a period of %v is below a microsecond, the resolution of a shared budget", period)
	}
	hi, lo := bits.Mul64(burst, periodUS)
	if hi >= b.Limit {
		return nil, fmt.Errorf("burst %d at %d per %v lasts too long for a shared budget", burst, b.Limit, period)
	}
	tolerance, _ := bits.Div64(hi, lo, b.Limit)
	switch {
	case tolerance < minToleranceUS:
		return nil, fmt.Errorf("burst %d at %d per %v lasts less than a millisecond, too little for a shared budget: raise burst", burst, b.Limit, period)
	case tolerance > maxToleranceUS:
		return nil, fmt.Errorf("burst %d at %d per %v lasts too long for a shared budget", burst, b.Limit, period)
	}
	sb := &sharedBudget{
		store: st, name: name,
		limit: b.Limit, burst: burst, periodUS: periodUS, period: period, toleranceUS: tolerance,
	}
	sb.leaseUS = sb.costUS(max(burst/leasesPerBurst, 1))
	return sb, nil
}

// costUS is what n units cost in microseconds, rounded up; n ≤ burst.
func (b *sharedBudget) costUS(n uint64) uint64 { return b.toUS(mul64(n, b.periodUS)) }

// toUS is a scaled quantity (at most burst units' worth) in microseconds,
// rounded up.
func (b *sharedBudget) toUS(x u128) uint64 {
	q, r := bits.Div64(x.hi, x.lo, b.limit)
	if r != 0 {
		q++
	}
	return q
}

func (b *sharedBudget) take(ctx context.Context, expiry time.Time, n uint64) error {
	if n > b.burst {
		return errOverBudget
	}
	cost := mul64(n, b.periodUS)
	b.mu.Lock()
	if !b.lease.less(cost) {
		b.lease = b.lease.sub(cost)
		b.mu.Unlock()
		return nil
	}
	t := now() // only past the lease: most packets never read the clock
	if n >= b.deniedFrom && t.Before(b.deniedUntil) {
		b.mu.Unlock()
		return errOverBudget
	}
	need := b.toUS(cost.sub(b.lease))
	b.mu.Unlock()

	if !b.store.Asking(t) {
		return b.takeFallback(t, n, store.ErrUnavailable)
	}
	granted, wait, err := b.store.Lease(ctx, t, expiry, b.name, need, max(need, b.leaseUS), b.toleranceUS)
	if err != nil {
		return b.takeFallback(t, n, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if granted == 0 {
		b.deniedUntil, b.deniedFrom = t.Add(wait), n
		return errOverBudget
	}
	b.deniedUntil = time.Time{}
	b.lease = b.lease.add(mul64(granted, b.limit))
	if b.lease.less(cost) { // others spent what was here while Redis answered
		return errOverBudget
	}
	b.lease = b.lease.sub(cost)
	return nil
}

// takeFallback is take while Redis cannot answer (err): this instance's
// share of the budget, or, with on_store_failure deny, nothing. The share
// is of the edges alive when Redis last answered; a budget kept for
// another number starts afresh.
func (b *sharedBudget) takeFallback(t time.Time, n uint64, err error) error {
	if b.store.Deny() {
		return err
	}
	instances := b.store.Instances()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fallback == nil || b.fallbackFor != instances {
		share := func(n uint64) uint64 { return max(n/instances, 1) }
		b.fallback = newGCRA(share(b.limit), b.period, share(b.burst), t)
		b.fallbackFor = instances
	}
	if !b.fallback.take(t, n) {
		return errOverBudget
	}
	return nil
}

// refund puts n units back in the lease, where this instance's next
// packets spend them first; never beyond a burst.
func (b *sharedBudget) refund(n uint64) {
	full := mul64(b.burst, b.periodUS)
	b.mu.Lock()
	if l := b.lease.add(mul64(n, b.periodUS)); l.less(full) {
		b.lease = l
	} else if b.lease.less(full) {
		b.lease = full
	}
	b.mu.Unlock()
}
