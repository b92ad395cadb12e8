package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestEgressCount checks how a run is judged from both ends.
func TestEgressCount(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    goLoadResult
		d    peerStats
		want egressTally
	}{
		{"every Prepare once, every Fulfill back", goLoadResult{sent: 100, ok: 100},
			peerStats{Prepares: 100, IDs: 100, Replies: 100},
			egressTally{sent: 100, fulfilled: 100, prepares: 100, ids: 100, replies: 100}},
		{"lost at the connector", goLoadResult{sent: 100, ok: 97, failed: 3}, peerStats{Prepares: 100},
			egressTally{sent: 100, fulfilled: 97, prepares: 100, lost: 3}},
		// A Prepare sent again with its Request-Id, say after a lost 202.
		{"twice at the peer", goLoadResult{sent: 100, ok: 100}, peerStats{Prepares: 101, IDs: 100, Replies: 100},
			egressTally{sent: 100, fulfilled: 100, prepares: 101, ids: 100, replies: 100, duplicated: 1}},
		{"a reply taken twice", goLoadResult{sent: 100, ok: 100}, peerStats{Prepares: 100, IDs: 100, Replies: 101},
			egressTally{sent: 100, fulfilled: 100, prepares: 100, ids: 100, replies: 101, duplicated: 1}},
		{"Fulfills the peer never made, replies refused", goLoadResult{sent: 100, ok: 100},
			peerStats{Prepares: 98, Refused: 1, Rejected: 2},
			egressTally{sent: 100, fulfilled: 100, prepares: 98, unexpected: 5}},
	} {
		if got := egressCount(tc.r, tc.d); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if n := (egressTally{lost: 1, duplicated: 2, unexpected: 3}).failures(); n != 6 {
		t.Errorf("failures %d, want 6", n)
	}
	d := peerStats{Prepares: 150, IDs: 150, Replies: 149, Conns: 33, InFlight: 1}.minus(peerStats{Prepares: 50, IDs: 50, Replies: 50, Conns: 30})
	if d.Prepares != 100 || d.IDs != 100 || d.Replies != 99 || d.Conns != 33 || d.InFlight != 1 {
		t.Errorf("minus: %+v: want the counts' difference, the connections and in-flight as they are", d)
	}
}

// TestEgressSection checks the report's figures: medians, and the ratios
// against the direct path, of all three processes and of the fleet's side.
func TestEgressSection(t *testing.T) {
	run := func(connector, edge, peer float64, p99ms float64) egressRun {
		ok := egressTally{sent: 1000, fulfilled: 1000, prepares: 1000}
		return egressRun{sample: sample{packets: 1000, pps: 2000, proxyCPU: edge, proxySys: edge / 2, stubCPU: peer,
			p50: time.Millisecond / 2, p99: time.Duration(p99ms * float64(time.Millisecond)), peakMB: 60},
			connectorCPU: connector, tally: ok, peerConns: 10, peerClosed: 1}
	}
	direct := run(100, math.NaN(), 80, 1)
	direct.peakMB = 0
	async := run(150, 300, 200, 4)
	async.callbackConns, async.tally.ids, async.tally.replies = 20, 1000, 1000
	e := &egressResults{
		rate:      2000,
		syncPeak:  []egressRun{run(60, 120, 50, 20)},
		asyncPeak: []egressRun{run(70, 180, 110, 25)},
		direct:    []egressRun{direct, run(110, math.NaN(), 90, 1.2)},
		sync:      []egressRun{run(200, 250, 120, 3), run(220, 270, 130, 3)},
		async:     []egressRun{async},
	}
	if got := direct.totalCPU(); got != 180 {
		t.Errorf("direct: all three %.1f µs, want the connector's and the peer's, 180", got)
	}
	text := egressSection(e)
	for _, want := range []string{
		"## The fleet's way out: `ilp_egress`",
		// Direct: no edge, and so no edge connections or memory.
		// Of two rounds, the median is the lower (nearest rank, as elsewhere
		// in the report). Direct: no edge, and so no edge connections or memory.
		"| (a) direct to the synchronous peer, at half the lower peak | 2000 | 2000 | 100.0 | — | — | 80.0 | 180.0 | 0.50 | 1.00 | — | — | — | 0 |",
		"| (b) through `ilp_egress` to the synchronous peer, at half the lower peak | 2000 | 2000 | 200.0 | **250.0** (250.0–270.0) | 125.0 | 120.0 | 570.0 | 0.50 | 3.00 | 60 | 10 (1) | — | 0 |",
		"| 20 (0) | 0 |",
		// All three: 570 / 180; the fleet's side: (200 + 250) / 100.
		"| (b) synchronous peer | **250.0** | **3.17×** (570.0 against 180.0 µs: +390.0) | 4.50× (450.0 against 100.0 µs) | +2.00 |",
		"| (c) draft 3 peer | **300.0** | **3.61×** (650.0 against 180.0 µs: +470.0) | 4.50× (450.0 against 100.0 µs) | +3.00 |",
		"the connector sent 7000 Prepares and got 7000 Fulfills; the peer got 7000 Prepares (1000 distinct `Request-Id`s",
		"0 lost", "0 duplicated", "0 unexpected",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("section lacks %q:\n%s", want, text)
		}
	}
	if e.failures() != 0 || e.empty() {
		t.Errorf("failures %d, empty %v: want neither", e.failures(), e.empty())
	}
	e.async[0].tally.lost = 2
	if e.failures() != 2 || !strings.Contains(egressSection(e), "2 lost") {
		t.Errorf("failures %d: want the 2 lost, in the section too", e.failures())
	}
}

