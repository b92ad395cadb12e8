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

// TestSharedRateLimitAcrossThreeEdges runs three ./cmd/caddy edge
// instances sharing one real redis-server, and one peer sending at 3× its
// packet rate split evenly over them for 30 s; one edge is SIGKILLed half
// way. The fleet admits the peer's limit once (within 10%), not once per
// instance, and answers the rest T05, before the edge died and after.
func TestSharedRateLimitAcrossThreeEdges(t *testing.T) {
	r := redistest.Start(t)
	conn, delivered := fulfillingConnector(t)
	const (
		limit    = 50 // packets per second
		duration = 30 * time.Second
		killAt   = 15 * time.Second
	)
	site := limitedSite(r.Addr, "", fmt.Sprintf("rate %d per 1s", limit), hostport(conn))
	var urls []string
	var edges []*process
	for range 3 {
		p, addr, _ := runSite(t, "", site)
		edges, urls = append(edges, p), append(urls, "http://"+addr+"/ilp_proxy")
	}
	delivered.Store(0) // the warm-ups
	go func() {
		time.Sleep(killAt)
		edges[2].cmd.Process.Kill()
	}()

	perEdge := int(duration.Seconds()) * limit
	out := paced(t, urls, perEdge, limit)
	answers := map[string]int{}
	for i, o := range out {
		// The killed edge's packets get no answer from it once it is dead
		// (the connection is refused: they never reached a connector) or
		// as it dies (reset: in flight at the kill).
		if strings.HasPrefix(o.answer, "error") && o.sent >= killAt-time.Second {
			out[i].answer = "dead edge"
		}
		answers[out[i].answer]++
	}
	if len(out) != 3*perEdge || answers["fulfill"]+answers["T05"]+answers["dead edge"] != len(out) {
		t.Fatalf("%d packets sent, answers %v: want every one fulfilled or T05, or refused by the dead edge", 3*perEdge, answers)
	}
	// The peer's burst (one second's worth) is admitted at once; after it,
	// the rate. Count it from 5 s to the kill, and from 2 s after it.
	rate := func(from, to time.Duration) float64 {
		n := 0
		for _, o := range out {
			if o.sent >= from && o.sent < to && o.answer == "fulfill" {
				n++
			}
		}
		return float64(n) / (to - from).Seconds()
	}
	before, after := rate(5*time.Second, killAt), rate(killAt+2*time.Second, duration)
	t.Logf("%d sent at %d/s over three edges for %v: answers %v; admitted %.1f/s with three edges, %.1f/s after one died, for a limit of %d/s (%.2f×, %.2f×)",
		len(out), limit*3, duration, answers, before, after, limit, before/limit, after/limit)
	for _, r := range []float64{before, after} {
		if r < limit*0.9 || r > limit*1.1 {
			t.Errorf("admitted %.1f packets/s, want %d ± 10%%", r, limit)
		}
	}
	if n := int(delivered.Load()); n != answers["fulfill"] {
		t.Errorf("the connector got %d packets, want the %d fulfilled", n, answers["fulfill"])
	}
}

// TestLimitsThroughASentinelFailover runs an edge whose limits are on a
// Sentinel-managed Redis (a master, a replica, three sentinels) and
// SIGKILLs the master under load (100 packets/s for 10 s, the limit far
// above it): every packet is fulfilled, none refused or lost, while the
// sentinels promote the replica and the edge finds it.
func TestLimitsThroughASentinelFailover(t *testing.T) {
	sen := redistest.StartSentinel(t)
	conn, delivered := fulfillingConnector(t)
	_, addr, admin := runSite(t, "", limitedSite(strings.Join(sen.Sentinels, " "),
		"master_name "+sen.MasterName+"\non_store_failure allow", "rate 2000 per 1s", hostport(conn)))
	delivered.Store(0)
	var failover time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(2 * time.Second)
		old := sen.Master()
		sen.KillMaster()
		failover = sen.WaitFailover(t, old, 20*time.Second)
	}()
	out := paced(t, []string{"http://" + addr + "/ilp_proxy"}, 1000, 100)
	<-done
	answers := map[string]int{}
	for _, o := range out {
		answers[o.answer]++
	}
	m := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", admin))
	t.Logf("master killed under 100 packets/s: sentinels failed over in %v; answers %v; leases %v granted, %v failed (those packets on the in-process share); degraded now %v",
		failover.Round(time.Millisecond), answers, m[`caddy_ilp_limit_store_requests_total{result="granted"}`],
		m[`caddy_ilp_limit_store_requests_total{result="error"}`], m["caddy_ilp_limit_store_degraded"])
	if answers["fulfill"] != 1000 {
		t.Errorf("answers %v, want 1000 fulfilled: a failover must cost no packet", answers)
	}
	if n := delivered.Load(); n != 1000 {
		t.Errorf("the connector got %d packets, want 1000", n)
	}
	if m["caddy_ilp_limit_store_degraded"] != 0 {
		t.Error("the edge did not come back to Redis after the failover")
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
