package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
	"github.com/ilp-edge/caddy-ilp/internal/redistest"
)

// limitedSite is a site on port whose ilp_edge keeps alice's limits
// (limits, Caddyfile lines) on Redis (redis, the block's contents) and
// forwards with ilp_proxy to upstream.
func limitedSite(redisAddr, redis, limits, upstream string) func(port int) string {
	return func(port int) string {
		return fmt.Sprintf(`
http://127.0.0.1:%d {
	ilp_edge {
		address test.edge
		redis %s {
			%s
		}
		peer alice {
			token %s
			%s
		}
	}
	handle /ilp_proxy {
		ilp_proxy %s
	}
}
`, port, redisAddr, redis, hostileToken, limits, upstream)
	}
}

// paced sends n Prepares to each of urls, at rate packets per second to
// each, without waiting for answers before sending the next, and returns
// every answer with the time it was sent.
func paced(t *testing.T, urls []string, n int, rate float64) []timedOutcome {
	client := testClient(t, 30*time.Second)
	var (
		mu  sync.Mutex
		out []timedOutcome
		wg  sync.WaitGroup
	)
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	for _, url := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
				wg.Add(1)
				go func() {
					defer wg.Done()
					sent := time.Since(start)
					a := sendOnce(client, url, fmt.Sprintf("g.limits.pay.%d", i))
					mu.Lock()
					out = append(out, timedOutcome{sent, a})
					mu.Unlock()
				}()
			}
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].sent < out[j].sent })
	return out
}

// fulfillingConnector is a stand-in connector that fulfils every packet
// and counts them.
func fulfillingConnector(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		n.Add(1)
		w.Write(ilptest.Fulfill([]byte("ok")))
	}))
	t.Cleanup(s.Close)
	return s, &n
}

type timedOutcome struct {
	sent   time.Duration
	answer string
}

// TestSharedRateLimitAcrossTwoEdges runs two ./cmd/caddy edge instances
// sharing one real redis-server, and one peer sending at 3× its packet
// rate split evenly over both for 30 s: the fleet admits the peer's limit
// once (within 10%), not once per instance, and answers the rest T05.
func TestSharedRateLimitAcrossTwoEdges(t *testing.T) {
	r := redistest.Start(t)
	conn, delivered := fulfillingConnector(t)
	const (
		limit    = 50 // packets per second
		duration = 30 * time.Second
	)
	site := limitedSite(r.Addr, "instances 2", fmt.Sprintf("rate %d per 1s", limit), hostport(conn))
	_, a, _ := runSite(t, "", site)
	_, b, _ := runSite(t, "", site)
	delivered.Store(0) // the warm-ups

	perEdge := int(duration.Seconds()) * limit * 3 / 2
	out := paced(t, []string{"http://" + a + "/ilp_proxy", "http://" + b + "/ilp_proxy"}, perEdge, limit*3/2)
	answers := map[string]int{}
	for _, o := range out {
		answers[o.answer]++
	}
	if len(out) != 2*perEdge || answers["fulfill"]+answers["T05"] != len(out) {
		t.Fatalf("%d packets sent, answers %v: want every one fulfilled or T05", 2*perEdge, answers)
	}
	// The peer's burst (one second's worth) is admitted at once; after it,
	// the rate. Count the rate over the run's last 25 s, past the burst.
	var late int
	for _, o := range out {
		if o.sent >= 5*time.Second && o.answer == "fulfill" {
			late++
		}
	}
	rate := float64(late) / (duration - 5*time.Second).Seconds()
	t.Logf("%d sent at %d/s over two edges for %v: %d fulfilled, %d T05; after the burst, %.1f admitted/s for a limit of %d/s (%.2f×)",
		len(out), limit*3, duration, answers["fulfill"], answers["T05"], rate, limit, rate/limit)
	if rate < limit*0.9 || rate > limit*1.1 {
		t.Errorf("admitted %.1f packets/s, want %d ± 10%%", rate, limit)
	}
	if n := int(delivered.Load()); n != answers["fulfill"] {
		t.Errorf("the connector got %d packets, want the %d fulfilled", n, answers["fulfill"])
	}
}

// TestLimitsWhileRedisRestarts kills redis-server under load and starts
// it again, with on_store_failure allow and deny side by side, each on an
// edge of its own: every Prepare still gets exactly one answer; allow
// keeps admitting (the limit here is far above the load), deny answers
// T05 while Redis is away; both use Redis again once it is back.
func TestLimitsWhileRedisRestarts(t *testing.T) {
	r := redistest.Start(t)
	conn, _ := fulfillingConnector(t)
	// Limits above the load (100/s), with leases small enough (a twentieth
	// of the burst: 1 s and 0.1 s of the load) to be renewed during the
	// outage; allow's share, 1,000/s, is still far above the load.
	_, allow, allowAdmin := runSite(t, "", limitedSite(r.Addr, "instances 2\non_store_failure allow", "rate 2000 per 1s", hostport(conn)))
	_, deny, _ := runSite(t, "", limitedSite(r.Addr, "on_store_failure deny\nkey_prefix deny:", "rate 200 per 1s", hostport(conn)))

	var phases sync.WaitGroup
	phases.Add(1)
	go func() {
		defer phases.Done()
		time.Sleep(2 * time.Second)
		r.Kill()
		time.Sleep(3 * time.Second)
		if v := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", allowAdmin))["caddy_ilp_limit_store_degraded"]; v != 1 {
			t.Errorf("caddy_ilp_limit_store_degraded is %v with Redis down, want 1", v)
		}
		r.Restart()
	}()
	// 10 s at 100 packets/s to each edge: Redis is up, down (2–5 s), up.
	out := map[string][]timedOutcome{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, addr := range map[string]string{"allow": allow, "deny": deny} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := paced(t, []string{"http://" + addr + "/ilp_proxy"}, 1000, 100)
			mu.Lock()
			out[name] = o
			mu.Unlock()
		}()
	}
	wg.Wait()
	phases.Wait()
	for mode, o := range out {
		answers := map[string]int{}
		var tail []string
		for _, x := range o {
			answers[x.answer]++
			if x.sent > 8*time.Second {
				tail = append(tail, x.answer)
			}
		}
		t.Logf("on_store_failure %s: %d packets, answers %v", mode, len(o), answers)
		if len(o) != 1000 || answers["fulfill"]+answers["T05"] != 1000 {
			t.Errorf("%s: answers %v, want 1000, each fulfilled or T05", mode, answers)
		}
		if mode == "allow" && answers["fulfill"] != 1000 {
			t.Errorf("allow: %d T05s while Redis was away; the share (1,000/s) is far above the load", answers["T05"])
		}
		if mode == "deny" && answers["T05"] == 0 {
			t.Error("deny: no T05 while Redis was away")
		}
		if fulfilled := strings.Count(strings.Join(tail, " "), "fulfill"); fulfilled != len(tail) {
			t.Errorf("%s: %d of the %d packets 3 s after Redis came back were not fulfilled", mode, len(tail)-fulfilled, len(tail))
		}
	}
	if v := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", allowAdmin))["caddy_ilp_limit_store_degraded"]; v != 0 {
		t.Errorf("caddy_ilp_limit_store_degraded is %v with Redis back, want 0", v)
	}
}
