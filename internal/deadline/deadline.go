// Package deadline decides when a connection's deadline must move, for
// the front door's h1 and h2 and ilp_proxy's HTTP/1.1 client. Moving one
// resets a runtime timer, about 2% of a packet's CPU when done for every
// request, so a busy connection moves its deadlines only when they have
// fallen behind by a margin.
package deadline

import "time"

// Due reports whether a deadline set at set must be moved to want: when
// set is later than want (a deadline is never late), or earlier by slack
// or more. The zero time is no deadline, which is set exactly.
func Due(set, want time.Time, slack time.Duration) bool {
	if set.IsZero() || want.IsZero() {
		return !set.Equal(want)
	}
	ahead := want.Sub(set)
	return ahead < 0 || ahead >= slack
}
