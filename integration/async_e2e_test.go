package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/net/http2"

	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestAsyncPeerPaysThroughASyncFleet: a STREAM sender whose plugin
// speaks RFC 35 draft 3 (integration/js/asyncplugin.js: every Prepare
// gets 202, its reply comes by callback) pays a STREAM receiver behind
// three real ilp-connector 23 instances, which speak only synchronous ILP
// over HTTP; at the same time a stock ilp-plugin-http sender pays the
// same receiver through the same edge, synchronously. Both payments
// arrive to the unit, every accepted Prepare got exactly one reply, and
// the edge refused none.
func TestAsyncPeerPaysThroughASyncFleet(t *testing.T) {
	needNode(t)
	recv, recvPort, dests, secrets := streamReceiver(t, "test.receiver", 2)
	ups := startConnectorFleet(t, recvPort, "--route-prefix", "test.receiver")
	callbackPort := freePort(t)
	startInProcess(t, fmt.Sprintf(`
	http://127.0.0.1:9080 {
		ilp_edge {
			address test.edge
			peer alice {
				token %s
				upstream_token %s
				callback_url_prefix http://127.0.0.1:%d/callback/
				callback_token edge-to-alice
			}
			peer bob {
				token bob-sync-token
				upstream_token %s
			}
		}
		ilp_proxy %s
	}`, aliceToken, connToken, callbackPort, connToken, strings.Join(ups, " ")))

	const amount = 20000
	results := make([]string, 2)
	var wg sync.WaitGroup
	for i, args := range [][]string{
		{"--token", aliceToken, "--async-callback-port", fmt.Sprint(callbackPort), "--async-callback-token", "edge-to-alice"},
		{"--token", "bob-sync-token"},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := append([]string{"js/stream.js", "send", "--url", "http://127.0.0.1:9080/", "--destination", dests[i],
				"--secret", secrets[i], "--amount", fmt.Sprint(amount), "--max-packet", "1000"}, args...)
			out, err := exec.Command("node", cmd...).CombinedOutput()
			results[i] = strings.TrimSpace(string(out))
			if err != nil {
				results[i] += " " + err.Error()
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(results[0], "\n")
	if len(lines) != 2 || lines[1] != fmt.Sprintf("PAID %d %d", amount, amount) {
		t.Fatalf("the asynchronous sender: %q, want ASYNC … then PAID %d %d", results[0], amount, amount)
	}
	var sent, accepted, replies, duplicates, refused int
	if _, err := fmt.Sscanf(lines[0], "ASYNC %d %d %d %d %d", &sent, &accepted, &replies, &duplicates, &refused); err != nil {
		t.Fatalf("%q: %v", lines[0], err)
	}
	t.Logf("asynchronous sender: %d Prepares sent, %d accepted (202), %d replies by callback, %d duplicate replies, %d refused",
		sent, accepted, replies, duplicates, refused)
	if accepted != sent || replies != accepted || duplicates != 0 || refused != 0 {
		t.Errorf("want every Prepare accepted and answered once by callback")
	}
	if want := fmt.Sprintf("PAID %d %d", amount, amount); results[1] != want {
		t.Errorf("the synchronous sender: %q, want %s", results[1], want)
	}
	want := fmt.Sprint(2 * amount)
	waitUntil(t, 5*time.Second, "the receiver gets "+want, func() bool { return streamTotal(recv) == want })
	m := scrape(t, "http://localhost:2999/metrics")
	t.Logf("edge: async Prepares accepted %v, replies delivered %v, abandoned %v",
		m[`caddy_ilp_async_prepares_total{peer="alice",result="accepted"}`],
		m[`caddy_ilp_async_replies_total{outcome="delivered",peer="alice"}`],
		m[`caddy_ilp_async_replies_total{outcome="abandoned",peer="alice"}`])
}

// TestAsyncRepliesSurviveShutdown accepts 20 asynchronous Prepares
// (202 each) for a connector that takes a second over each, then, while
// the connector holds them all, reloads Caddy's config or SIGTERMs it,
// and counts the replies at the peer's callback: every accepted Prepare
// gets exactly one, a Fulfill (before Caddy exits, for SIGTERM).
func TestAsyncRepliesSurviveShutdown(t *testing.T) {
	for _, event := range []string{"reload", "SIGTERM"} {
		t.Run(event, func(t *testing.T) { testAsyncRepliesSurvive(t, event) })
	}
}

func testAsyncRepliesSurvive(t *testing.T, event string) {
	var holding atomic.Int32
	conn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		holding.Add(1)
		time.Sleep(time.Second)
		w.Write(ilptest.Fulfill([]byte("late")))
	}))
	t.Cleanup(conn.Close)
	cb := startCallback(t)
	site := func(address string) func(port int) string {
		return func(port int) string {
			return fmt.Sprintf(`
http://127.0.0.1:%d {
	ilp_edge {
		address %s
		peer alice {
			token %s
			callback_url_prefix %s/cb/
		}
	}
	handle /ilp_proxy {
		ilp_proxy %s
	}
}
`, port, address, hostileToken, cb.URL, hostport(conn))
		}
	}
	caddy, addr, admin := runSite(t, "", site("test.edge"))
	holding.Store(0)
	client := testClient(t, 10*time.Second)
	const n = 20
	for i := range n {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/ilp_proxy",
			bytes.NewReader(ilptest.Prepare(fmt.Sprintf("g.shut.r%d.x", i), 30*time.Second)))
		req.Header.Set("Authorization", "Bearer "+hostileToken)
		req.Header.Set("Request-Id", uuid.NewString())
		req.Header.Set("Callback-Url", cb.URL+"/cb/")
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusAccepted {
			t.Fatalf("Prepare %d: HTTP %d, want 202", i, res.StatusCode)
		}
	}
	waitUntil(t, 10*time.Second, "the connector holds every Prepare", func() bool { return holding.Load() == n })
	switch event {
	case "SIGTERM":
		if err := caddy.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- caddy.wait() }()
		select {
		case <-exited:
		case <-time.After(40 * time.Second):
			t.Fatal("Caddy did not exit")
		}
	case "reload":
		_, port, _ := strings.Cut(addr, ":")
		var p int
		fmt.Sscan(port, &p)
		cfg := fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n}\n", admin) + site("test.edge.reloaded")(p)
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/load", admin), strings.NewReader(cfg))
		req.Header.Set("Content-Type", "text/caddyfile")
		loading := time.Now()
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("POST /load took %v", time.Since(loading))
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("POST /load: %s", res.Status)
		}
	}
	replies := cb.waitReplies(t, n, 10*time.Second)
	counts := map[string]int{}
	for id, rs := range replies {
		if len(rs) != 1 {
			t.Errorf("Request-Id %s: %d replies %v, want one", id, len(rs), rs)
		}
		counts[rs[0]]++
	}
	t.Logf("%d asynchronous Prepares in flight at the %s: replies %v", n, event, counts)
	if counts["fulfill"] != n {
		t.Errorf("%d of %d got their Fulfill by callback", counts["fulfill"], n)
	}
}

