package handler

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// jwtTestAuth is an authenticator with two JWT peers, bob and dave, a
// 2-second leeway and a clock stopped at jwtTestNow.
func jwtTestAuth(t *testing.T) *authenticator {
	t.Helper()
	a, _, err := newAuthenticator([]*Peer{
		{Name: "bob", JWTSecrets: []string{bobJWT}},
		{Name: "dave", JWTSecrets: []string{"dave-1", "dave-second-secret"}},
	}, caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	a.leeway, a.requireExp = 2*time.Second, true
	setClock(t, func() time.Time { return jwtTestNow })
	return a
}

var jwtTestNow = time.Unix(1_700_000_000, 0)

// signHS256 signs arbitrary header and payload JSON with crypto/hmac,
// independently of the library the edge verifies with.
func signHS256(secret, header, payload string) string {
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(input))
	return input + "." + enc.EncodeToString(m.Sum(nil))
}

func wantJWTErr(t *testing.T, a *authenticator, token, claimed string, want error) {
	t.Helper()
	p, err := a.authenticateJWT(token, claimed)
	if !errors.Is(err, want) || p != nil {
		t.Fatalf("got peer %v, error %v; want %v", p, err, want)
	}
}

func wantJWTPeer(t *testing.T, a *authenticator, token, claimed, want string) {
	t.Helper()
	p, err := a.authenticateJWT(token, claimed)
	if err != nil || p == nil || p.name != want {
		t.Fatalf("got peer %v, error %v; want %s", p, err, want)
	}
}

func TestJWTSecretsOfAnyLength(t *testing.T) {
	// jsonwebtoken signs with secrets of any length; the keys go-jose gets
	// are padded, and must give the same MAC for every length and hash.
	exp := map[string]any{"exp": jwtTestNow.Unix() + 60}
	for _, n := range []int{1, 13, 31, 32, 47, 48, 63, 64, 65, 127, 128, 129, 300} {
		secret := strings.Repeat("s", n-1) + "x"
		a, _, err := newAuthenticator([]*Peer{{Name: "p", JWTSecrets: []string{secret}}}, caddy.NewReplacer())
		if err != nil {
			t.Fatal(err)
		}
		setClock(t, func() time.Time { return jwtTestNow })
		a.requireExp = true
		for _, alg := range []string{"HS256", "HS384", "HS512"} {
			if p, err := a.authenticateJWT(ilptest.SignJWT(alg, secret, exp), ""); err != nil || p == nil {
				t.Errorf("%d-byte secret, %s: %v", n, alg, err)
			}
			// The padding must not make a prefix of the secret verify.
			if n > 1 {
				if p, err := a.authenticateJWT(ilptest.SignJWT(alg, secret[:n-1], exp), ""); !errors.Is(err, errJWTSignature) {
					t.Errorf("%d-byte secret, %s: its prefix verified: %v %v", n, alg, p, err)
				}
			}
		}
	}
}

func TestJWTPeerSecrets(t *testing.T) {
	a := jwtTestAuth(t)
	claims := map[string]any{"iat": jwtTestNow.Unix(), "exp": jwtTestNow.Unix() + 30}
	dave2 := ilptest.SignJWT("HS256", "dave-second-secret", claims)
	wantJWTPeer(t, a, dave2, "dave", "dave")
	wantJWTPeer(t, a, ilptest.SignJWT("HS384", "dave-1", claims), "", "dave") // no name: every peer is tried
	wantJWTPeer(t, a, ilptest.SignJWT("HS512", bobJWT, claims), "mallory", "bob")
	// Claiming to be bob with dave's secret is a signature failure, even
	// though dave's secret is a valid one: the claim narrows the search.
	wantJWTErr(t, a, ilptest.SignJWT("HS256", "dave-1", claims), "bob", errJWTSignature)
	wantJWTErr(t, a, ilptest.SignJWT("HS256", "nobody's", claims), "", errJWTSignature)
}

func TestJWTTimeBoundaries(t *testing.T) {
	const leeway = 2 * time.Second
	at := func(d time.Duration) func() time.Time {
		return func() time.Time { return jwtTestNow.Add(d) }
	}
	tok := func(claims string) string { return signHS256(bobJWT, `{"alg":"HS256","typ":"JWT"}`, claims) }
	exp := tok(`{"exp":1700000000}`)
	nbf := tok(`{"exp":1700000100,"nbf":1700000000}`)
	for _, c := range []struct {
		name  string
		token string
		now   time.Duration // relative to jwtTestNow
		want  error
	}{
		// jsonwebtoken: expired once now >= exp (+ leeway).
		{"exp: leeway not yet used up", exp, leeway - time.Millisecond, nil},
		{"exp: now == exp + leeway", exp, leeway, errJWTExpired},
		{"exp: past", exp, time.Hour, errJWTExpired},
		{"exp with milliseconds", tok(`{"exp":1699999998.5}`), 499 * time.Millisecond, nil},
		{"exp with milliseconds, past", tok(`{"exp":1699999998.5}`), 500 * time.Millisecond, errJWTExpired},
		// Valid from nbf (- leeway) on.
		{"nbf: now == nbf - leeway", nbf, -leeway, nil},
		{"nbf: just before nbf - leeway", nbf, -leeway - time.Millisecond, errJWTNotYet},
		// iat is not checked, as jsonwebtoken does not by default.
		{"iat in the future", tok(`{"iat":1800000000,"exp":1700000060}`), 0, nil},
		{"no exp", tok(`{"iat":1700000000}`), 0, errJWTNoExp},
		{"exp null", tok(`{"exp":null}`), 0, errJWTNoExp},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := jwtTestAuth(t)
			setClock(t, at(c.now))
			p, err := a.authenticateJWT(c.token, "bob")
			if !errors.Is(err, c.want) || (err == nil) != (p != nil) {
				t.Fatalf("got peer %v, error %v; want %v", p, err, c.want)
			}
		})
	}
}

