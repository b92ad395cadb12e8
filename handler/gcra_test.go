package handler

import (
	"math"
	"math/bits"
	"testing"
	"time"
)

var gcraEpoch = time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)

func TestGCRABurstThenRate(t *testing.T) {
	g := newGCRA(10, time.Second, 5, gcraEpoch) // 10 per second, 5 at once
	at := func(d time.Duration) time.Time { return gcraEpoch.Add(d) }
	for i := range 5 {
		if !g.take(at(0), 1) {
			t.Fatalf("unit %d of the burst refused", i+1)
		}
	}
	if g.take(at(0), 1) {
		t.Fatal("a sixth unit at once was let through")
	}
	// One unit comes back every 100 ms, not before.
	if g.take(at(99*time.Millisecond), 1) {
		t.Error("a unit came back after 99 ms")
	}
	if !g.take(at(100*time.Millisecond), 1) {
		t.Error("no unit back after 100 ms")
	}
	// A second later the burst is whole again, and no more than whole.
	if !g.take(at(2*time.Second), 5) || g.take(at(2*time.Second), 1) {
		t.Error("after a quiet second: want exactly the burst")
	}
}

func TestGCRAExactlyAtTheLimit(t *testing.T) {
	// 1,000 units per second, burst 1,000: over 10 s at exactly the rate,
	// every request passes; one unit more in the window does not.
	g := newGCRA(1000, time.Second, 1000, gcraEpoch)
	for ms := range 10_000 {
		if !g.take(gcraEpoch.Add(time.Duration(ms)*time.Millisecond), 1) {
			t.Fatalf("refused at %d ms, at exactly the rate", ms)
		}
	}
	now := gcraEpoch.Add(10 * time.Second)
	if !g.take(now, 1000) {
		t.Error("the burst is not whole after the window's last unit was spent on time")
	}
	if g.take(now, 1) {
		t.Error("a unit beyond the burst passed")
	}
}

func TestGCRALargeAmountsExact(t *testing.T) {
	// Amounts above 2^53, where float64 would round: a budget of
	// 2^64-1 per second takes exactly that, and not one unit more.
	g := newGCRA(math.MaxUint64, time.Second, math.MaxUint64, gcraEpoch)
	if !g.take(gcraEpoch, math.MaxUint64-1) || !g.take(gcraEpoch, 1) {
		t.Fatal("the whole budget was refused")
	}
	if g.take(gcraEpoch, 1) {
		t.Error("one unit beyond 2^64-1 passed")
	}
	// 1 ns later exactly 2^64-1 / 1e9 units (rounded down) are back.
	back := uint64(math.MaxUint64) / uint64(time.Second)
	if !g.take(gcraEpoch.Add(1), back) || g.take(gcraEpoch.Add(1), 1) {
		t.Errorf("after 1 ns: want exactly %d units back", back)
	}
	h := newGCRA(3, time.Second, 1<<60, gcraEpoch)
	if !h.take(gcraEpoch, 1<<60) || h.take(gcraEpoch, 1) {
		t.Error("a burst of 2^60 at 3 per second")
	}
}

func TestGCRARefund(t *testing.T) {
	g := newGCRA(100, time.Second, 100, gcraEpoch)
	if !g.take(gcraEpoch, 100) || g.take(gcraEpoch, 1) {
		t.Fatal("burst")
	}
	g.refund(gcraEpoch, 40)
	if !g.take(gcraEpoch, 40) || g.take(gcraEpoch, 1) {
		t.Error("a refund of 40 gave back other than 40")
	}
	// A refund never makes the budget more than whole.
	later := gcraEpoch.Add(time.Hour)
	g.refund(later, 1000)
	if !g.take(later, 100) || g.take(later, 1) {
		t.Error("a refund on a whole budget overfilled it")
	}
}

func TestGCRAClockBeforeEpoch(t *testing.T) {
	g := newGCRA(1, time.Second, 1, gcraEpoch)
	if !g.take(gcraEpoch.Add(-time.Hour), 1) || g.take(gcraEpoch.Add(-time.Minute), 1) {
		t.Error("a clock before the epoch counts as the epoch: one unit, then none")
	}
}

func FuzzGCRANeverExceedsBurstPlusRate(f *testing.F) {
	f.Add(uint64(10), int64(time.Second), uint64(5), uint64(3), int64(1000))
	f.Fuzz(func(t *testing.T, limit uint64, period int64, burst, n uint64, stepNs int64) {
		if limit == 0 || period <= 0 || period > int64(24*time.Hour) || burst == 0 || n == 0 || stepNs < 0 {
			return
		}
		g := newGCRA(limit, time.Duration(period), burst, gcraEpoch)
		// Over 50 steps, what passes is at most burst plus what the rate
		// gives back in the elapsed time.
		var taken uint64
		now := gcraEpoch
		for range 50 {
			if g.take(now, n) {
				taken += n
				if taken < n {
					return // the sum itself overflowed: nothing to check
				}
			}
			now = now.Add(time.Duration(stepNs))
		}
		elapsed := now.Sub(gcraEpoch) - time.Duration(stepNs)
		q, _ := divU128(mul64(uint64(elapsed), limit), uint64(period))
		if b := q.add(u128{0, burst}); b.less(u128{0, taken}) {
			t.Fatalf("took %d, more than burst %d + rate over %v", taken, burst, elapsed)
		}
	})
}

// divU128 divides x by d, for the fuzz test's bound.
func divU128(x u128, d uint64) (u128, uint64) {
	qhi := x.hi / d
	qlo, r := bits.Div64(x.hi%d, x.lo, d)
	return u128{qhi, qlo}, r
}
