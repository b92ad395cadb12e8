package egress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ilp-edge/caddy-ilp/async"
	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// This file bounds what asynchronous (RFC 35 draft 3) egress costs when a
// peer misbehaves: a peer that takes every Prepare and never replies, and
// a callback route hit with Request-Ids nobody waits for. Each must end
// with nothing left behind: no exchange still waiting, no goroutine, no
// live heap that grew with the number of packets.

// The sizes of the tests. boundsPackets packets after a
// warm-up of boundsWarmUp (for the steady state: the table of waiting
// exchanges grown to the concurrency, pools filled, every metric series
// made); the packets boundsInFlight at a time, each held to its expiry,
// boundsExpiry: 10,000 packets take about 10,000/250 × 100ms = 4s. Under
// the race detector, which makes each packet several times dearer, fewer
// and slower, or the 2 cores cannot send them before they expire (and
// allocations are not counted: its sync.Pool drops items at random).
var boundsPackets, boundsWarmUp, boundsInFlight, boundsExpiry = func() (int, int, int, time.Duration) {
	if raceEnabled() {
		return 1_000, 200, 50, 200 * time.Millisecond
	}
	return 10_000, 1_000, 250, 100 * time.Millisecond
}()

// boundsCallbacks is how many callbacks TestCallbackUnknownIDsBounded
// POSTs after its warm-up of boundsWarmUp.
var boundsCallbacks = func() int {
	if raceEnabled() {
		return 5_000
	}
	return 10_000
}()

// boundsHeapSlack is how much the live heap may grow over the warm-up's:
// about 50 bytes a packet or callback at 10,000, less than any
// per-packet leak costs (a waiting exchange left in async.Pending is
// about 370 bytes, a remembered Request-Id over 100, a goroutine's stack
// 2 KiB and more), and some ten times what it moves by between runs.
const boundsHeapSlack = 512 << 10

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// liveHeap is the heap's live bytes after two collections (the second
// empties what sync.Pools kept through the first).
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// stableGoroutines is how many goroutines run once the count has not
// changed for 100ms (the goroutines of closed connections ended), or
// after 5 seconds.
func stableGoroutines() int {
	n, same := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(5 * time.Second); same < 10 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		if m := runtime.NumGoroutine(); m == n {
			same++
		} else {
			n, same = m, 0
		}
	}
	return n
}

// settleGoroutines waits until at most want goroutines run, for the
// goroutines of closed connections to end, or 10 seconds; it returns how
// many run.
func settleGoroutines(want int) int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(10 * time.Second); n > want && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(10 * time.Millisecond)
	}
	return n
}

// silentPeer is a draft 3 peer that accepts every Prepare, 202, and
// never calls back. Unlike draft3Peer it keeps nothing of the requests,
// only their count, so that the test's heap is the edge's.
type silentPeer struct {
	srv      *httptest.Server
	prepares atomic.Int64 // with a valid Request-Id and a Callback-Url
	bad      atomic.Int64 // without
}

