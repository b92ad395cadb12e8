package handler

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"strings"
	"sync"
	"time"
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

// jwtToken is a decoded, not yet verified, compact JWS as ilp-plugin-http
// signs it with jsonwebtoken: an HMAC over "header.payload" and a payload of
// {iat, exp}.
type jwtToken struct {
	newHash      func() hash.Hash
	signingInput string
	signature    []byte
	exp, nbf     *float64 // NumericDate claims, seconds since the epoch
}

func parseJWT(token string) (*jwtToken, error) {
	h, rest, ok := strings.Cut(token, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || strings.Contains(sig, ".") {
		return nil, errJWTMalformed
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if err := decodeSegment(h, &header); err != nil {
		return nil, errJWTMalformed
	}
	t := &jwtToken{signingInput: token[:len(h)+1+len(payload)]}
	// Only HMAC algorithms: "none", and any public-key algorithm (which a
	// naive verifier would check against the shared secret as an HMAC key),
	// are refused outright.
	switch header.Alg {
	case "HS256":
		t.newHash = sha256.New
	case "HS384":
		t.newHash = sha512.New384
	case "HS512":
		t.newHash = sha512.New
	default:
		return nil, errJWTAlg
	}
	var claims struct {
		Exp *float64 `json:"exp"`
		Nbf *float64 `json:"nbf"`
	}
	if err := decodeSegment(payload, &claims); err != nil {
		return nil, errJWTMalformed
	}
	t.exp, t.nbf = claims.Exp, claims.Nbf
	var err error
	if t.signature, err = base64.RawURLEncoding.DecodeString(sig); err != nil {
		return nil, errJWTMalformed
	}
	return t, nil
}

func decodeSegment(seg string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// signedWith reports whether the token's signature is the HMAC of its
// header and payload under secret, comparing in constant time.
func (t *jwtToken) signedWith(secret []byte) bool {
	m := hmac.New(t.newHash, secret)
	m.Write([]byte(t.signingInput))
	return hmac.Equal(m.Sum(nil), t.signature)
}

// validAt checks exp and nbf as jsonwebtoken does (expired once now >= exp),
// allowing leeway for clock skew between the peer and the edge. It returns
// when the token stops being valid, or the zero time if it has no exp.
func (t *jwtToken) validAt(now time.Time, leeway time.Duration, requireExp bool) (time.Time, error) {
	var until time.Time
	if t.exp == nil {
		if requireExp {
			return until, errJWTNoExp
		}
	} else {
		until = numericDate(*t.exp).Add(leeway)
		if !now.Before(until) {
			return until, errJWTExpired
		}
	}
	if t.nbf != nil && now.Add(leeway).Before(numericDate(*t.nbf)) {
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