func TestJWTWithoutExpCachedBriefly(t *testing.T) {
	a := jwtTestAuth(t)
	a.requireExp = false
	tok := signHS256(bobJWT, `{"alg":"HS256"}`, `{"iat":1700000000}`)
	wantJWTPeer(t, a, tok, "bob", "bob")
	if a.jwtCache.get(tok, jwtTestNow.Add(noExpTTL-time.Second)) == nil || a.jwtCache.get(tok, jwtTestNow.Add(noExpTTL)) != nil {
		t.Fatal("a token without exp is not cached for noExpTTL")
	}
}

func TestJWTRefused(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	claims := `{"exp":1700000060}`
	good := signHS256(bobJWT, `{"alg":"HS256","typ":"JWT"}`, claims)
	header, rest, _ := strings.Cut(good, ".")
	for _, c := range []struct {
		name, token string
		want        error
		label       string
	}{
		{"alg none", enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc([]byte(claims)) + ".", errJWTAlg, "algorithm"},
		{"alg none, HMAC sig", signHS256(bobJWT, `{"alg":"none"}`, claims), errJWTAlg, "algorithm"},
		{"RS256", signHS256(bobJWT, `{"alg":"RS256"}`, claims), errJWTAlg, "algorithm"},
		{"ES256", signHS256(bobJWT, `{"alg":"ES256"}`, claims), errJWTAlg, "algorithm"},
		{"lower-case hs256", signHS256(bobJWT, `{"alg":"hs256"}`, claims), errJWTAlg, "algorithm"},
		{"no alg", signHS256(bobJWT, `{"typ":"JWT"}`, claims), errJWTAlg, "algorithm"},
		{"other peer's secret", ilptest.SignJWT("HS256", "dave-1", map[string]any{"exp": 1700000060}), errJWTSignature, "signature"},
		{"signature of another token", header + "." + enc([]byte(`{"exp":1800000000}`)) + "." + strings.SplitN(rest, ".", 2)[1], errJWTSignature, "signature"},
		{"truncated signature", good[:len(good)-4], errJWTSignature, "signature"},
		{"truncated signature, not base64", good[:len(good)-2], errJWTMalformed, "malformed"},
		{"garbage", "a.b.c", errJWTMalformed, "malformed"},
		{"four parts", good + ".x", errJWTMalformed, "malformed"},
		{"header not JSON", enc([]byte("not json")) + "." + rest, errJWTMalformed, "malformed"},
		{"signature not base64", good + "!", errJWTMalformed, "malformed"},
		{"signed payload not JSON", signHS256(bobJWT, `{"alg":"HS256"}`, "not json"), errJWTMalformed, "malformed"},
		{"signed exp not a number", signHS256(bobJWT, `{"alg":"HS256"}`, `{"exp":"1700000060"}`), errJWTMalformed, "malformed"},
		{"unsupported crit", signHS256(bobJWT, `{"alg":"HS256","crit":["exp"],"exp":1}`, claims), errJWTMalformed, "malformed"},
		{"expired", signHS256(bobJWT, `{"alg":"HS256"}`, `{"exp":1699999990}`), errJWTExpired, "expired"},
		{"not yet valid", signHS256(bobJWT, `{"alg":"HS256"}`, `{"exp":1700000060,"nbf":1700000030}`), errJWTNotYet, "not_yet_valid"},
		{"no exp", signHS256(bobJWT, `{"alg":"HS256"}`, `{"iat":1700000000}`), errJWTNoExp, "no_exp"},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantJWTErr(t, jwtTestAuth(t), c.token, "bob", c.want)
			if method, reason := authFailureLabels(c.want); method != "jwt" || reason != c.label {
				t.Errorf("labels %s/%s, want jwt/%s", method, reason, c.label)
			}
		})
	}
}

func TestJWTOversizedRefusedUndecoded(t *testing.T) {
	a := jwtTestAuth(t)
	// Correctly signed, but 100 KB: refused before any decoding, so
	// without allocating.
	big := signHS256(bobJWT, `{"alg":"HS256"}`, `{"exp":1700000060,"pad":"`+strings.Repeat("x", 100<<10)+`"}`)
	wantJWTErr(t, a, big, "bob", errJWTMalformed)
	garbage := strings.Repeat("A", 50<<10) + ".." + strings.Repeat("B", 50<<10)
	for _, tok := range []string{big, garbage} {
		if n := testing.AllocsPerRun(10, func() { _, _ = a.authenticateJWT(tok, "bob") }); n != 0 {
			t.Errorf("%d allocations for a %d-byte token", int(n), len(tok))
		}
	}
	// The bound is far above a real token.
	fits := signHS256(bobJWT, `{"alg":"HS256"}`, `{"exp":1700000060,"pad":"`+strings.Repeat("x", 5<<10)+`"}`)
	wantJWTPeer(t, a, fits, "bob", "bob")
}
