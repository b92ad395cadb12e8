package proxy

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// counterDelta returns how much c has grown since the call.
func counterDelta(c prometheus.Collector) func() float64 {
	start := testutil.ToFloat64(c)
	return func() float64 { return testutil.ToFloat64(c) - start }
}

func TestProxyMetrics(t *testing.T) {
	live := startConnector(t, "live", false)
	dead := ilptest.DeadAddress(t)
	e := testEdge(t)
	p := testProxy(t, func(p *Proxy) { p.FailDuration = caddy.Duration(time.Minute) }, "http://"+dead, "http://"+live.addr())
	rerouted := counterDelta(metricRerouted)
	notSent := counterDelta(metricUpstreamRequests.WithLabelValues(dead, "not_sent"))
	replies := counterDelta(metricUpstreamRequests.WithLabelValues(live.addr(), "reply"))
	w, _, err := send(t, e, p, destRankedFirst([]string{dead, live.addr()}), time.Minute)
	fulfilledBy(t, w, err)
	if rerouted() != 1 || notSent() != 1 || replies() != 1 {
		t.Errorf("rerouted %v, not_sent %v, replies %v; want 1 each", rerouted(), notSent(), replies())
	}
	if h := testutil.ToFloat64(metricUpstreamHealthy.WithLabelValues(dead)); h != 0 {
		t.Errorf("refused upstream's healthy gauge is %v", h)
	}
	if h := testutil.ToFloat64(metricUpstreamHealthy.WithLabelValues(live.addr())); h != 1 {
		t.Errorf("live upstream's healthy gauge is %v", h)
	}
}
