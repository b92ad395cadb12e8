package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/async"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

const testCallbackAuth = "Bearer test-callback-token"

var testFulfill = ilptest.Fulfill([]byte("bench"))

func startTestReceiver(t *testing.T) *callbackReceiver {
	t.Helper()
	r, err := startCallbackReceiver(fmt.Sprintf("127.0.0.1:%d", freePort()), testCallbackAuth, len(testFulfill))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	return r
}

// postCallback POSTs one reply to r as the edge does, on a connection of
// its own.
func postCallback(t *testing.T, r *callbackReceiver, id, auth string, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.url, bytes.NewReader(body))
	req.Header.Set("Request-Id", id)
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Authorization", auth)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// TestCallbackReceiverExactlyOnce checks the receiver's accounting: each
// accepted Request-Id must get one reply; a second one, none, one for an
// id never accepted, and one that is not the edge's (its credential, the
// Fulfill) each count, and the connections are counted.
func TestCallbackReceiverExactlyOnce(t *testing.T) {
	r := startTestReceiver(t)
	const (
		once      = "0b5c3a4e-8a0f-4c1e-9d2b-3f6a7e8d9c01"
		twice     = "0b5c3a4e-8a0f-4c1e-9d2b-3f6a7e8d9c02"
		never     = "0b5c3a4e-8a0f-4c1e-9d2b-3f6a7e8d9c03"
		stranger  = "0b5c3a4e-8a0f-4c1e-9d2b-3f6a7e8d9c04"
		wrongAuth = "0b5c3a4e-8a0f-4c1e-9d2b-3f6a7e8d9c05"
		reject    = "0b5c3a4e-8a0f-4c1e-9d2b-3f6a7e8d9c06"
	)
	for _, id := range []string{twice, never, wrongAuth, reject} {
		r.accept(id)
	}
	// A reply may come before its 202 is seen: accepted afterwards, it counts.
	if got := postCallback(t, r, once, testCallbackAuth, testFulfill); got != http.StatusOK {
		t.Errorf("a well-formed reply: HTTP %d, want 200", got)
	}
	for range 2 {
		postCallback(t, r, twice, testCallbackAuth, testFulfill)
	}
	postCallback(t, r, stranger, testCallbackAuth, testFulfill)
	if got := postCallback(t, r, wrongAuth, "Bearer someone-else", testFulfill); got != http.StatusBadRequest {
		t.Errorf("a reply without the edge's credential: HTTP %d, want 400", got)
	}
	postCallback(t, r, reject, testCallbackAuth, ilptest.Reject("F02", "g.bench.edge", "no"))
	r.accept(once)
	r.accept(once) // twice: still one Prepare

	if r.waitAll(context.Background(), 50*time.Millisecond) {
		t.Error("waitAll: every accepted Prepare answered, but one never was")
	}
	got := r.tally()
	got.closed = 0 // when the test's client lets its connections go is its own affair
	want := callbackTally{accepted: 5, replies: 6, missing: 1, duplicates: 1, unexpected: 1, malformed: 2, conns: 6}
	if got != want {
		t.Errorf("tally %+v, want %+v", got, want)
	}
	if got.failures() != 5 {
		t.Errorf("%d failures, want 5", got.failures())
	}

	r = startTestReceiver(t)
	r.accept(once)
	postCallback(t, r, once, testCallbackAuth, testFulfill)
	if !r.waitAll(context.Background(), time.Second) {
		t.Error("waitAll: the one accepted Prepare has its reply")
	}
	if got := r.tally(); got.failures() != 0 || got.replies != 1 || got.conns != 1 {
		t.Errorf("exactly once: tally %+v, want one reply on one connection and no failure", got)
	}
}

// fakeEdge answers as ilp_edge does in mode auto, on loopback: a Prepare
// with a Request-Id gets 202 and its Fulfill POSTed to the Callback-Url
// (twice for the dupe-th), one without gets the Fulfill in the 200. It
// refuses a Request-Id that is not a version 4 UUID or that it saw before.
type fakeEdge struct {
	url  string
	dupe int

	mu   sync.Mutex
	seen map[async.RequestID]bool
	wg   sync.WaitGroup
}

