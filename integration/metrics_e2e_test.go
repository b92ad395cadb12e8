package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestMetricsEndToEnd sends a known mix of packets and bad requests
// through ./cmd/caddy (ilp_edge + ilp_proxy, one connector up and one
// down) and checks every caddy_ilp_* series on the admin /metrics.
func TestMetricsEndToEnd(t *testing.T) {
	bin, err := buildCaddy()
	if err != nil {
		t.Fatal(err)
	}
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		p, _ := ilpdest.ReadPrepareHeader(body)
		if strings.HasPrefix(string(p.Destination), "g.rej.") {
			w.Write(ilpdest.AppendReject(nil, ilpdest.Reject{Code: ilpdest.Code{'T', '0', '4'}, TriggeredBy: "g.conn"}))
			return
		}
		w.Write(ilpdest.AppendFulfill(nil, make([]byte, 32), nil))
	}))
	defer live.Close()
	liveAddr := hostport(live)
	deadAddr := ilptest.DeadAddress(t)

	port, admin := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
}

http://127.0.0.1:%d {
	ilp_edge {
		address test.edge
		peer alice {
			token %s
		}
	}
	ilp_proxy http://%s http://%s {
		fail_duration 1m
	}
}
`, admin, port, aliceToken, deadAddr, liveAddr)
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	edge := start(t, bin, "run", "--config", path, "--adapter", "caddyfile")

	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	post := func(token string, body []byte) (int, []byte) {
		req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		reply, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, reply
	}
	waitListening(t, edge, port)

	// The mix, and what each packet's first choice of connector is.
	var dests []string
	for i := range 6 {
		dests = append(dests, fmt.Sprintf("g.ok.acct%d", i))
	}
	dests = append(dests, "g.rej.acct0", "g.rej.acct1")
	rerouted := 0
	for _, d := range dests {
		if ilpdest.Rank(ilpdest.Prefix(d, 3), []string{deadAddr, liveAddr}, nil)[0] == 0 {
			rerouted++
		}
		if status, _ := post(aliceToken, ilptest.Prepare(d, time.Minute)); status != 200 {
			t.Fatalf("%s: HTTP %d", d, status)
		}
	}
	post(aliceToken, []byte("junk"))                             // F01
	post(aliceToken, ilptest.Prepare("g.ok.late", -time.Second)) // R02
	post("wrong", ilptest.Prepare("g.ok.x", time.Minute))        // 401
	post("also-wrong", ilptest.Prepare("g.ok.x", time.Minute))   // 401
	post("", ilptest.Prepare("g.ok.x", time.Minute))             // 401

	got := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", admin))
	notSent, deadHealthy := 0, 1
	if rerouted > 0 { // the first refusal marks it down for fail_duration
		notSent, deadHealthy = 1, 0
	}
	want := map[string]float64{
		`caddy_ilp_packets_total{peer="alice",result="fulfill"}`:                                  6,
		`caddy_ilp_packets_total{peer="alice",result="reject"}`:                                   2,
		`caddy_ilp_packets_total{peer="alice",result="edge_reject"}`:                              2,
		`caddy_ilp_rejects_total{code="T04",origin="upstream",peer="alice"}`:                      2,
		`caddy_ilp_rejects_total{code="F01",origin="edge",peer="alice"}`:                          1,
		`caddy_ilp_rejects_total{code="R02",origin="edge",peer="alice"}`:                          1,
		`caddy_ilp_fulfilled_amount_total{peer="alice"}`:                                          600,
		`caddy_ilp_auth_failures_total{method="token",reason="unknown"}`:                          2,
		`caddy_ilp_auth_failures_total{method="none",reason="missing"}`:                           1,
		`caddy_ilp_packet_duration_seconds_count{peer="alice",result="fulfill"}`:                  6,
		`caddy_ilp_packet_duration_seconds_count{peer="alice",result="reject"}`:                   2,
		`caddy_ilp_packet_duration_seconds_count{peer="alice",result="edge_reject"}`:              2,
		`caddy_ilp_expiry_headroom_seconds_count`:                                                 9, // the F01 packet has no expiry
		`caddy_ilp_rerouted_total`:                                                                float64(rerouted),
		fmt.Sprintf(`caddy_ilp_upstream_requests_total{result="reply",upstream=%q}`, liveAddr):    8,
		fmt.Sprintf(`caddy_ilp_upstream_requests_total{result="not_sent",upstream=%q}`, deadAddr): float64(notSent),
		fmt.Sprintf(`caddy_ilp_upstream_healthy{upstream=%q}`, liveAddr):                          1,
		fmt.Sprintf(`caddy_ilp_upstream_healthy{upstream=%q}`, deadAddr):                          float64(deadHealthy),
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	// Series that exist at 0 before their first event, so that rates and
	// alerts on them work from the start.
	for _, k := range []string{
		`caddy_ilp_rejects_total{code="T01",origin="edge",peer="alice"}`,
		`caddy_ilp_rejects_total{code="R00",origin="edge",peer="alice"}`,
		`caddy_ilp_rejects_total{code="T00",origin="edge",peer="alice"}`,
		`caddy_ilp_auth_failures_total{method="jwt",reason="expired"}`,
		`caddy_ilp_auth_failures_total{method="jwt",reason="malformed"}`,
	} {
		if v, ok := got[k]; !ok || v != 0 {
			t.Errorf("%s = %v (present %v), want 0 from the start", k, v, ok)
		}
	}
	t.Logf("%d of 8 packets rerouted off the dead connector", rerouted)
	checkDashboard(t, "../docs/grafana-dashboard.json", got)
}

// checkDashboard fails unless every metric the Grafana dashboard queries
// is a series on the running edge, and every label it groups by is one of
// that metric's labels.
func checkDashboard(t *testing.T, path string, series map[string]float64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	metricRE := regexp.MustCompile(`caddy_ilp_[a-z_]+`)
	byRE := regexp.MustCompile(`by \(([a-z_, ]+)\) \(`)
	queried := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, metric := range metricRE.FindAllString(tg.Expr, -1) {
				queried++
				labels := map[string]bool{}
				found := false
				for s := range series {
					name, rest, _ := strings.Cut(s, "{")
					if name != metric {
						continue
					}
					found = true
					for _, kv := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
						if k, _, ok := strings.Cut(kv, "="); ok {
							labels[k] = true
						}
					}
				}
				if !found {
					t.Errorf("dashboard panel %q queries %s, which the edge does not export", p.Title, metric)
					continue
				}
				for _, m := range byRE.FindAllStringSubmatch(tg.Expr, -1) {
					for _, l := range strings.Split(m[1], ",") {
						if l = strings.TrimSpace(l); l != "le" && !labels[l] {
							t.Errorf("dashboard panel %q groups %s by %q, which it does not have", p.Title, metric, l)
						}
					}
				}
			}
		}
	}
	if queried == 0 {
		t.Error("the dashboard queries no caddy_ilp_ metric")
	}
}

// scrape reads a Prometheus text exposition into series → value, keeping
// the caddy_ilp_ series.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	series := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "caddy_ilp_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		series[line[:i]] = v
	}
	if len(series) == 0 {
		t.Fatal("no caddy_ilp_ series on /metrics")
	}
	return series
}