// TestEgressCaddyfile checks that only the draft 3 peer gets mode async,
// the egress' callback_url and the replies route.
func TestEgressCaddyfile(t *testing.T) {
	sync := egressCaddyfile("127.0.0.1:1", 2, 3, egressSync, "http://127.0.0.1:4/ilp")
	async := egressCaddyfile("127.0.0.1:1", 2, 3, egressAsync, "http://127.0.0.1:4/ilp")
	for _, want := range []string{"peer syncpeer {", "url http://127.0.0.1:4/ilp", "token " + benchToken, "ilp_egress\n"} {
		if !strings.Contains(sync, want) {
			t.Errorf("synchronous peer's Caddyfile lacks %q:\n%s", want, sync)
		}
	}
	if strings.Contains(sync, "replies") || strings.Contains(sync, "mode async") {
		t.Errorf("synchronous peer's Caddyfile has the draft 3 parts:\n%s", sync)
	}
	for _, want := range []string{"peer asyncpeer {", "mode async", "callback_url http://127.0.0.1:4/callbacks",
		"callback_url http://127.0.0.1:3/ilp/replies", ":3 {", "peers asyncpeer", "replies"} {
		if !strings.Contains(async, want) {
			t.Errorf("draft 3 peer's Caddyfile lacks %q:\n%s", want, async)
		}
	}
	if strings.Count(async, "{") != strings.Count(async, "}") {
		t.Errorf("unbalanced braces:\n%s", async)
	}
}

// TestEgressPeer runs the peer in process: synchronous, it answers the
// Fulfill; as a draft 3 receiver, 202 and the Fulfill by callback with
// the Request-Id and its credential, once even for a replayed Request-Id;
// a request without the credential, or without a Prepare, is refused.
func TestEgressPeer(t *testing.T) {
	fulfill := ilptest.Fulfill([]byte("peer"))
	prepare := ilptest.Prepare("g.bench.alice", time.Minute)
	post := func(url, auth string, body []byte, h ...string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Authorization", auth)
		for i := 0; i < len(h); i += 2 {
			req.Header.Set(h[i], h[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	start := func(async bool) (*egressPeer, string) {
		p := newEgressPeer("Bearer edge", "Bearer peer", fulfill, async)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go p.serve(ln)
		t.Cleanup(func() { p.srv.Close() })
		return p, "http://" + ln.Addr().String() + "/ilp"
	}

	p, url := start(false)
	if status, body := post(url, "Bearer edge", prepare); status != http.StatusOK || !bytes.Equal(body, fulfill) {
		t.Errorf("synchronous: %d %x, want 200 and the Fulfill", status, body)
	}
	if status, _ := post(url, "Bearer someone", prepare); status != http.StatusUnauthorized {
		t.Errorf("another credential: %d, want 401", status)
	}
	if status, _ := post(url, "Bearer edge", []byte("not ILP")); status != http.StatusBadRequest {
		t.Errorf("not a Prepare: %d, want 400", status)
	}
	if s := p.stats(); s.Prepares != 1 || s.Refused != 2 || s.Conns == 0 {
		t.Errorf("synchronous: %+v, want 1 Prepare, 2 refused", s)
	}

	var mu sync.Mutex
	var calls []string
	edge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		calls = append(calls, fmt.Sprintf("%s %s %s %s %x", r.URL.Path, r.Header.Get("Request-Id"),
			r.Header.Get("Authorization"), r.Header.Get("Content-Type"), body))
		mu.Unlock()
		if r.Header.Get("Request-Id") == "refuse-me" {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer edge.Close()
	p, url = start(true)
	const id = "0b5c3a4e-8a0f-4c1e-9d2b-3f6a7e8d9c01"
	for range 2 { // the second a replay
		if status, body := post(url, "Bearer edge", prepare, "Request-Id", id, "Callback-Url", edge.URL+"/replies"); status != http.StatusAccepted || len(body) != 0 {
			t.Errorf("draft 3: %d %q, want 202 and no body", status, body)
		}
	}
	post(url, "Bearer edge", prepare, "Request-Id", "refuse-me", "Callback-Url", edge.URL+"/replies")
	if status, _ := post(url, "Bearer edge", prepare, "Request-Id", id); status != http.StatusBadRequest {
		t.Errorf("no Callback-Url: %d, want 400", status)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.stats().InFlight > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	s := p.stats()
	want := peerStats{Prepares: 3, IDs: 2, Refused: 1, Replies: 1, Rejected: 1, Conns: s.Conns, Closed: s.Closed,
		CallbackConns: s.CallbackConns, CallbackClosed: s.CallbackClosed}
	if s != want || s.CallbackConns == 0 {
		t.Errorf("draft 3: %+v, want %+v", s, want)
	}
	mu.Lock()
	defer mu.Unlock()
	wantCall := fmt.Sprintf("/replies %s Bearer peer application/octet-stream %x", id, fulfill)
	if len(calls) != 2 || (calls[0] != wantCall && calls[1] != wantCall) {
		t.Errorf("callbacks %q, want one %q and the refused one", calls, wantCall)
	}
}
