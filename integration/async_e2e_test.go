package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

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
	var ups []string
	for range 3 {
		port := freePort(t)
		p := start(t, "node", "js/connector.js", "--port", fmt.Sprint(port), "--token", connToken,
			"--up-port", fmt.Sprint(recvPort), "--up-token", connToken, "--route-prefix", "test.receiver")
		p.waitReady(t)
		waitListening(t, p, port)
		ups = append(ups, fmt.Sprintf("127.0.0.1:%d", port))
	}
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
	var mu sync.Mutex
	replies := map[string][]string{}
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		replies[r.Header.Get("Request-Id")] = append(replies[r.Header.Get("Request-Id")], answerOf(&http.Response{StatusCode: 200}, body))
		mu.Unlock()
	}))
	t.Cleanup(cb.Close)
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
		waitUntil(t, 10*time.Second, "every reply", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(replies) == n
		})
		time.Sleep(200 * time.Millisecond) // a second reply to one id would come now
	}
	mu.Lock()
	defer mu.Unlock()
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