func startSilentPeer(t *testing.T) *silentPeer {
	p := new(silentPeer)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if _, err := async.ParseRequestID(r.Header.Get("Request-Id")); err != nil || r.Header.Get("Callback-Url") == "" {
			p.bad.Add(1)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		p.prepares.Add(1)
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// closeConns closes the idle connections between the egress and the
// peer, from both ends, so that their goroutines end.
func (p *silentPeer) closeConns(g *Egress) {
	g.closePeers()
	p.srv.CloseClientConnections()
}

// Answers of sendSilent: an R00 by the edge, after the peer's 202 while
// the egress waited for its callback, or before the peer's 202 came; or
// t01Stolen.
const (
	r00Waiting = "R00 waiting for the callback"
	r00Posting = "R00 before the peer's 202"
	// A T01 before the expiry, nothing sent: net/http's Transport put the
	// connection of another packet back in its pool as that packet's 202
	// (no body) came, handed it to this one, then closed it because the
	// other packet's deadline passed before it took its 202; this one's
	// RoundTrip fails with the other's context.DeadlineExceeded (compare
	// golang/go#70834). The egress tries again only while
	// async.RetrySchedule.Last (250ms) is left, more than these packets
	// ever have. Rare on an idle machine (none in 10,000 packets most
	// runs), up to 1% when 202s arrive late, near the expiry, on a busy
	// one. Not a matter of bounds: nothing is left behind.
	t01Stolen = "T01: another packet's deadline closed its connection"
)

// sendSilent sends n Prepares expiring after boundsExpiry through the
// setup to the egress, boundsInFlight at a time, and returns how many got
// each answer: r00Waiting, r00Posting, or what else. An R00 before the
// peer's 202 is a packet whose POST to the peer was not done by its
// expiry, on a loaded machine. A packet that expired before ilp_edge read
// it (R02) is the test's scheduling (each Prepare is made just before it
// goes, yet a goroutine may wait longer than the expiry for a core), not
// the egress's doing: it never reaches the egress, and another goes in its
// place; expiredEarly counts them.
func sendSilent(t *testing.T, s *asyncSetup, n int) (answers map[string]int, expiredEarly int) {
	var (
		next  atomic.Int64
		early atomic.Int64
		mu    sync.Mutex
		wg    sync.WaitGroup
	)
	answers = map[string]int{}
	for range boundsInFlight {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				var (
					res result
					rej ilpdest.Reject
					err error
				)
				for {
					res = send(t, s.edge, s.egress, "/peers/bob/", ilptest.Prepare("g.bob.alice", boundsExpiry))
					rej, err = ilpdest.ReadReject(res.w.Body.Bytes())
					if res.err != nil || err != nil || rej.Code.String() != "R02" || res.egressErr != nil {
						break
					}
					early.Add(1)
				}
				var answer string
				fe, _ := errors.AsType[*handler.ForwardError](res.egressErr)
				switch {
				case res.err != nil:
					answer = fmt.Sprintf("handler error %v", res.err)
				case res.w.Code != http.StatusOK || err != nil:
					answer = fmt.Sprintf("HTTP %d, not a Reject (%v)", res.w.Code, err)
				case rej.Code.String() == "T01" && rej.TriggeredBy == "test.edge" && fe != nil &&
					fe.Failure == handler.NotDelivered && errors.Is(fe.Err, context.DeadlineExceeded):
					answer = t01Stolen
				case rej.Code.String() != "R00" || rej.TriggeredBy != "test.edge":
					answer = fmt.Sprintf("%s by %q: %q (egress: %v)", rej.Code, rej.TriggeredBy, rej.Message, fe)
				case fe == nil:
					answer = fmt.Sprintf("R00, but the egress returned %v", res.egressErr)
				case errors.Is(fe, errNoReply):
					answer = r00Waiting
				default:
					answer = fmt.Sprintf("%s (%s)", r00Posting, fe.Failure)
				}
				mu.Lock()
				answers[answer]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return answers, int(early.Load())
}

// r00s is how many of answers are R00s or t01Stolen, and how many of the
// R00s waited for the callback.
func r00s(answers map[string]int) (all, waiting int) {
	for a, k := range answers {
		if a == r00Waiting || a == t01Stolen || strings.HasPrefix(a, r00Posting) {
			all += k
		}
	}
	return all, answers[r00Waiting]
}

// TestAsyncEgressNeverRepliesBounded: a peer that takes every Prepare and
// never replies costs nothing once the packets expired. Each of 10,000
// packets is R00 at its expiry; afterwards no exchange waits, the
// goroutines are the warm-up's, and the live heap is within
// boundsHeapSlack of the warm-up's.
func TestAsyncEgressNeverRepliesBounded(t *testing.T) {
	peer := startSilentPeer(t)
	s := asyncSetupTo(t, peer.srv.URL+"/ilp")
	pending := async.Pending.Len()
	failed := metricPackets.WithLabelValues("bob", "failed")

	// The warm-up, whose answers are checked as the rest's.
	answers, early := sendSilent(t, s, boundsWarmUp)
	if all, _ := r00s(answers); all != boundsWarmUp {
		t.Fatalf("warm-up: answers %v, want %d R00", answers, boundsWarmUp)
	}
	peer.closeConns(s.egress)
	goroutines0 := stableGoroutines()
	heap0 := liveHeap()
	sent0, failed0 := peer.prepares.Load(), testutil.ToFloat64(failed)

	n := boundsPackets
	start := time.Now()
	answers, early = sendSilent(t, s, n)
	elapsed := time.Since(start)
	all, waiting := r00s(answers)
	if all != n {
		t.Errorf("answers %v, want %d R00", answers, n)
	}
	// Packets must have waited for the callback, or the test did not
	// test that; how many did not (R00 before the 202) is the machine's
	// load: none on an idle one, 10% with two cores busy elsewhere, most
	// when the race detector cannot keep up.
	accepted := peer.prepares.Load() - sent0
	if waiting < n/10 || accepted < int64(waiting) || peer.bad.Load() != 0 {
		t.Errorf("%d packets waited for a callback and the peer accepted %d (refused %d as malformed), want at least a tenth of %d",
			waiting, accepted, peer.bad.Load(), n)
	}
	if got := testutil.ToFloat64(failed) - failed0; got != float64(n) {
		t.Errorf("caddy_ilp_egress_packets_total{bob,failed} went up by %v, want %d", got, n)
	}
	if got := async.Pending.Len(); got != pending {
		t.Errorf("%d exchanges waiting after every packet expired, want %d", got, pending)
	}

	peer.closeConns(s.egress)
	goroutines := settleGoroutines(goroutines0)
	heap := liveHeap()
	grew := int64(heap) - int64(heap0)
	t.Logf("%d packets in %v (%d in flight, %v expiry): %v; %d more expired before ilp_edge read them (R02); the peer accepted %d; live heap %d B after the warm-up, %d B after: %+d B, %+.1f B a packet; goroutines %d, then %d",
		n, elapsed.Round(time.Millisecond), boundsInFlight, boundsExpiry, answers, early, accepted, heap0, heap, grew, float64(grew)/float64(n), goroutines0, goroutines)
	if goroutines > goroutines0 {
		t.Errorf("%d goroutines after the packets, %d after the warm-up", goroutines, goroutines0)
	}
	if grew > boundsHeapSlack {
		t.Errorf("the live heap grew by %d B over %d packets (%.0f B a packet), want at most %d B", grew, n, float64(grew)/float64(n), boundsHeapSlack)
	}
}

// callbacksCounted is caddy_ilp_egress_callbacks_total{peer,outcome},
// which package async keeps to itself: read through a registry of its
// own.
func callbacksCounted(t *testing.T, peer string, outcome async.CallbackResult) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(async.Collectors()...)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "caddy_ilp_egress_callbacks_total" {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "peer" && l.GetValue() != peer || l.GetName() == "outcome" && l.GetValue() != string(outcome) {
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0 // no such series yet
}

// callbackRequest is bob's reply body for id as the callback route gets
// it from Caddy: with the vars and the replacer Caddy's server sets.
func callbackRequest(id async.RequestID, body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "http://edge.test/ilp/replies", bytes.NewReader(body))
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
	caddyhttp.NewTestReplacer(r)
	r.Header.Set("Request-Id", string(id))
	r.Header.Set("Authorization", "Bearer "+bobIn)
	r.Header.Set("Content-Type", "application/octet-stream")
	return r
}

// serveCallback has e answer r, and returns the status it answered.
func serveCallback(e *handler.Edge, r *http.Request) int {
	w := httptest.NewRecorder()
	err := e.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		panic("the replies route called the next handler")
	}))
	if he, ok := errors.AsType[caddyhttp.HandlerError](err); ok {
		return he.StatusCode
	}
	if err != nil {
		return http.StatusInternalServerError
	}
	return w.Code
}

