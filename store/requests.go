package store

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// A peer's asynchronous Prepares (RFC 35 draft 3) are each forwarded
// once, whichever edge they reach: the first edge to claim a peer's
// Request-Id forwards it, and a second Prepare with the same id, at any
// edge, is a replay (the same packet) or a conflict (another). A claim is
// a key per peer and id, holding a digest of the packet, that expires
// with the exchange.

// claimScript claims KEYS[1] for the digest ARGV[1] for ARGV[2] ms and
// returns 1; or, when it is claimed already, 2 if for the same digest,
// else 3.
var claimScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
	return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return 2
end
return 3
`)

// Claim results.
const (
	Claimed     = 1 // the id is the caller's to forward
	Replayed    = 2 // claimed before, for the same packet
	Conflicting = 3 // claimed before, for another packet
)

// ClaimRequest claims peer's request id for the packet whose digest is
// digest, for ttl, and returns Claimed, Replayed or Conflicting. Its
// errors wrap ErrUnavailable.
func (s *Store) ClaimRequest(ctx context.Context, peer, id string, digest []byte, ttl time.Duration) (int, error) {
	if !s.Asking(time.Now()) {
		return 0, ErrUnavailable
	}
	key := s.keyPrefix + "req:{" + peer + "}:" + id
	res, err := s.run(ctx, time.Now().Add(s.timeout), time.Time{}, claimScript, []string{key}, digest, max(ttl.Milliseconds(), 1))
	if err != nil {
		return 0, err
	}
	n, _ := res.(int64)
	if n < Claimed || n > Conflicting {
		return 0, s.fail(fmt.Errorf("claim: unexpected reply %v", res))
	}
	return int(n), nil
}
