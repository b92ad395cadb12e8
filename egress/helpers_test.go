package egress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
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
// a running config log to, nowhere, and registers the ilp_peers app, which
// package caddyilp registers in a build.
func TestMain(m *testing.M) {
	caddy.RegisterModule(handler.PeersApp{})
	if err := caddy.Load([]byte(`{"admin":{"disabled":true},"logging":{"logs":{"default":{"writer":{"output":"discard"}}}}}`), true); err != nil {
		fmt.Fprintln(os.Stderr, "quieting Caddy's logs:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

const fleetToken = "fleet-static-token-0123456789"

// testEdge returns a provisioned ilp_edge whose one peer is the fleet.
func testEdge(t *testing.T) *handler.Edge {
	t.Helper()
	return provisioned(t, &handler.Edge{Address: "test.edge", Peers: []*handler.Peer{{Name: "fleet", Tokens: []string{fleetToken}}}})
}

// provisioned is e provisioned and validated, for the test's lifetime.
func provisioned(t testing.TB, e *handler.Edge) *handler.Edge {
	t.Helper()
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

// testEgress provisions an ilp_egress over the peers, as if the ilp_peers
// app held them.
func testEgress(t *testing.T, peers ...*handler.Peer) *Egress {
	t.Helper()
	g := new(Egress)
	ctx, cancel := caddy.NewContext(caddy.ActiveContext())
	t.Cleanup(cancel)
	if err := g.provision(ctx, peers); err != nil {
		t.Fatalf("provision: %v", err)
	}
	g.logger = zaptest.NewLogger(t)
	t.Cleanup(func() { g.Cleanup() })
	if err := g.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return g
}

// result is what one packet through ilp_edge and ilp_egress came to.
type result struct {
	w         *httptest.ResponseRecorder
	err       error // ilp_edge's
	egressErr error // what ilp_egress returned to ilp_edge

	egressRequestID string // {http.ilp.egress_request_id} after ilp_egress
}

// send passes one Prepare from the fleet, POSTed to path, through ilp_edge
// and g.
func send(t *testing.T, e *handler.Edge, g *Egress, path string, prepare []byte) result {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "http://edge.test"+path, bytes.NewReader(prepare))
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
	caddyhttp.NewTestReplacer(r)
	r.Header.Set("Authorization", "Bearer "+fleetToken)
	var res result
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		res.egressErr = g.ServeHTTP(w, r, nil)
		repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		res.egressRequestID, _ = repl.GetString("http.ilp.egress_request_id")
		return res.egressErr
	})
	res.w = httptest.NewRecorder()
	res.err = e.ServeHTTP(res.w, r, next)
	return res
}

// wantReject checks that ilp_edge answered with a Reject with code,
// triggered by the edge.
func (res result) wantReject(t *testing.T, code string) {
	t.Helper()
	if res.err != nil {
		t.Fatalf("handler error %v, want a %s Reject", res.err, code)
	}
	got, rerr := ilpdest.ReadReject(res.w.Body.Bytes())
	if res.w.Code != http.StatusOK || rerr != nil || got.Code.String() != code || got.TriggeredBy != "test.edge" {
		t.Fatalf("HTTP %d %x: code %v by %q (%v), want a %s Reject by test.edge (egress: %v)",
			res.w.Code, res.w.Body.Bytes(), got.Code, got.TriggeredBy, rerr, code, res.egressErr)
	}
}

// wantFailure checks that ilp_egress reported failure f.
func (res result) wantFailure(t *testing.T, f handler.Failure) {
	t.Helper()
	fe, ok := errors.AsType[*handler.ForwardError](res.egressErr)
	if !ok || fe.Failure != f {
		t.Fatalf("ilp_egress returned %v, want a %q failure", res.egressErr, f)
	}
}

// seen is one request a test peer got.
type seen struct {
	path, proto, auth, dest, contentType, cert string
	body                                       []byte
}

// testPeer is a peer's ILP-over-HTTP endpoint on loopback: it records
// each request and answers with answer (default: a Fulfill).
type testPeer struct {
	srv    *httptest.Server
	count  atomic.Int32 // requests
	conns  atomic.Int32 // connections accepted
	mu     sync.Mutex
	seen   []seen
	answer func(w http.ResponseWriter, r *http.Request) // under mu
}

func newTestPeer(answer func(w http.ResponseWriter, r *http.Request)) *testPeer {
	p := &testPeer{answer: answer}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s := seen{path: r.URL.Path, proto: r.Proto, auth: r.Header.Get("Authorization"), dest: r.Header.Get("ILP-Destination"),
			contentType: r.Header.Get("Content-Type"), body: body}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			s.cert = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		p.count.Add(1)
		p.mu.Lock()
		p.seen = append(p.seen, s)
		answer := p.answer
		p.mu.Unlock()
		if answer != nil {
			answer(w, r)
			return
		}
		w.Write(ilptest.Fulfill([]byte("bob")))
	}))
	p.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			p.conns.Add(1)
		}
	}
	return p
}

// startTestPeer starts a plain-HTTP test peer.
func startTestPeer(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *testPeer {
	p := newTestPeer(answer)
	p.srv.Start()
	t.Cleanup(p.srv.Close)
	return p
}

// setAnswer changes how the peer answers.
func (p *testPeer) setAnswer(answer func(w http.ResponseWriter, r *http.Request)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answer = answer
}

func (p *testPeer) last(t *testing.T) seen {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.seen) == 0 {
		t.Fatal("the peer got no request")
	}
	return p.seen[len(p.seen)-1]
}

// bob is a peer of the ilp_peers app with an egress url.
func bob(url string) *handler.Peer {
	return &handler.Peer{Name: "bob", Tokens: []string{"bob-in"}, EgressURL: url, CallbackToken: "edge-to-bob"}
}

var ttl = time.Minute