func startFakeEdge(t *testing.T, dupe int) *fakeEdge {
	t.Helper()
	e := &fakeEdge{dupe: dupe, seen: map[async.RequestID]bool{}}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", freePort()))
	if err != nil {
		t.Fatal(err)
	}
	e.url = "http://" + ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(e.serveHTTP)}
	go srv.Serve(ln)
	t.Cleanup(func() { e.wg.Wait(); srv.Close() })
	return e
}

func (e *fakeEdge) serveHTTP(w http.ResponseWriter, r *http.Request) {
	io.ReadAll(r.Body)
	header := r.Header.Get("Request-Id")
	if header == "" {
		w.Write(testFulfill)
		return
	}
	id, err := async.ParseRequestID(header)
	e.mu.Lock()
	fresh := err == nil && !e.seen[id]
	e.seen[id] = true
	n := len(e.seen)
	e.mu.Unlock()
	if !fresh {
		w.WriteHeader(http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusAccepted)
	copies := 1
	if n == e.dupe {
		copies = 2
	}
	e.wg.Go(func() {
		for range copies {
			req, _ := http.NewRequest(http.MethodPost, r.Header.Get("Callback-Url"), bytes.NewReader(testFulfill))
			req.Header.Set("Request-Id", string(id))
			req.Header.Set("Content-Type", "application/octet-stream")
			req.Header.Set("Authorization", testCallbackAuth)
			if res, err := http.DefaultClient.Do(req); err == nil {
				res.Body.Close()
			}
		}
	})
}

// TestGoLoadAsync sends bounded asynchronous loads through a fake edge:
// every Prepare carries a fresh version 4 Request-Id (the edge refuses a
// repeated one, which would show as failures), every 202 is accepted at
// the receiver, and a duplicated reply is caught.
func TestGoLoadAsync(t *testing.T) {
	for _, dupe := range []int{0, 7} {
		e, recv := startFakeEdge(t, dupe), startTestReceiver(t)
		r := runGoLoad(context.Background(), goLoad{url: e.url, body: []byte("prepare"), conns: 4, duration: 5 * time.Second,
			limit: 50, async: recv})
		if r.sent != 50 || r.ok != 50 || r.failed != 0 {
			t.Fatalf("dupe %d: %d sent, %d accepted, %d failed (%s); want 50 accepted", dupe, r.sent, r.ok, r.failed, r.failure)
		}
		if !recv.waitAll(context.Background(), 5*time.Second) {
			t.Fatalf("dupe %d: replies missing: %v", dupe, recv.tally())
		}
		e.wg.Wait()
		got := recv.tally()
		if got.accepted != 50 || got.missing != 0 || got.unexpected != 0 || got.malformed != 0 {
			t.Errorf("dupe %d: tally %v, want 50 accepted, each answered", dupe, got)
		}
		if want := min(int64(dupe), 1); got.duplicates != want || got.failures() != want {
			t.Errorf("dupe %d: %d duplicates, %d failures; want %d", dupe, got.duplicates, got.failures(), want)
		}
		if r.p50 <= 0 || r.p99 < r.p50 {
			t.Errorf("dupe %d: latency p50 %v, p99 %v", dupe, r.p50, r.p99)
		}
	}
}

// TestGoLoadSync checks the synchronous side: a 200 with the Fulfill is
// wanted, anything else fails.
func TestGoLoadSync(t *testing.T) {
	e := startFakeEdge(t, 0)
	load := goLoad{url: e.url, body: []byte("prepare"), conns: 2, duration: 5 * time.Second, limit: 20, fulfillSize: len(testFulfill)}
	if r := runGoLoad(context.Background(), load); r.ok != 20 || r.failed != 0 {
		t.Errorf("%d answered, %d failed (%s); want 20 Fulfills", r.ok, r.failed, r.failure)
	}
	load.fulfillSize++ // another size than the edge's: not the stub's Fulfill
	if r := runGoLoad(context.Background(), load); r.ok != 0 || r.failed != 20 {
		t.Errorf("wrong Fulfills: %d answered, %d failed; want 20 failed", r.ok, r.failed)
	}
}

// TestGoLoadRate checks that a fixed rate is not exceeded: 4 connections
// at 200/s for 300 ms send at most 60 Prepares, plus one per connection
// for the turn each starts with.
func TestGoLoadRate(t *testing.T) {
	e := startFakeEdge(t, 0)
	r := runGoLoad(context.Background(), goLoad{url: e.url, body: []byte("prepare"), conns: 4, rate: 200,
		duration: 300 * time.Millisecond, fulfillSize: len(testFulfill)})
	if r.sent > 64 || r.sent < 10 || r.failed != 0 {
		t.Errorf("%d sent, %d failed at 200/s for 300 ms; want about 60", r.sent, r.failed)
	}
	if got := goLoadLimit(200, time.Second, 4); got != 204 {
		t.Errorf("goLoadLimit(200/s, 1s, 4 conns) = %d, want 204", got)
	}
}

func TestAsyncSection(t *testing.T) {
	run := func(cpu, p99ms float64, cb callbackTally) exchangeRun {
		return exchangeRun{sample{packets: 1000, pps: 5000, proxyCPU: cpu, proxySys: cpu / 2, stubCPU: 10,
			p50: time.Millisecond, p99: time.Duration(p99ms * float64(time.Millisecond)), peakMB: 40}, cb}
	}
	ok := callbackTally{accepted: 1000, replies: 1000, conns: 3}
	a := &asyncResults{
		rate:      5000,
		peak:      []exchangeRun{run(30, 4, callbackTally{})},
		asyncPeak: []exchangeRun{run(45, 1.5, ok)},
		sync:      []exchangeRun{run(40, 2, callbackTally{}), run(44, 2.5, callbackTally{})},
		async:     []exchangeRun{run(50, 2.2, ok), run(60, 3, ok)},
	}
	text := asyncSection(a)
	for _, want := range []string{
		"## Asynchronous exchanges (RFC 35 draft 3)",
		"| synchronous at half the lower peak | 5000 | 5000 | **40.0** (40.0–44.0) |",
		"| asynchronous, the next Prepare at each reply by callback (its peak; latency of the 202) | — | 5000 | **45.0** (45.0–45.0) |",
		"| asynchronous at half the lower peak: the 202, then the reply by callback | 5000 | 5000 | **50.0** (50.0–60.0) | 25.0 | 1.00 | 2.20 | 40 | 3 (0 closed) | 0 |",
		"| **1.25×** (50.0 against 40.0 µs) | met |",
		"| **+0.20 ms** (2.20 against 2.00 ms) | met |",
		"3000 Prepares accepted (202), 3000 replies received; 0 missing, 0 duplicated",
		"9 connections",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("section lacks %q:\n%s", want, text)
		}
	}

	// Over the targets, and a duplicated reply: the row shows the failure.
	a.async = []exchangeRun{run(70, 3.5, callbackTally{accepted: 1000, replies: 1001, duplicates: 1, conns: 3})}
	text = asyncSection(a)
	for _, want := range []string{
		"| **1.75×** (70.0 against 40.0 µs) | not met |",
		"| **+1.50 ms** (3.50 against 2.00 ms) | not met |",
		"| 3 (0 closed) | 1 |\n",
		"1 duplicated",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("section lacks %q:\n%s", want, text)
		}
	}
	if a.failures() != 1 {
		t.Errorf("%d failures, want the duplicate", a.failures())
	}
	if verdict(true, math.NaN()) != "not measured" {
		t.Error("a NaN ratio is a verdict")
	}
}
