package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/integration/internal/testpki"
)

// TestWorkloadIDs checks that -workloads' help lists every workload, in
// order.
func TestWorkloadIDs(t *testing.T) {
	b := &bench{prepares: makePrepares([32]byte{})}
	var ids []string
	for _, wl := range b.workloads(options{rate: 7000, newConnRate: 1000, peersRate: 2000}) {
		ids = append(ids, wl.id)
	}
	if got, want := strings.Join(ids, ","), workloadIDs(); got != want {
		t.Errorf("workloads %s, workloadIDs() %s", got, want)
	}
}

func TestWantALPN(t *testing.T) {
	if got := wantALPN(workload{h2: true, tls: true}); got != "h2" {
		t.Errorf("h2 over TLS: %q", got)
	}
	if got := wantALPN(workload{tls: true}); got != "http/1.1" {
		t.Errorf("HTTP/1.1 over TLS: %q", got)
	}
}

func TestCheaperOf(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		nginx, haproxy float64
		want           float64
		whose          string
	}{
		{20, 22, 20, "nginx"},
		{22, 20, 20, "HAProxy"},
		{20, 20, 20, "nginx"},
		{nan, 22, 22, "HAProxy"},
		{20, nan, 20, "nginx"},
	} {
		if got, whose := cheaperOf(tc.nginx, tc.haproxy); got != tc.want || whose != tc.whose {
			t.Errorf("cheaperOf(%v, %v) = %v, %s; want %v, %s", tc.nginx, tc.haproxy, got, whose, tc.want, tc.whose)
		}
	}
	if got, whose := cheaperOf(nan, nan); !math.IsNaN(got) || whose != "" {
		t.Errorf("neither ran: %v, %q", got, whose)
	}
}

func TestCheaperSection(t *testing.T) {
	wls := []workload{{name: "a"}, {name: "b"}, {name: "c"}}
	sums := map[string]summary{
		idFront + "/a": {proxyCPU: 30, p50: 1, p99: 2, peakMB: 70, proxySwitches: 0.5}, idNginx + "/a": {proxyCPU: 25},
		idHAProxy + "/a": {proxyCPU: 20, failures: 1, proxySwitches: 0.25},
		idFront + "/b":   {proxyCPU: 30}, // alone: no row
		idNginx + "/c":   {proxyCPU: 20}, // no front door: no row
	}
	got := cheaperSection(wls, sums)
	if !strings.Contains(got, "| a | 30.0 | 25.0 | 20.0 | **1.50×** (HAProxy) | 1.00 / 2.00 |") || !strings.Contains(got, "| 0.50 / 0.00 / 0.25 | 70 / 0 / 0 | 1 |") {
		t.Errorf("row a wrong:\n%s", got)
	}
	if strings.Contains(got, "| b |") || strings.Contains(got, "| c |") {
		t.Errorf("a row without the front door or either other:\n%s", got)
	}
	if cheaperSection(wls[1:], sums) != "" {
		t.Error("a section without rows")
	}
}

func TestConnectionsNote(t *testing.T) {
	cs := []contender{{id: idNginx, label: "nginx"}, {id: idFront, label: "front door"}}
	wl := workload{name: "w", goClient: true, newConn: true, tls: true}
	results := map[string][]sample{
		idNginx + "/w": {{packets: 100, conns: 100, resumed: 99}, {packets: 90, conns: 90, resumed: 90}, {packets: 80, conns: 80, resumed: 80}},
		idFront + "/w": {{packets: 100, conns: 100, resumed: 0}},
	}
	got := connectionsNote(cs, wl, results)
	for _, want := range []string{"nginx: 90 for 90 packets, 90 resumed (100.0%)", "front door: 100 for 100 packets, 0 resumed (0.0%)"} {
		if !strings.Contains(got, want) {
			t.Errorf("note %q lacks %q", got, want)
		}
	}
	if connectionsNote(cs, workload{name: "w"}, results) != "" {
		t.Error("a note for h2load's rows")
	}
}

func TestFilesNeeded(t *testing.T) {
	if got := filesNeeded([]workload{{conns: 32}, {conns: 8}}); got > usualFileLimit {
		t.Errorf("the ordinary rows need %d files, above the usual limit", got)
	}
	if got := filesNeeded([]workload{{conns: 32}, {conns: manyPeers}}); got < 2*manyPeers {
		t.Errorf("1,000 peers need %d files, want at least one per connection at each end", got)
	}
	if err := ensureFileLimit([]workload{{conns: 32}}); err != nil {
		t.Error(err)
	}
}

