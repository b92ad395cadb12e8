package proxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ilp-edge/caddy-ilp/handler"
)

// ilp_proxy's series, package-level like ilp_edge's so that values survive
// reloads. The upstream label is a configured or discovered address.
var (
	metricUpstreamHealthy = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "upstream_healthy",
		Help: "1 if ilp_proxy sends packets to the upstream, 0 if its health checks or failures keep it out.",
	}, []string{"upstream"})
	metricUpstreamRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "upstream_requests_total",
		Help: "ilp_proxy exchanges by upstream and result: reply, not_sent (dial or write failed first), failed (may have been delivered), timeout.",
	}, []string{"upstream", "result"})
	metricRouteUpdates = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "route_updates_total",
		Help: "Peers' route updates (routing_protocol fanout) ilp_proxy delivered, by upstream and result: accepted (Fulfill), refused (any other reply), failed (no reply).",
	}, []string{"upstream", "result"})
	metricTableReplays = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "route_table_replays_total",
		Help: "Whole routing tables of peers (routing_protocol fanout) ilp_proxy sent an upstream in place of an update, because the upstream had missed earlier ones.",
	}, []string{"upstream"})
	metricRerouted = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "rerouted_total",
		Help: "Packets ilp_proxy delivered to an upstream other than their prefix's first choice.",
	})
)

// registerMetrics registers ilp_proxy's collectors with a config's registry.
func registerMetrics(reg prometheus.Registerer) error {
	return handler.RegisterCollectors(reg, metricUpstreamHealthy, metricUpstreamRequests, metricRouteUpdates, metricTableReplays, metricRerouted)
}

// upstreamMetrics are one ilp_proxy upstream's series. Its methods do
// nothing on a nil receiver (metrics off).
type upstreamMetrics struct {
	healthy                            prometheus.Gauge
	replies, notSent, failed, timedOut prometheus.Counter
	updatesAccepted, updatesRefused    prometheus.Counter
	updatesFailed, tableReplays        prometheus.Counter
}

func newUpstreamMetrics(addr string) *upstreamMetrics {
	return &upstreamMetrics{
		healthy:  metricUpstreamHealthy.WithLabelValues(addr),
		replies:  metricUpstreamRequests.WithLabelValues(addr, "reply"),
		notSent:  metricUpstreamRequests.WithLabelValues(addr, "not_sent"),
		failed:   metricUpstreamRequests.WithLabelValues(addr, "failed"),
		timedOut: metricUpstreamRequests.WithLabelValues(addr, "timeout"),

		updatesAccepted: metricRouteUpdates.WithLabelValues(addr, "accepted"),
		updatesRefused:  metricRouteUpdates.WithLabelValues(addr, "refused"),
		updatesFailed:   metricRouteUpdates.WithLabelValues(addr, "failed"),
		tableReplays:    metricTableReplays.WithLabelValues(addr),
	}
}

// deleteUpstreamMetrics drops an upstream's series once nothing sends to
// it.
func deleteUpstreamMetrics(addr string) {
	metricUpstreamHealthy.DeleteLabelValues(addr)
	metricUpstreamRequests.DeletePartialMatch(prometheus.Labels{"upstream": addr})
	metricRouteUpdates.DeletePartialMatch(prometheus.Labels{"upstream": addr})
	metricTableReplays.DeleteLabelValues(addr)
}

// count records the outcome of one exchange: err is nil for a reply.
func (m *upstreamMetrics) count(err *handler.ForwardError) {
	if m == nil {
		return
	}
	switch {
	case err == nil:
		m.replies.Inc()
	case err.Failure == handler.TimedOut:
		m.timedOut.Inc()
	case err.Failure == handler.NotDelivered:
		m.notSent.Inc()
	default:
		m.failed.Inc()
	}
}

// countRouteUpdate records one upstream's part in a fan-out.
func (m *upstreamMetrics) countRouteUpdate(accepted bool, err *handler.ForwardError) {
	switch {
	case m == nil:
	case accepted:
		m.updatesAccepted.Inc()
	case err != nil:
		m.updatesFailed.Inc()
	default:
		m.updatesRefused.Inc()
	}
}

// countTableReplay records a peer's whole table sent to the upstream.
func (m *upstreamMetrics) countTableReplay() {
	if m != nil {
		m.tableReplays.Inc()
	}
}

func (m *upstreamMetrics) setHealthy(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.healthy.Set(1)
	} else {
		m.healthy.Set(0)
	}
}