// TestCallbackUnknownIDsBounded: 10,000 well-formed Fulfills POSTed to
// the callback route by bob, with his valid credential, each for a fresh
// random Request-Id, are each answered 400 and counted unknown; the
// exchanges that do wait are untouched, and the goroutines and the live
// heap are the warm-up's.
func TestCallbackUnknownIDsBounded(t *testing.T) {
	srv := startRepliesRoute(t)
	url := srv.URL + "/ilp/replies"
	fulfill := ilptest.Fulfill([]byte("from bob by callback"))
	// Three exchanges of bob's do wait, for ids the test never POSTs.
	var waits []*async.Waiting
	for range 3 {
		w := async.Pending.Register(t.Context(), nil, "bob", ilptest.Condition(), time.Now().Add(time.Minute))
		waits = append(waits, w)
		t.Cleanup(func() { async.Pending.Unregister(w) })
	}
	post := func(n int) (answers map[int]int) {
		answers = map[int]int{}
		for range n {
			answers[postReply(t, url, string(async.NewRequestID()), bobIn, fulfill)]++
		}
		return answers
	}

	if answers := post(boundsWarmUp); answers[http.StatusBadRequest] != boundsWarmUp {
		t.Fatalf("warm-up: answers %v, want %d 400", answers, boundsWarmUp)
	}
	http.DefaultClient.CloseIdleConnections()
	srv.CloseClientConnections()
	goroutines0 := stableGoroutines()
	heap0 := liveHeap()
	pending := async.Pending.Len()
	unknown0 := callbacksCounted(t, "bob", async.CallbackUnknown)
	delivered0 := callbacksCounted(t, "bob", async.CallbackDelivered)

	n := boundsCallbacks
	start := time.Now()
	answers := post(n)
	elapsed := time.Since(start)
	if answers[http.StatusBadRequest] != n {
		t.Errorf("answers %v, want %d 400", answers, n)
	}
	if got := callbacksCounted(t, "bob", async.CallbackUnknown) - unknown0; got != float64(n) {
		t.Errorf("caddy_ilp_egress_callbacks_total{bob,unknown} went up by %v, want %d", got, n)
	}
	if got := callbacksCounted(t, "bob", async.CallbackDelivered) - delivered0; got != 0 {
		t.Errorf("caddy_ilp_egress_callbacks_total{bob,delivered} went up by %v, want 0", got)
	}
	if got := async.Pending.Len(); got != pending {
		t.Errorf("%d exchanges waiting after the callbacks, %d before", got, pending)
	}
	for _, w := range waits {
		select {
		case a := <-w.Reply():
			t.Errorf("an exchange nobody replied to got %s %x", a.Result, a.Body)
		default:
		}
	}

	http.DefaultClient.CloseIdleConnections()
	srv.CloseClientConnections()
	goroutines := settleGoroutines(goroutines0)
	heap := liveHeap()
	grew := int64(heap) - int64(heap0)
	t.Logf("%d callbacks in %v; live heap %d B after the warm-up, %d B after: %+d B, %+.1f B a callback; goroutines %d, then %d",
		n, elapsed.Round(time.Millisecond), heap0, heap, grew, float64(grew)/float64(n), goroutines0, goroutines)
	if goroutines > goroutines0 {
		t.Errorf("%d goroutines after the callbacks, %d after the warm-up", goroutines, goroutines0)
	}
	if grew > boundsHeapSlack {
		t.Errorf("the live heap grew by %d B over %d callbacks (%.0f B a callback), want at most %d B", grew, n, float64(grew)/float64(n), boundsHeapSlack)
	}

	// What one callback allocates: over loopback HTTP (the client's and
	// the server's allocations, both in this process), and the route's
	// handler alone in process, less what making its request costs.
	if raceEnabled() {
		t.Log("allocations not measured under the race detector")
		return
	}
	overHTTP := testing.AllocsPerRun(1000, func() {
		postReply(t, url, string(async.NewRequestID()), bobIn, fulfill)
	})
	e := repliesEdge(t)
	var status int
	handlerAllocs := testing.AllocsPerRun(1000, func() {
		status = serveCallback(e, callbackRequest(async.NewRequestID(), fulfill))
	})
	harness := testing.AllocsPerRun(1000, func() {
		r := callbackRequest(async.NewRequestID(), fulfill)
		_ = httptest.NewRecorder()
		_ = r
	})
	t.Logf("allocations per unknown callback: %.0f over loopback HTTP (client and server), %.0f in process, of which %.0f making the request",
		overHTTP, handlerAllocs, harness)
	if status != http.StatusBadRequest {
		t.Errorf("in process: %d, want 400", status)
	}
	if overHTTP >= 200 || handlerAllocs-harness >= 50 {
		t.Errorf("%.0f allocations per callback over HTTP (want < 200), %.0f in the handler (want < 50)", overHTTP, handlerAllocs-harness)
	}
}

// BenchmarkCallbackUnknownID is the callback route, in process, answering
// a reply for a Request-Id nobody waits for: 400.
func BenchmarkCallbackUnknownID(b *testing.B) {
	e := repliesEdge(b)
	fulfill := ilptest.Fulfill([]byte("from bob by callback"))
	b.ReportAllocs()
	for b.Loop() {
		if st := serveCallback(e, callbackRequest(async.NewRequestID(), fulfill)); st != http.StatusBadRequest {
			b.Fatalf("%d, want 400", st)
		}
	}
}
