package handler

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
	"github.com/ilp-edge/caddy-ilp/internal/redistest"
	"github.com/ilp-edge/caddy-ilp/store"
)

// The benchmarks compare ServeHTTP followed by a stand-in for
// reverse_proxy (read the body, write a Fulfill) against that stand-in
// alone: the difference is what ilp_edge itself costs per packet.

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

var benchFulfill = ilpdest.AppendFulfill(nil, ilptest.Fulfillment, nil)

var fastBackend = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
	_, _ = io.Copy(io.Discard, r.Body)
	_, err := w.Write(benchFulfill)
	return err
})

// benchRequest returns a function that resets one request for reuse, the
// way a server hands a fresh one to each call: new body, fresh headers,
// vars and replacer.
func benchRequest(body []byte, headers ...string) func() *http.Request {
	base := newRequest(http.MethodPost, body)
	rdr := bytes.NewReader(body)
	return func() *http.Request {
		rdr.Reset(body)
		r := base.Clone(context.WithValue(base.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
		caddyhttp.NewTestReplacer(r) // as the server does: vars and the http.* placeholders
		r.Body, r.ContentLength = io.NopCloser(rdr), int64(len(body))
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Set(headers[i], headers[i+1])
		}
		return r
	}
}

func benchServe(b *testing.B, e *Edge, next func() *http.Request) {
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		clear(w.h)
		if err := e.ServeHTTP(w, next(), fastBackend); err != nil {
			b.Fatal(err)
		}
	}
}

// reportCPU reports, when the returned func is called at the end of the
// loop, the process's CPU time (user and system, all threads) per
// iteration as cpu-ns/op: unlike ns/op, it holds on a busy machine, and
// counts the work an iteration leaves to other goroutines.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

func benchEdge(b *testing.B) *Edge { return benchEdgeWith(b, nil) }

// benchEdgeWith is testEdge for a benchmark: its provisioning line goes
// nowhere (a Caddy context without a config logs to os.Stderr, which go
// test interleaves with the results), and so does everything after.
func benchEdgeWith(b *testing.B, mod func(*Edge)) *Edge {
	stderr := os.Stderr
	if devNull, err := os.Open(os.DevNull); err == nil {
		os.Stderr = devNull
		defer func() { os.Stderr = stderr; devNull.Close() }()
	}
	e, _ := testEdge(b, mod)
	e.logger = zap.NewNop()
	return e
}

// BenchmarkBareNext is the baseline: request setup plus the stand-in.
func BenchmarkBareNext(b *testing.B) {
	next := benchRequest(prepareBytes("g.us.bank.alice", time.Hour), "Authorization", "Bearer "+aliceToken)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		_ = fastBackend.ServeHTTP(w, next())
	}
}

func BenchmarkServeHTTPTokenHeader(b *testing.B) {
	benchServe(b, benchEdge(b), benchRequest(prepareBytes("g.us.bank.alice", time.Hour),
		"Authorization", "Bearer "+aliceToken, "ILP-Destination", "g.us.bank.alice"))
}

func BenchmarkServeHTTPTokenOER(b *testing.B) {
	benchServe(b, benchEdge(b), benchRequest(prepareBytes("g.us.bank.alice", time.Hour),
		"Authorization", "Bearer "+aliceToken))
}

// BenchmarkServeHTTPTokenOERLimits is TokenOER with every limit on (and
// never reached): what a peer's in-process budgets cost per packet.
func BenchmarkServeHTTPTokenOERLimits(b *testing.B) {
	e := benchEdgeWith(b, func(e *Edge) {
		huge := &Budget{Limit: math.MaxUint64, Period: caddy.Duration(time.Second)}
		e.Limits = &Limits{MaxPacketAmount: math.MaxUint64, Rate: huge, Throughput: huge}
	})
	benchServe(b, e, benchRequest(prepareBytes("g.us.bank.alice", time.Hour), "Authorization", "Bearer "+aliceToken))
}

