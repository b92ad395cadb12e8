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

	// Last is the time a try needs before the deadline. A draw that would
	// start the retry later than that is cut to start it then: with a
	// cap of seconds, the jitter would otherwise give up on the last try
	// with up to the cap still left.
	Last time.Duration
}

// Wait is how long to wait before retry n (from 0), or false when less
// than Last is left before deadline (from now): no time to try again.
func (s Schedule) Wait(n int, now, deadline time.Time) (time.Duration, bool) {
	latest := deadline.Add(-s.Last)
	if !now.Before(latest) {
		return 0, false
	}
	ceiling := s.Max
	if n < 30 {
		if d := s.First << n; d > 0 && d < ceiling {
			ceiling = d
		}
	}
	wait := time.Duration(rand.Int64N(int64(ceiling) + 1))
	if now.Add(wait).After(latest) {
		wait = latest.Sub(now)
	}
	return wait, true
}
