// Package backoff is the one retry schedule of caddy-ilp: exponential,
// with full jitter, bounded by a deadline.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Schedule is a capped exponential back-off: the wait before retry n
// (from 0) is a random time up to min(First·2ⁿ, Max), so that many
// senders retrying after one failure do not come back together.
type Schedule struct {
	First time.Duration
	Max   time.Duration
}

// Wait is how long to wait before retry n (from 0), or false when the
// retry would start at or after deadline (from now): there is no time
// left to try again.
func (s Schedule) Wait(n int, now, deadline time.Time) (time.Duration, bool) {
	ceiling := s.Max
	if n < 30 {
		if d := s.First << n; d > 0 && d < ceiling {
			ceiling = d
		}
	}
	wait := time.Duration(rand.Int64N(int64(ceiling) + 1))
	if !now.Add(wait).Before(deadline) {
		return 0, false
	}
	return wait, true
}