// TestAsyncStalledConnectorIsBounded sends 10,000 asynchronous Prepares,
// as fast as 100 senders can, to a connector that never answers. The
// edge never holds more than its per-peer bound in flight (1,000 by
// default, sampled from caddy_ilp_async_in_flight): every Prepare is
// accepted (202) or refused (429) at once, every accepted one gets
// exactly one reply by callback (R00 once it expired, which frees its
// place for another), and once the connector lets go the edge's
// goroutines are back to what they were.
func TestAsyncStalledConnectorIsBounded(t *testing.T) {
	release := make(chan struct{})
	var releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	stalled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		<-release
	}))
	t.Cleanup(stalled.Close)
	t.Cleanup(letGo) // before Close, which waits for the requests it holds
	cb := startCallback(t)
	startInProcess(t, fmt.Sprintf(`
	http://127.0.0.1:9080 {
		ilp_edge {
			address test.edge
			peer alice {
				token %s
				callback_url %s/cb
			}
		}
		ilp_proxy %s
	}`, hostileToken, cb.URL, hostport(stalled)))
	baseline := settledGoroutines()

	const n, senders = 10000, 100
	const ttl = 3 * time.Second
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders}, Timeout: 10 * time.Second}
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	sampling := make(chan struct{})
	peak := make(chan float64)
	// The gauge is the process's: exchanges of earlier tests' edges may
	// still be in flight (replies retried until their Prepare expires).
	before := scrape(t, "http://localhost:2999/metrics")["caddy_ilp_async_in_flight"]
	go func() { // the most in flight at once, every 100 ms
		most := 0.0
		for {
			select {
			case <-sampling:
				peak <- most
				return
			case <-time.After(100 * time.Millisecond):
				most = max(most, scrape(t, "http://localhost:2999/metrics")["caddy_ilp_async_in_flight"]-before)
			}
		}
	}()
	start := time.Now()
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := s; i < n; i += senders {
				req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:9080/",
					bytes.NewReader(ilptest.Prepare(fmt.Sprintf("g.stall.r%d.x", i), ttl)))
				req.Header.Set("Authorization", "Bearer "+hostileToken)
				req.Header.Set("Request-Id", uuid.NewString())
				res, err := client.Do(req)
				if err != nil {
					t.Logf("Prepare %d: %v", i, err)
					statuses <- 0
					continue
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusAccepted && res.StatusCode != http.StatusTooManyRequests {
					t.Logf("Prepare %d: %s %v %q", i, res.Status, res.Header, body)
				}
				statuses <- res.StatusCode
			}
		}()
	}
	wg.Wait()
	sent := time.Since(start)
	close(sampling)
	most := <-peak
	close(statuses)
	counts := map[int]int{}
	for s := range statuses {
		counts[s]++
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("%d asynchronous Prepares to a stalled connector in %v: %v by HTTP status, at most %v in flight; %d goroutines, heap in use %d MB",
		n, sent.Round(time.Millisecond), counts, most, runtime.NumGoroutine(), ms.HeapInuse>>20)
	for k, v := range scrape(t, "http://localhost:2999/metrics") {
		if strings.HasPrefix(k, "caddy_ilp_async_prepares_total") {
			t.Logf("%s %v", k, v)
		}
	}
	accepted := counts[http.StatusAccepted]
	if accepted+counts[http.StatusTooManyRequests] != n || accepted == 0 || counts[http.StatusTooManyRequests] == 0 {
		t.Fatalf("statuses %v: want each Prepare accepted or refused with 429, and some of each", counts)
	}
	if most > 1000 {
		t.Errorf("%v in flight at once, over the bound of 1,000", most)
	}
	replies := cb.waitReplies(t, accepted, ttl+15*time.Second)
	answers := map[string]int{}
	for id, rs := range replies {
		if len(rs) != 1 {
			t.Errorf("Request-Id %s: %d replies", id, len(rs))
		}
		answers[rs[0]]++
	}
	t.Logf("replies by callback: %v", answers)
	if len(replies) != accepted || answers["R00"]+answers["R02"] != accepted {
		t.Errorf("%d replies for %d accepted: %v; want one R00 (or R02) each", len(replies), accepted, answers)
	}
	letGo()
	client.CloseIdleConnections()
	// The edge keeps connections to the callback alive, for the next
	// replies, as it should; closed from the other end, they end.
	cb.CloseClientConnections()
	waitGoroutinesBack(t, baseline, "every reply and the connector let go")
}

