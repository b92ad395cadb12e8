package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap/zaptest"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestMain sends Caddy's default logger, which modules provisioned outside
// a running config log to, nowhere: each test gives the proxy under test a
// zaptest logger instead, printed only when the test fails.
func TestMain(m *testing.M) {
	if err := caddy.Load([]byte(`{"admin":{"disabled":true},"logging":{"logs":{"default":{"writer":{"output":"discard"}}}}}`), true); err != nil {
		fmt.Fprintln(os.Stderr, "quieting Caddy's logs:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

const aliceToken = "alice-static-token-0123456789"

// testEdge returns a provisioned ilp_edge with one peer, alice.
func testEdge(t *testing.T) *handler.Edge {
	t.Helper()
	return testEdgeWith(t, nil)
}

// testEdgeWith returns a provisioned ilp_edge with one peer, alice, and
// the settings mod makes.
func testEdgeWith(t *testing.T, mod func(*handler.Edge)) *handler.Edge {
	t.Helper()
	e := &handler.Edge{Address: "test.edge", Peers: []*handler.Peer{{Name: "alice", Tokens: []string{aliceToken}}}}
	if mod != nil {
		mod(e)
	}
	ctx, cancel := caddy.NewContext(caddy.ActiveContext())
	t.Cleanup(cancel)
	if err := e.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	return e
}

// testProxy provisions an ilp_proxy for the upstreams.
func testProxy(t *testing.T, mod func(*Proxy), upstreams ...string) *Proxy {
	t.Helper()
	p := &Proxy{Upstreams: upstreams}
	if mod != nil {
		mod(p)
	}
	ctx, cancel := caddy.NewContext(caddy.ActiveContext())
	t.Cleanup(cancel)
	if err := p.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	p.logger = zaptest.NewLogger(t)
	t.Cleanup(func() { p.Cleanup() })
	if err := p.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return p
}

// newRequest builds a request as Caddy's server would hand it to a
// handler: with a vars table and a replacer.
func newRequest(body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "http://edge.test/ilp", bytes.NewReader(body))
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
	caddyhttp.NewTestReplacer(r)
	return r
}

// send passes one packet to dest through ilp_edge (as alice) and p.
func send(t *testing.T, e *handler.Edge, p *Proxy, dest string, ttl time.Duration) (*httptest.ResponseRecorder, *http.Request, error) {
	t.Helper()
	return sendPacket(t, e, p, ilptest.Prepare(dest, ttl))
}

// sendPacket passes the Prepare body through ilp_edge (as alice) and p.
func sendPacket(t *testing.T, e *handler.Edge, p *Proxy, body []byte) (*httptest.ResponseRecorder, *http.Request, error) {
	t.Helper()
	r := newRequest(body)
	r.Header.Set("Authorization", "Bearer "+aliceToken)
	var seen *http.Request
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		seen = r
		return p.ServeHTTP(w, r, nil)
	})
	w := httptest.NewRecorder()
	err := e.ServeHTTP(w, r, next)
	if seen == nil {
		seen = r
	}
	return w, seen, err
}

// forward passes one packet to dest to p alone, with the packet's expiry
// as the request's deadline, and returns what p returned.
func forward(t *testing.T, p *Proxy, dest string, ttl time.Duration) (*httptest.ResponseRecorder, *http.Request, error) {
	t.Helper()
	r := newRequest(ilptest.Prepare(dest, ttl))
	ctx, cancel := context.WithTimeout(r.Context(), ttl)
	t.Cleanup(cancel)
	r = r.WithContext(ctx)
	w := httptest.NewRecorder()
	return w, r, p.ServeHTTP(w, r, nil)
}

// wantFailure checks that err is a forwarding failure f, as a handler
// error with its status.
func wantFailure(t *testing.T, err error, f handler.Failure) {
	t.Helper()
	fe, ok := errors.AsType[*handler.ForwardError](err)
	he, isHandlerError := errors.AsType[caddyhttp.HandlerError](err)
	if !ok || fe.Failure != f || !isHandlerError || he.StatusCode != f.HTTPStatus() {
		t.Fatalf("error %v, want a %q forwarding failure with HTTP %d", err, f, f.HTTPStatus())
	}
}

// wantReject checks that ilp_edge answered with a Reject with code.
func wantReject(t *testing.T, w *httptest.ResponseRecorder, err error, code string) {
	t.Helper()
	if err != nil {
		t.Fatalf("handler error %v, want a %s Reject", err, code)
	}
	got, rerr := ilpdest.ReadRejectCode(w.Body.Bytes())
	if w.Code != http.StatusOK || rerr != nil || got.String() != code {
		t.Fatalf("HTTP %d %x: code %v (%v), want a %s Reject", w.Code, w.Body.Bytes(), got, rerr, code)
	}
}

// fulfilledBy returns the connector name in a Fulfill's data.
func fulfilledBy(t *testing.T, w *httptest.ResponseRecorder, err error) string {
	t.Helper()
	if err != nil {
		t.Fatalf("handler error: %v", err)
	}
	data, ok := ilptest.FulfillData(w.Body.Bytes())
	if !ok {
		code, _ := ilpdest.ReadRejectCode(w.Body.Bytes())
		t.Fatalf("got %x (code %s), want a Fulfill", w.Body.Bytes(), code)
	}
	return string(data)
}

// connector is a real HTTP server on loopback standing in for an ILP
// connector: it fulfills every packet with its name as the data and
// counts what it received.
type connector struct {
	name    string
	srv     *httptest.Server
	packets atomic.Int32
	mu      sync.Mutex
	paths   []string
	bodies  []string     // the packets received, in order
	health  atomic.Int32 // status for GET /health; 0 = 200
	reject  atomic.Bool  // answer T00 rather than fulfill
	drop    atomic.Bool  // close the connection with no reply
}

func startConnector(t *testing.T, name string, h2c bool) *connector {
	t.Helper()
	c := &connector{name: name}
	c.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			if s := c.health.Load(); s != 0 {
				w.WriteHeader(int(s))
			}
			return
		}
		body, _ := io.ReadAll(r.Body)
		if c.drop.Load() {
			panic(http.ErrAbortHandler)
		}
		c.packets.Add(1)
		c.mu.Lock()
		c.paths = append(c.paths, r.URL.Path+" "+r.Proto+" "+r.Header.Get("Ilp-Peer-Name"))
		c.bodies = append(c.bodies, string(body))
		c.mu.Unlock()
		if c.reject.Load() {
			w.Write(ilptest.Reject("T00", "test."+name, "refused"))
			return
		}
		w.Write(ilptest.Fulfill([]byte(name)))
	}))
	if h2c {
		c.srv.Config.Protocols = new(http.Protocols)
		c.srv.Config.Protocols.SetUnencryptedHTTP2(true)
	}
	c.srv.Start()
	t.Cleanup(c.srv.Close)
	return c
}

func (c *connector) addr() string { return strings.TrimPrefix(c.srv.URL, "http://") }

// destRankedFirst finds a destination whose first choice is addrs[0].
func destRankedFirst(addrs []string) string {
	for i := 0; ; i++ {
		dest := fmt.Sprintf("g.usd.acct%d", i)
		if ilpdest.Rank(dest, addrs, nil)[0] == 0 {
			return dest
		}
	}
}

// waitFor polls cond for up to 5 s: health state changes in the
// background, and this machine's timing is not to be relied on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
