package handler

import (
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// JWT failures; their text ends up in 401 error messages and logs, so it
// names the problem and never the token.
var (
	errJWTMalformed = errors.New("malformed JWT")
	errJWTAlg       = errors.New("JWT algorithm is not HS256, HS384 or HS512")
	errJWTSignature = errors.New("JWT signature does not match any peer's secret")
	errJWTExpired   = errors.New("JWT expired")
	errJWTNotYet    = errors.New("JWT not valid yet")
	errJWTNoExp     = errors.New("JWT has no exp claim")
)

// maxJWTLen bounds the tokens the edge decodes at all. ilp-plugin-http's
// are about 150 bytes; one of kilobytes is not a peer's, and is refused as
// malformed before any base64 or JSON work.
const maxJWTLen = 8 << 10

// jwtAlgorithms are the only algorithms go-jose will parse a token with:
// "none", and any public-key algorithm (which a naive verifier would check
// against the shared secret as an HMAC key), are refused outright.
var jwtAlgorithms = []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512}

// parseJWT decodes a compact JWS as ilp-plugin-http signs it with
// jsonwebtoken (an HMAC over "header.payload", a payload of {iat, exp})
// without verifying it.
func parseJWT(token string) (*jose.JSONWebSignature, error) {
	if len(token) > maxJWTLen {
		return nil, errJWTMalformed
	}
	jws, err := jose.ParseSignedCompact(token, jwtAlgorithms)
	if err != nil {
		if _, ok := errors.AsType[*jose.ErrUnexpectedSignatureAlgorithm](err); ok {
			return nil, errJWTAlg
		}
		return nil, errJWTMalformed
	}
	return jws, nil
}

// jwtPayload returns the token's payload if key (from hmacKey) signed it.
// go-jose computes the HMAC and compares it in constant time.
func jwtPayload(jws *jose.JSONWebSignature, key []byte) (payload []byte, signed bool, err error) {
	payload, err = jws.Verify(key)
	switch {
	case err == nil:
		return payload, true, nil
	case errors.Is(err, jose.ErrCryptoFailure): // the MAC differs
		return nil, false, nil
	}
	// Not about the key: the header asks for something go-jose does not
	// support, such as an unknown "crit" extension.
	return nil, false, errJWTMalformed
}

// hmacKeyLen is what hmacKey pads a shorter secret to.
const hmacKeyLen = 64

// hmacKey turns a peer's jwt_secret into the key go-jose verifies with.
// go-jose refuses HMAC keys shorter than the hash (RFC 7518 §3.2: 32 bytes
// for HS256, 48 for HS384, 64 for HS512), but jsonwebtoken signs with
// whatever jwtSecret ilp-plugin-http is given, and such secrets must keep
// working. HMAC zero-pads every key shorter than the hash's block size (64
// bytes for SHA-256, 128 for SHA-384/512; RFC 2104), so a secret
// zero-padded to 64 bytes yields exactly the same MAC under all three
// algorithms while passing go-jose's check. Longer secrets are used as is.
func hmacKey(secret string) []byte {
	key := make([]byte, max(len(secret), hmacKeyLen))
	copy(key, secret)
	return key
}

// jwtClaims are the claims the edge checks, decoded from a verified
// payload: NumericDates, seconds since the epoch, fractions allowed.
type jwtClaims struct {
	Exp *float64 `json:"exp"`
	Nbf *float64 `json:"nbf"`
}

func decodeJWTClaims(payload []byte) (jwtClaims, error) {
	var c jwtClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return c, errJWTMalformed
	}
	return c, nil
}

// validAt checks exp and nbf as jsonwebtoken does (expired once
// now >= exp + leeway; not yet valid while now + leeway < nbf), allowing
// leeway for clock skew between the peer and the edge. It returns when the
// token stops being valid, or the zero time if it has no exp.
//
// This stays ours rather than go-jose/jwt's Claims.ValidateWithLeeway,
// which differs from jsonwebtoken: a token is expired there only once
// now > exp + leeway (one instant later), a future iat is refused, and
// NumericDates are truncated to whole seconds.
func (c jwtClaims) validAt(now time.Time, leeway time.Duration, requireExp bool) (time.Time, error) {
	var until time.Time
	if c.Exp == nil {
		if requireExp {
			return until, errJWTNoExp
		}
	} else {
		until = numericDate(*c.Exp).Add(leeway)
		if !now.Before(until) {
			return until, errJWTExpired
		}
	}
	if c.Nbf != nil && now.Add(leeway).Before(numericDate(*c.Nbf)) {
		return until, errJWTNotYet
	}
	return until, nil
}

func numericDate(f float64) time.Time {
	return time.UnixMilli(int64(f * 1000))
}

// jwtCache remembers tokens that verified, until they expire, so that a
// peer's token (ilp-plugin-http re-uses one for half its lifetime) costs one
// map lookup after the first packet instead of an HMAC per packet.
type jwtCache struct {
	mu      sync.RWMutex
	entries map[string]jwtCacheEntry
	max     int
}

type jwtCacheEntry struct {
	peer  *peer
	until time.Time // zero: the token has no exp, cached for noExpTTL
}

// noExpTTL bounds how long a token without exp (accepted only with
// jwt_allow_missing_exp) is trusted without verifying it again.
const noExpTTL = time.Minute

func newJWTCache(max int) *jwtCache {
	return &jwtCache{entries: make(map[string]jwtCacheEntry), max: max}
}

func (c *jwtCache) get(token string, now time.Time) *peer {
	c.mu.RLock()
	e, ok := c.entries[token]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return nil
	}
	return e.peer
}

func (c *jwtCache) put(token string, p *peer, until, now time.Time) {
	if until.IsZero() {
		until = now.Add(noExpTTL)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.max {
			// Every entry is live: many peers rotating tokens at once, or
			// someone minting valid tokens. Verifying again is correct,
			// just slower, so drop the lot rather than grow without bound.
			clear(c.entries)
		}
	}
	c.entries[token] = jwtCacheEntry{peer: p, until: until}
}
