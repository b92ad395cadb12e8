package store

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// leaseScript takes up to want µs of a budget's tolerance (its burst, in
// time), at least need, and returns {granted, 0}; or, when even need does
// not fit, {0, µs until it will}. KEYS[1] holds the budget's theoretical
// arrival time in µs on Redis' clock, so that the edges' clocks do not
// matter. Every number stays below 2^53, so Lua's doubles hold them
// exactly; they are formatted with %.0f because Lua's tostring rounds to
// 14 digits.
var leaseScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local need, want, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local free = tolerance - (tat - now)
if free < need then
	return {0, need - free}
end
local grant = math.min(want, free)
tat = tat + grant
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', string.format('%.0f', math.floor((tat - now) / 1000) + 1))
return {grant, 0}
`)

// The series of metricLeases, looked up once.
var (
	leasesGranted = metricLeases.WithLabelValues("granted")
	leasesDenied  = metricLeases.WithLabelValues("denied")
	leasesError   = metricLeases.WithLabelValues("error")
)

// Lease asks Redis, at start (the edge's clock, from which a failure
// keeps the edge off Redis for a second), for up to want µs of
// the budget named budget (the generic cell rate algorithm's time: see
// leaseScript), at least need, whose tolerance is tolerance µs. It
// returns what was granted, or how long until need will be; it gives up
// at the store's timeout or expiry, whichever is sooner. Its errors wrap
// ErrUnavailable.
func (s *Store) Lease(parent context.Context, start, expiry time.Time, budget string, need, want, tolerance uint64) (granted uint64, wait time.Duration, err error) {
	begin := time.Now()
	deadline := begin.Add(s.timeout)
	expiring := expiry.Before(deadline)
	if expiring {
		deadline = expiry
	}
	ctx, cancel := context.WithDeadline(parent, deadline)
	defer cancel()
	res, err := leaseScript.Run(ctx, s.client, []string{s.keyPrefix + budget}, need, want, tolerance).Int64Slice()
	metricLeaseDuration.Observe(time.Since(begin).Seconds())
	if err == nil && (len(res) != 2 || res[0] < 0 || res[1] < 0) {
		err = fmt.Errorf("unexpected reply %v", res)
	}
	if err != nil {
		leasesError.Inc()
		// Redis' fault is an error of its own, or no answer within
		// timeout; not the packet running out of time or its peer going
		// away. (The client's read deadline may fire before ctx's.)
		timedOut := ctx.Err() != nil || !time.Now().Before(deadline)
		if parent.Err() == nil && (!timedOut || !expiring) {
			s.failed(start, err)
		} else {
			s.gaveUp()
		}
		return 0, 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	s.answered()
	if res[0] == 0 {
		leasesDenied.Inc()
		return 0, time.Duration(res[1]) * time.Microsecond, nil
	}
	leasesGranted.Inc()
	return uint64(res[0]), 0, nil
}