// BenchmarkServeHTTPTokenOERRouteMiss is TokenOER with
// route_miss_failover on and no route miss: what checking each reply for
// one costs when nothing is retried.
func BenchmarkServeHTTPTokenOERRouteMiss(b *testing.B) {
	e := benchEdgeWith(b, func(e *Edge) { e.RouteMiss = &RouteMiss{FleetAddresses: []string{"g.us.fleet"}} })
	benchServe(b, e, benchRequest(prepareBytes("g.us.bank.alice", time.Hour), "Authorization", "Bearer "+aliceToken))
}

func BenchmarkServeHTTPJWTCached(b *testing.B) {
	benchServe(b, benchEdge(b), benchRequest(prepareBytes("g.us.bank.alice", time.Hour),
		"Authorization", "Bearer "+ilptest.SignJWT("HS256", bobJWT, ilptest.PluginClaims(time.Hour)), "ILP-Peer-Name", "bob"))
}

// BenchmarkJWTFresh verifies a new token each time (no cache hit): the
// cost a peer pays once per token lifetime.
func BenchmarkJWTFresh(b *testing.B) {
	e := benchEdge(b)
	tok := ilptest.SignJWT("HS256", bobJWT, ilptest.PluginClaims(time.Hour))
	b.ReportAllocs()
	for b.Loop() {
		e.auth.jwtCache = newJWTCache(16)
		if p, err := e.auth.authenticateJWT(tok, "bob"); p == nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeadlineContext is the part of ServeHTTP's cost that gives the
// request a deadline at the packet's expiry, measured alone.
func BenchmarkDeadlineContext(b *testing.B) {
	r := newRequest(http.MethodPost, nil)
	expiry := time.Now().Add(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		var ctx expiryContext
		ctx.init(r.Context(), expiry)
		_ = r.WithContext(&ctx)
		ctx.cancel()
	}
}

// BenchmarkDeadlineContextStd is what BenchmarkDeadlineContext would cost
// with the standard library's context.WithDeadline: the comparison that
// keeps expiryContext (expiry.go) worth its code.
func BenchmarkDeadlineContextStd(b *testing.B) {
	r := newRequest(http.MethodPost, nil)
	expiry := time.Now().Add(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := context.WithDeadline(r.Context(), expiry)
		_ = r.WithContext(ctx)
		cancel()
	}
}

// BenchmarkServeHTTPTokenOERSharedStore is TokenOER on an edge with a
// shared store (a real redis-server) and no limits: the peer's CCP state
// is on Redis, which a payment packet never touches, so it must cost
// what TokenOER costs.
func BenchmarkServeHTTPTokenOERSharedStore(b *testing.B) {
	r := redistest.Start(b)
	e := benchEdgeWith(b, func(e *Edge) {
		e.Redis = &store.Config{Address: r.Addr, KeyPrefix: "bench:"}
		e.RoutingProtocol = RoutingFanout
	})
	benchServe(b, e, benchRequest(prepareBytes("g.us.bank.alice", time.Hour), "Authorization", "Bearer "+aliceToken))
}

// BenchmarkServeHTTPAsync is TokenOER for an asynchronous Prepare: the
// 202, the packet through the stand-in forwarder on the exchange's own
// goroutine, and its reply POSTed to a callback on loopback (an
// httptest server, whose cost is counted too), waited for before the
// next. Against TokenOER it is what answering by callback costs.
func BenchmarkServeHTTPAsync(b *testing.B) {
	done := make(chan struct{}, 1)
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		done <- struct{}{}
	}))
	defer cb.Close()
	e := benchEdgeWith(b, func(e *Edge) { e.Peers[0].Prefixes = []string{cb.URL + "/cb/"} })
	next := benchRequest(prepareBytes("g.us.bank.alice", time.Hour), "Authorization", "Bearer "+aliceToken,
		"Callback-Url", cb.URL+"/cb/")
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		clear(w.h)
		r := next()
		r.Header["Request-Id"] = []string{uuid.NewString()}
		if err := e.ServeHTTP(w, r, fastBackend); err != nil {
			b.Fatal(err)
		}
		<-done
	}
}
