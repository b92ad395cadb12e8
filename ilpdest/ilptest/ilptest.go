// Package ilptest holds the packet fixtures every caddy-ilp test, the
// end-to-end suite, the demo and the benchmark harness share: Prepare,
// Fulfill and Reject builders with a known fulfillment, and JWTs signed as
// ilp-plugin-http signs them.
package ilptest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"hash"
	"net"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// Fulfillment is the preimage of Condition: a connector that fulfills a
// fixture Prepare answers with it.
var Fulfillment = bytes.Repeat([]byte{0x42}, 32)

// Condition returns SHA-256(Fulfillment), the execution condition of every
// fixture Prepare.
func Condition() []byte {
	c := sha256.Sum256(Fulfillment)
	return c[:]
}

// Prepare encodes a Prepare of 100 units to dest that expires ttl from now,
// with Condition and the data "hello".
func Prepare(dest string, ttl time.Duration) []byte {
	return NewPrepare(ilpdest.Prepare{Amount: 100, Destination: []byte(dest),
		ExpiresAt: time.Now().Add(ttl), Data: []byte("hello")})
}

// NewPrepare encodes p, first filling in what it leaves zero: an expiry
// 30 seconds from now and Condition.
func NewPrepare(p ilpdest.Prepare) []byte {
	if p.ExpiresAt.IsZero() {
		p.ExpiresAt = time.Now().Add(30 * time.Second)
	}
	if p.ExecutionCondition == nil {
		p.ExecutionCondition = Condition()
	}
	return ilpdest.AppendPrepare(nil, p)
}

// Fulfill encodes a Fulfill with Fulfillment and data.
func Fulfill(data []byte) []byte {
	return ilpdest.AppendFulfill(nil, Fulfillment, data)
}

// Reject encodes a Reject with code (such as "F02"), triggeredBy and
// message.
func Reject(code, triggeredBy, message string) []byte {
	var c ilpdest.Code
	copy(c[:], code)
	return ilpdest.AppendReject(nil, ilpdest.Reject{Code: c, TriggeredBy: triggeredBy, Message: message})
}

// FulfillData returns the data of a Fulfill, or false if b is not one.
func FulfillData(b []byte) ([]byte, bool) {
	if t, err := ilpdest.ReadResponseType(b); err != nil || t != ilpdest.TypeFulfill {
		return nil, false
	}
	// type, one-byte envelope length (fixtures are short), fulfillment,
	// one-byte data length
	if len(b) < 35 || b[1] >= 0x80 {
		return nil, false
	}
	return b[35:], true
}

// SignJWT signs claims as a compact JWS with alg (HS256, HS384 or HS512;
// anything else is written into the header but signed as HS256), as the
// jsonwebtoken library behind ilp-plugin-http does.
func SignJWT(alg, secret string, claims map[string]any) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
	p, _ := json.Marshal(claims)
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	var newHash func() hash.Hash
	switch alg {
	case "HS384":
		newHash = sha512.New384
	case "HS512":
		newHash = sha512.New
	default:
		newHash = sha256.New
	}
	m := hmac.New(newHash, []byte(secret))
	m.Write([]byte(input))
	return input + "." + enc.EncodeToString(m.Sum(nil))
}

// PluginClaims returns the claims ilp-plugin-http puts in its tokens:
// iat now and exp ttl later.
func PluginClaims(ttl time.Duration) map[string]any {
	now := time.Now().Unix()
	return map[string]any{"iat": now, "exp": now + int64(ttl/time.Second)}
}

// PluginJWT is an HS256 token with PluginClaims, as ilp-plugin-http sends.
func PluginJWT(secret string, ttl time.Duration) string {
	return SignJWT("HS256", secret, PluginClaims(ttl))
}

// DeadAddress returns a loopback host:port that nothing listens on: a
// connector that refuses every dial.
func DeadAddress(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