// testServer answers every POST with testFulfill, over TLS with the
// bench's kind of certificate when b is given, and counts connections,
// requests sent with Connection: close and resumed TLS sessions.
type testServer struct {
	url                         string
	conns, closing, resumed, ok atomic.Int64
}

func startTestServer(t *testing.T, b *bench) *testServer {
	t.Helper()
	s := &testServer{}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", freePort()))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.ReadAll(r.Body)
			if r.Close {
				s.closing.Add(1)
			}
			if r.TLS != nil && r.TLS.DidResume {
				s.resumed.Add(1)
			}
			s.ok.Add(1)
			w.Write(testFulfill)
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		},
	}
	s.url = "http://" + ln.Addr().String()
	if b != nil {
		cert, err := tls.LoadX509KeyPair(b.certFile, b.keyFile)
		if err != nil {
			t.Fatal(err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
		s.url = "https://" + strings.TrimPrefix(s.url, "http://")
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// TestGoLoadNewConnTLS sends Prepares each on a connection of its own
// over TLS: one connection per Prepare, each sent with Connection: close,
// and all but the senders' first handshakes resuming a session.
func TestGoLoadNewConnTLS(t *testing.T) {
	dir := t.TempDir()
	b := &bench{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	if _, err := testpki.ServerCert(b.certFile, b.keyFile, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	s := startTestServer(t, b)
	cfg, err := b.clientTLS(s.url)
	if err != nil {
		t.Fatal(err)
	}
	var counter connCounter
	const senders, n = 4, 40
	r := runGoLoad(context.Background(), goLoad{url: s.url, body: []byte("prepare"), conns: senders, duration: 5 * time.Second,
		limit: n, fulfillSize: len(testFulfill), newConn: true, tls: cfg, counter: &counter})
	if r.ok != n || r.failed != 0 {
		t.Fatalf("%d answered, %d failed (%s); want %d", r.ok, r.failed, r.failure, n)
	}
	conns, resumed := counter.counts()
	if conns != n || s.conns.Load() != n || s.closing.Load() != n {
		t.Errorf("%d connections (server: %d, %d requests with Connection: close); want %d", conns, s.conns.Load(), s.closing.Load(), n)
	}
	if resumed < n-senders || resumed != s.resumed.Load() {
		t.Errorf("%d handshakes resumed (server: %d); want at least %d", resumed, s.resumed.Load(), n-senders)
	}
	if got := counter.negotiated(); got != "TLS 1.3, TLS_AES_128_GCM_SHA256, X25519" {
		t.Errorf("negotiated %q", got)
	}
}

// TestKeptClients checks that the peers' connections outlive a run: two
// runs over the same clients open each connection once.
func TestKeptClients(t *testing.T) {
	s := startTestServer(t, nil)
	var counter connCounter
	load := goLoad{url: s.url, body: []byte("prepare"), conns: 5, duration: 5 * time.Second, limit: 20,
		fulfillSize: len(testFulfill), counter: &counter}
	load.clients = keptClients(load)
	defer closeClients(load.clients)
	for run := range 2 {
		if r := runGoLoad(context.Background(), load); r.ok != 20 || r.failed != 0 {
			t.Fatalf("run %d: %d answered, %d failed (%s)", run, r.ok, r.failed, r.failure)
		}
	}
	if conns, _ := counter.counts(); conns != 5 || s.conns.Load() != 5 || s.closing.Load() != 0 {
		t.Errorf("%d connections opened (server: %d, %d closing); want 5, kept", conns, s.conns.Load(), s.closing.Load())
	}
}

// TestGoRowResult checks that the warm-up's failures count, and that
// every Prepare is either answered or failed.
func TestGoRowResult(t *testing.T) {
	w := goLoadResult{sent: 10, ok: 9, failed: 1, failure: "warm"}
	r := goLoadResult{sent: 100, ok: 100, elapsed: time.Second, p50: time.Millisecond, p99: 2 * time.Millisecond}
	got := goRowResult(w, r, 100, 98, "TLS 1.3")
	if got.failed != 1 || got.done != 100 || got.ok != 100 || got.failure != "warm" || !got.checked || got.rate != 100 {
		t.Errorf("got %+v", got)
	}
	if got.conns != 100 || got.resumed != 98 || got.tls != "TLS 1.3" {
		t.Errorf("connections: got %+v", got)
	}
}