// TestAsyncThroughTheFrontDoor: the ilp app's front door serves an
// asynchronous Prepare as a site does, over HTTP/1.1 and h2c: 202 at
// once, the Fulfill by callback, once.
func TestAsyncThroughTheFrontDoor(t *testing.T) {
	conn, delivered := fulfillingConnector(t)
	cb := startCallback(t)
	startInProcessWith(t, fmt.Sprintf(`ilp {
		server 127.0.0.1:9082 {
			ilp_edge {
				address test.edge
				peer alice {
					token %s
					callback_url_prefix %s/cb/
				}
			}
			ilp_proxy %s
		}
	}`, hostileToken, cb.URL, hostport(conn)), `
	http://127.0.0.1:9080 {
		respond /health 200
	}`)
	clients := map[string]*http.Client{
		"HTTP/1.1": testClient(t, 10*time.Second),
		"h2c": {Timeout: 10 * time.Second, Transport: &http2.Transport{AllowHTTP: true,
			DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}}},
	}
	var ids []string
	for proto, client := range clients {
		for i := range 5 {
			id := uuid.NewString()
			ids = append(ids, id)
			req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:9082/", bytes.NewReader(ilptest.Prepare(fmt.Sprintf("g.fd.r%d.x", i), 10*time.Second)))
			req.Header.Set("Authorization", "Bearer "+hostileToken)
			req.Header.Set("Request-Id", id)
			req.Header.Set("Callback-Url", cb.URL+"/cb/")
			res, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", proto, err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusAccepted || len(body) != 0 || res.Proto != map[string]string{"HTTP/1.1": "HTTP/1.1", "h2c": "HTTP/2.0"}[proto] {
				t.Fatalf("%s: %s %s %q, want 202 and no body", proto, res.Proto, res.Status, body)
			}
		}
	}
	replies := cb.waitReplies(t, len(ids), 10*time.Second)
	for _, id := range ids {
		if rs := replies[id]; len(rs) != 1 || rs[0] != "fulfill" {
			t.Errorf("Request-Id %s: replies %v, want one Fulfill", id, rs)
		}
	}
	if n := delivered.Load(); n != int64(len(ids)) {
		t.Errorf("the connector got %d packets, want %d", n, len(ids))
	}
}

// callback is a peer's callback endpoint: it takes every reply (200) and
// keeps each Request-Id's replies, as Fulfill or Reject codes.
type callback struct {
	*httptest.Server
	mu      sync.Mutex
	replies map[string][]string
}

func startCallback(t *testing.T) *callback {
	c := &callback{replies: map[string][]string{}}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		id := r.Header.Get("Request-Id")
		c.replies[id] = append(c.replies[id], answerOf(&http.Response{StatusCode: 200}, body))
		c.mu.Unlock()
	}))
	t.Cleanup(c.Close)
	return c
}

// waitReplies waits until n Request-Ids have replies, then a moment for
// a second reply to any of them, and returns them all.
func (c *callback) waitReplies(t *testing.T, n int, within time.Duration) map[string][]string {
	t.Helper()
	waitUntil(t, within, fmt.Sprintf("replies to %d Prepares", n), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.replies) >= n
	})
	time.Sleep(200 * time.Millisecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.replies)
}
