package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// A peer's routing table (CCP) is one value on Redis, written by
// whichever edge gets the peer's next route update or route control, so
// that every edge replays the same table to a connector that missed
// updates, and one edge's record of who holds the peer's route control
// is every edge's. What the value holds is the forwarder's business
// (handler/proxy); the store keeps it, and a lock per peer so that the
// edges apply the peer's updates one at a time, in the order they take
// the lock, which is the order the peer sent them (it sends one at a
// time).
//
// The lock is a key with a lease (SET NX PX) and a random token, and the
// table is written only by the holder of the token (a fenced write): an
// edge that stalls past its lease, or dies, cannot overwrite what the
// next holder wrote. Both keys share the hash tag {<peer>}, so that both
// scripts work on a Cluster.

// lockTableScript takes the lock KEYS[1] with token ARGV[1] for ARGV[2]
// ms, if free, and returns {1, the table KEYS[2] or nil}; else {0, the
// ms the lock has left}.
var lockTableScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
	return {1, redis.call('GET', KEYS[2])}
end
return {0, redis.call('PTTL', KEYS[1])}
`)

// saveTableScript writes ARGV[2] to the table KEYS[2], unless it is
// empty, and frees the lock KEYS[1], if the lock still holds the token
// ARGV[1]; it returns 1 then, else 0.
var saveTableScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
	return 0
end
if ARGV[2] ~= '' then
	redis.call('SET', KEYS[2], ARGV[2])
end
redis.call('DEL', KEYS[1])
return 1
`)

// lockPoll is how often an edge asks again for a table another edge
// holds; a peer sends its updates one at a time, so it waits only when
// the holder died or stalled, or for a route control beside an update.
const lockPoll = 10 * time.Millisecond

// ErrLockLost is Save's error when the lock's lease ran out before the
// table was written: the table is as the next holder left it.
var ErrLockLost = errors.New("routing table lock lost")

// The series of metricTableOps, looked up once.
var (
	tablesShared = metricTableOps.WithLabelValues("shared")
	tablesLocal  = metricTableOps.WithLabelValues("local")
)

// TableLock is one peer's routing table, locked by this edge.
type TableLock struct {
	s              *Store
	keys           []string // the lock, the table
	token          string
	lease          time.Duration
	Peer           string
	Acquired, Held time.Time
}

func (s *Store) tableKeys(peer string) []string {
	tag := s.keyPrefix + "ccp:{" + peer + "}:"
	return []string{tag + "lock", tag + "table"}
}

// LockTable locks peer's routing table for at most lease, waiting while
// another edge holds it, until deadline; and returns it as last saved
// (nil: never saved). Its errors wrap ErrUnavailable: without the store,
// the caller goes on with what it holds itself (CountLocalTable).
func (s *Store) LockTable(ctx context.Context, peer string, lease time.Duration, deadline time.Time) (*TableLock, []byte, error) {
	if !s.Asking(time.Now()) {
		return nil, nil, ErrUnavailable
	}
	var b [16]byte
	rand.Read(b[:])
	l := &TableLock{s: s, keys: s.tableKeys(peer), token: hex.EncodeToString(b[:]), lease: lease, Peer: peer}
	start := time.Now()
	lockedOut := func() error {
		return fmt.Errorf("%w: routing table of %q locked by another edge until past the packet's time", ErrUnavailable, peer)
	}
	for tries := 0; ; tries++ {
		res, err := s.run(ctx, s.tableDeadline(), deadline, lockTableScript, l.keys, l.token, lease.Milliseconds())
		if err != nil {
			if tries > 0 && ctx.Err() == nil && !time.Now().Before(deadline) {
				// Woken late from the wait below: the packet's time ran
				// out on the other edge's lock, not on Redis.
				return nil, nil, lockedOut()
			}
			return nil, nil, err
		}
		vals, ok := res.([]any)
		if !ok || len(vals) != 2 {
			return nil, nil, s.fail(fmt.Errorf("lock: unexpected reply %v", res))
		}
		if got, _ := vals[0].(int64); got == 1 {
			l.Acquired, l.Held = start, time.Now()
			tablesShared.Inc()
			var table []byte
			if v, ok := vals[1].(string); ok {
				table = []byte(v)
			}
			return l, table, nil
		}
		wait := lockPoll
		if left, _ := vals[1].(int64); left > 0 && time.Duration(left)*time.Millisecond < wait {
			wait = time.Duration(left) * time.Millisecond
		}
		if time.Now().Add(wait).After(deadline) {
			return nil, nil, lockedOut()
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// CountLocalTable counts an update or control applied to an edge's own
// table, without the store.
func CountLocalTable() { tablesLocal.Inc() }

// Save writes the table (nil: leaves it as it was) and frees the lock.
// It returns ErrLockLost when the lease ran out first.
func (l *TableLock) Save(ctx context.Context, table []byte) error {
	res, err := l.s.run(ctx, l.s.tableDeadline(), time.Time{}, saveTableScript, l.keys, l.token, table)
	if err != nil {
		return err
	}
	if n, _ := res.(int64); n != 1 {
		return fmt.Errorf("%w after %v (lease %v)", ErrLockLost, time.Since(l.Held).Round(time.Millisecond), l.lease)
	}
	return nil
}

// tableDeadline is when a round trip for a routing table gives up: four
// times the store's timeout, at least 200ms (route updates are rare, and
// their packets can wait longer than a payment's lease).
func (s *Store) tableDeadline() time.Time {
	return time.Now().Add(max(4*s.timeout, 200*time.Millisecond))
}

// run runs script until the store's deadline or the caller's (its
// packet's; zero: none), whichever is sooner, and notes whether Redis
// answered. Running out of the caller's time, or the caller going away,
// is not Redis' failure. Its errors wrap ErrUnavailable.
func (s *Store) run(parent context.Context, deadline, callers time.Time, script *redis.Script, keys []string, args ...any) (any, error) {
	callersFirst := !callers.IsZero() && callers.Before(deadline)
	if callersFirst {
		deadline = callers
	}
	ctx, cancel := context.WithDeadline(parent, deadline)
	defer cancel()
	res, err := script.Run(ctx, s.client, keys, args...).Result()
	if err != nil {
		if parent.Err() != nil || callersFirst && !time.Now().Before(deadline) {
			s.gaveUp()
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return nil, s.fail(err)
	}
	s.answered()
	return res, nil
}

// fail notes Redis' failure and returns it wrapped in ErrUnavailable.
func (s *Store) fail(err error) error {
	s.failed(time.Now(), err)
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// ReadTable returns peer's routing table as last saved (nil: never),
// without locking it: for an operator's view.
func (s *Store) ReadTable(ctx context.Context, peer string) ([]byte, error) {
	ctx, cancel := context.WithDeadline(ctx, s.tableDeadline())
	defer cancel()
	v, err := s.client.Get(ctx, s.tableKeys(peer)[1]).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return v, nil
}
