package handler

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// counterDelta returns a function that reports how much c grew since now:
// the collectors are shared by every test in the package.
func counterDelta(c prometheus.Collector) func() float64 {
	before := testutil.ToFloat64(c)
	return func() float64 { return testutil.ToFloat64(c) - before }
}

func TestEdgeMetrics(t *testing.T) {
	e, _ := testEdge(t, nil)
	fulfills := counterDelta(metricPackets.WithLabelValues("alice", "fulfill"))
	rejects := counterDelta(metricPackets.WithLabelValues("alice", "reject"))
	edgeRejects := counterDelta(metricPackets.WithLabelValues("alice", "edge_reject"))
	amount := counterDelta(metricFulfilledAmount.WithLabelValues("alice"))
	t04 := counterDelta(metricRejects.WithLabelValues("alice", "T04", "upstream"))
	t00 := counterDelta(metricRejects.WithLabelValues("alice", "T00", "edge"))
	f01 := counterDelta(metricRejects.WithLabelValues("alice", "F01", "edge"))
	unknown := counterDelta(metricAuthFailures.WithLabelValues("token", "unknown"))
	missing := counterDelta(metricAuthFailures.WithLabelValues("none", "missing"))

	auth := []string{"Authorization", "Bearer " + aliceToken}
	rejectT04 := func(w http.ResponseWriter, _ *http.Request) error {
		_, err := w.Write(ilpdest.AppendReject(nil, ilpdest.Reject{Code: ilpdest.Code{'T', '0', '4'}, TriggeredBy: "g.conn"}))
		return err
	}
	status500 := func(w http.ResponseWriter, _ *http.Request) error { w.WriteHeader(500); return nil }
	for range 3 {
		serve(t, e, newRequest("POST", prepareBytes("g.usd.x", time.Minute), auth...), &backend{}) // amount 100
	}
	serve(t, e, newRequest("POST", prepareBytes("g.usd.x", time.Minute), auth...), &backend{answer: rejectT04})
	serve(t, e, newRequest("POST", prepareBytes("g.usd.x", time.Minute), auth...), &backend{answer: status500})
	serve(t, e, newRequest("POST", []byte("junk"), auth...), &backend{})
	serve(t, e, newRequest("POST", prepareBytes("g.usd.x", time.Minute), "Authorization", "Bearer wrong"), &backend{})
	serve(t, e, newRequest("POST", prepareBytes("g.usd.x", time.Minute)), &backend{})

	for name, c := range map[string]struct{ got, want float64 }{
		"fulfills":            {fulfills(), 3},
		"upstream rejects":    {rejects(), 1},
		"edge rejects":        {edgeRejects(), 2},
		"fulfilled amount":    {amount(), 3 * 100},
		"T04 from upstream":   {t04(), 1},
		"T00 from the edge":   {t00(), 1},
		"F01 from the edge":   {f01(), 1},
		"unknown token":       {unknown(), 1},
		"missing credentials": {missing(), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: counted %v, want %v", name, c.got, c.want)
		}
	}
	if n := testutil.CollectAndCount(metricPacketDuration, "caddy_ilp_packet_duration_seconds"); n == 0 {
		t.Error("no packet duration observed")
	}
}

func TestEdgeMetricsOff(t *testing.T) {
	e, _ := testEdge(t, func(e *Edge) { e.DisableMetrics = true })
	fulfills := counterDelta(metricPackets.WithLabelValues("alice", "fulfill"))
	failures := counterDelta(metricAuthFailures.WithLabelValues("token", "unknown"))
	serve(t, e, newRequest("POST", prepareBytes("g.usd.x", time.Minute), "Authorization", "Bearer "+aliceToken), &backend{})
	serve(t, e, newRequest("POST", prepareBytes("g.usd.x", time.Minute), "Authorization", "Bearer wrong"), &backend{})
	if fulfills() != 0 || failures() != 0 {
		t.Errorf("metrics off, yet %v fulfills and %v auth failures counted", fulfills(), failures())
	}
}

func TestRegisterMetricsTwice(t *testing.T) {
	// Several handlers in one config register the same collectors.
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	reg := ctx.GetMetricsRegistry()
	if err := registerMetrics(reg, false); err != nil {
		t.Fatal(err)
	}
	if err := registerMetrics(reg, true); err != nil {
		t.Fatalf("second registration: %v", err)
	}
}

func TestAuthFailureLogIsRateLimited(t *testing.T) {
	e, logs := testEdge(t, nil)
	at := time.Unix(1_700_000_000, 0)
	setClock(t, func() time.Time { return at })
	for range 50 { // an attack claiming to be bob, and others
		serve(t, e, newRequest("POST", nil, "Authorization", "Bearer guess", "ILP-Peer-Name", "bob"), &backend{})
		serve(t, e, newRequest("POST", nil, "Authorization", "Bearer guess", "ILP-Peer-Name", "mallory"), &backend{})
	}
	at = at.Add(time.Second)
	serve(t, e, newRequest("POST", nil, "Authorization", "Bearer guess", "ILP-Peer-Name", "bob"), &backend{})

	lines := logs.FilterMessage("peer authentication failed").FilterLevelExact(zap.InfoLevel).All()
	var claimed []string
	for _, l := range lines {
		claimed = append(claimed, l.ContextMap()["claimed_peer"].(string))
		if strings.Contains(l.Message+l.ContextMap()["reason"].(string), "guess") {
			t.Errorf("the credential was logged: %v", l.ContextMap())
		}
	}
	if strings.Join(claimed, ",") != "bob,,bob" {
		t.Errorf("logged for %q, want bob and the rest once, then bob again a second later", claimed)
	}
}

// TestPacketDebugLog: the debug line shows the prefix the forwarder
// routed by, whatever its segments, and none when no forwarder set one.
func TestPacketDebugLog(t *testing.T) {
	for _, segments := range []int{-1, 2, 4} {
		e, logs := testEdge(t, nil)
		next := &backend{answer: func(w http.ResponseWriter, r *http.Request) error {
			if segments >= 0 {
				policy := newPolicy(t, &PrefixSelection{PrefixSegments: &segments})
				policy.Select(testPool(3), r, w)
			}
			return fulfill(w, r)
		}}
		serve(t, e, newRequest("POST", prepareBytes("g.usd.bank.alice.x", time.Minute), "Authorization", "Bearer "+aliceToken), next)
		l := logs.FilterMessage("packet").All()
		if len(l) != 1 {
			t.Fatalf("%d packet log lines, want 1", len(l))
		}
		m := l[0].ContextMap()
		want := map[int]any{-1: nil, 2: "g.usd", 4: "g.usd.bank.alice"}[segments]
		if m["peer"] != "alice" || m["route_key"] != want || m["result"] != "fulfill" {
			t.Errorf("segments %d: packet log %v, want route_key %v", segments, m, want)
		}
	}
}
