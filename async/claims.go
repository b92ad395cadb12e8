package async

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/ilp-edge/caddy-ilp/store"
)

// ClaimResult is what Claims.Claim found for a Request-Id.
type ClaimResult int

// The results of a claim.
const (
	// New: the id is new; forward the packet.
	New ClaimResult = iota
	// Replay: the same packet came with this id before (its sender did
	// not see the 202, say): accepted again, not forwarded again; the one
	// reply goes to the callback.
	Replay
	// Conflict: another packet came with this id: refused (409).
	Conflict
)

// maxClaim bounds how long an id is remembered: a Prepare may expire in
// the year 9999, and by then the edge has long answered it (max_hold).
const maxClaim = time.Hour

// Claims forwards each of a peer's Request-Ids once: on the shared store
// when the edge has one, so that a Prepare replayed through another edge
// is not forwarded twice, else in this process. Ids are per peer: one
// peer's ids can neither collide with nor reveal another's.
type Claims struct {
	Store *store.Store // nil: in process only

	mu      sync.Mutex
	entries map[claimKey]claim
	order   []claimKey // by claim time, for expiring them
}

type claimKey struct {
	peer string
	id   RequestID
}

type claim struct {
	digest [32]byte
	until  time.Time
}

// Claim claims peer's id for packet, until the exchange ends (the
// Prepare's expiry, at most maxClaim from now). While the shared store
// cannot answer, the claim is made in process: exactly once per edge,
// not across edges, until it answers again.
func (c *Claims) Claim(ctx context.Context, peer string, id RequestID, packet []byte, until time.Time) ClaimResult {
	digest := sha256.Sum256(packet)
	now := time.Now()
	if latest := now.Add(maxClaim); until.After(latest) {
		until = latest
	}
	if c.Store != nil {
		n, err := c.Store.ClaimRequest(ctx, peer, string(id), digest[:], until.Sub(now))
		if err == nil {
			return [...]ClaimResult{store.Claimed: New, store.Replayed: Replay, store.Conflicting: Conflict}[n]
		}
	}
	return c.claimHere(claimKey{peer, id}, digest, now, until)
}

func (c *Claims) claimHere(k claimKey, digest [32]byte, now, until time.Time) ClaimResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[claimKey]claim{}
	}
	// Forget the claims whose time is up, oldest first. One that outlives
	// a younger one keeps the younger in the queue a while (the map says
	// which are live): the queue holds at most an hour of claims.
	for len(c.order) > 0 {
		e, ok := c.entries[c.order[0]]
		if ok && now.Before(e.until) {
			break
		}
		if ok {
			delete(c.entries, c.order[0])
		}
		c.order = c.order[1:]
	}
	if e, ok := c.entries[k]; ok && now.Before(e.until) {
		if e.digest == digest {
			return Replay
		}
		return Conflict
	}
	c.entries[k] = claim{digest, until}
	c.order = append(c.order, k)
	return New
}

// Len is how many claims are held in process.
func (c *Claims) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
