package handler

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

const (
	testAddress = "test.edge"
	aliceToken  = "alice-static-token-0123456789"
	bobJWT      = "bob-jwt-secret-abcdefghijklmnop"
	carolRaw    = "carol-legacy-raw-token"
)

// testEdge returns a provisioned Edge with three peers: alice (static
// token, upstream token), bob (JWT secret), carol (token). Logs at every
// level go to the returned observer.
func testEdge(t testing.TB, mod func(*Edge)) (*Edge, *observer.ObservedLogs) {
	t.Helper()
	e := &Edge{
		Address: testAddress,
		Peers: []*Peer{
			{Name: "alice", Tokens: []string{aliceToken}, UpstreamToken: "alice-upstream"},
			{Name: "bob", JWTSecrets: []string{bobJWT}},
			{Name: "carol", Tokens: []string{carolRaw}},
		},
	}
	if mod != nil {
		mod(e)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := e.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	t.Cleanup(func() { e.Cleanup() }) // the peers' budgets are shared across edges, as across reloads
	if err := e.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	core, logs := observer.New(zap.DebugLevel)
	e.logger = zap.New(core)
	return e, logs
}

// setClock makes the package's clock read f until the test ends.
func setClock(t testing.TB, f func() time.Time) {
	t.Helper()
	old := now
	now = f
	t.Cleanup(func() { now = old })
}

// prepareBytes encodes a fixture Prepare to dest expiring after ttl.
func prepareBytes(dest string, ttl time.Duration) []byte { return ilptest.Prepare(dest, ttl) }

// newRequest builds a request as Caddy's server would hand it to a
// handler: with a vars table and a replacer.
func newRequest(method string, body []byte, headers ...string) *http.Request {
	r := httptest.NewRequest(method, "http://edge.test/ilp", bytes.NewReader(body))
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
	caddyhttp.NewTestReplacer(r)
	return r
}

// backend records what the next handler saw and answers as configured.
type backend struct {
	req    *http.Request
	body   []byte
	answer func(w http.ResponseWriter, r *http.Request) error
	calls  int
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	b.calls++
	b.req = r
	b.body, _ = io.ReadAll(r.Body)
	if b.answer != nil {
		return b.answer(w, r)
	}
	return fulfill(w, r)
}

func fulfill(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/octet-stream")
	_, err := w.Write(ilptest.Fulfill([]byte("ok")))
	return err
}

func serve(t testing.TB, e *Edge, r *http.Request, next caddyhttp.Handler) (*httptest.ResponseRecorder, error) {
	t.Helper()
	w := httptest.NewRecorder()
	err := e.ServeHTTP(w, r, next)
	return w, err
}

// wantReject checks that the response is a 200 carrying a Reject with
// code, triggered by the edge, and that code is one of edgeRejectCodes
// (whose series start at 0): every path to an edge Reject is tested here.
func wantReject(t testing.TB, w *httptest.ResponseRecorder, err error, code string) {
	t.Helper()
	if err != nil {
		t.Fatalf("handler error %v, want a %s Reject", err, code)
	}
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("status %d, content-type %q; want 200 application/octet-stream", w.Code, w.Header().Get("Content-Type"))
	}
	got, rerr := ilpdest.ReadRejectCode(w.Body.Bytes())
	if rerr != nil || got.String() != code {
		t.Fatalf("reply %x: code %v (%v), want %s", w.Body.Bytes(), got, rerr, code)
	}
	if !bytes.Contains(w.Body.Bytes(), append([]byte{byte(len(testAddress))}, testAddress...)) {
		t.Fatalf("reject not triggered by %s: %x", testAddress, w.Body.Bytes())
	}
	if !slices.Contains(edgeRejectCodes, got) {
		t.Errorf("the edge made a %s Reject, which edgeRejectCodes lacks", got)
	}
}

// wantStatus checks for a HandlerError with the given status.
func wantStatus(t testing.TB, err error, status int) {
	t.Helper()
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != status {
		t.Fatalf("error %v, want HTTP %d", err, status)
	}
}

func base64URL(s string) string { return base64.URLEncoding.EncodeToString([]byte(s)) }
