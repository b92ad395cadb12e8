package handler

import (
	"math/bits"
	"sync"
	"time"
)

// gcra is one budget, limit units per period with up to burst at once,
// kept as the generic cell rate algorithm keeps it: one theoretical
// arrival time (tat), which moves forward by each unit's cost and may run
// ahead of the clock by at most burst units.
//
// Time is scaled by limit, so that every quantity is a whole number: the
// scaled clock advances limit per nanosecond and a unit costs period (in
// ns). 128 bits hold these products exactly for any uint64 amount, where
// a float64 would round amounts above 2^53.
type gcra struct {
	period, limit, burst uint64 // period in nanoseconds
	epoch                time.Time

	mu  sync.Mutex
	tat u128
}

func newGCRA(limit uint64, period time.Duration, burst uint64, epoch time.Time) *gcra {
	return &gcra{period: uint64(period), limit: limit, burst: burst, epoch: epoch}
}

// scaled is now on the scaled clock; time before the epoch counts as the
// epoch, so a clock stepped back gives no credit.
func (g *gcra) scaled(now time.Time) u128 {
	d := now.Sub(g.epoch)
	if d < 0 {
		d = 0
	}
	return mul64(uint64(d), g.limit)
}

// take spends n units at now if the budget has them, and reports whether
// it did.
func (g *gcra) take(now time.Time, n uint64) bool {
	t := g.scaled(now)
	g.mu.Lock()
	defer g.mu.Unlock()
	tat := g.tat
	if tat.less(t) {
		tat = t
	}
	next := tat.add(mul64(n, g.period))
	if mul64(g.burst, g.period).less(next.sub(t)) {
		return false
	}
	g.tat = next
	return true
}

// refund gives n units back, never more than a full budget.
func (g *gcra) refund(now time.Time, n uint64) {
	t := g.scaled(now)
	back := mul64(n, g.period)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tat.less(t.add(back)) {
		g.tat = t
	} else {
		g.tat = g.tat.sub(back)
	}
}

// u128 is an unsigned 128-bit integer, as much arithmetic as gcra needs.
type u128 struct{ hi, lo uint64 }

func mul64(a, b uint64) u128 {
	hi, lo := bits.Mul64(a, b)
	return u128{hi, lo}
}

func (x u128) add(y u128) u128 {
	lo, c := bits.Add64(x.lo, y.lo, 0)
	hi, _ := bits.Add64(x.hi, y.hi, c)
	return u128{hi, lo}
}

func (x u128) sub(y u128) u128 {
	lo, b := bits.Sub64(x.lo, y.lo, 0)
	hi, _ := bits.Sub64(x.hi, y.hi, b)
	return u128{hi, lo}
}

func (x u128) less(y u128) bool { return x.hi < y.hi || x.hi == y.hi && x.lo < y.lo }
