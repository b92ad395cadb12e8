package async

import "github.com/prometheus/client_golang/prometheus"

var (
	metricPrepares = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "async_prepares_total",
		Help: "Asynchronous (RFC 35 draft 3) Prepares by peer and result: accepted (202, forwarded), replay (202, the same Request-Id and packet again, not forwarded again), or refused: conflict (409), busy (429), bad_request_id, no_callback, callback_refused (400).",
	}, []string{"peer", "result"})
	metricAttempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "async_callback_attempts_total",
		Help: "POSTs of replies to peers' callback URLs, by peer and result: 2xx, 3xx, 4xx, 5xx, timeout, or error (no answer: refused, reset).",
	}, []string{"peer", "result"})
	metricReplies = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "async_replies_total",
		Help: "Replies to asynchronous Prepares by peer and outcome: delivered (2xx), refused (a 3xx or 4xx, which ends the retries) or abandoned (not taken before the retries ran out at the Prepare's expiry).",
	}, []string{"peer", "outcome"})
	metricReplySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "async_reply_seconds",
		Help:    "Time from a Prepare's 202 to its reply's delivery.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})
	metricCallbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "egress_callbacks_total",
		Help: "Replies peers POSTed to the callback route (ilp_edge with replies) for ilp_egress's asynchronous Prepares, by peer and outcome: delivered (200: to the exchange here, or relayed to the edge where it waits), unavailable (503: it may wait at an edge the shared store cannot reach now), or refused (400): unknown (no Prepare of this peer waits for the Request-Id), already_answered, bad_fulfillment (it does not hash to the condition; the connector gets T00), malformed (no valid Request-Id, or not a Fulfill or Reject).",
	}, []string{"peer", "outcome"})
	metricRelayed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "egress_callbacks_relayed_total",
		Help: "Replies by callback relayed between edges through the shared store, by direction: sent (this edge got a reply for an exchange waiting at another), received (another edge's relay reached the exchange here), late (the exchange had ended, or had its reply, when it came).",
	}, []string{"direction"})
	metricInFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "async_in_flight",
		Help: "Asynchronous exchanges accepted and not yet ended.",
	})
)

// Collectors are the package's metrics, for a handler to register with
// its config's registry.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{metricPrepares, metricAttempts, metricReplies, metricReplySeconds, metricInFlight, metricCallbacks, metricRelayed}
}

// CountPrepare counts an asynchronous Prepare of peer with result.
func CountPrepare(peer, result string) { metricPrepares.WithLabelValues(peer, result).Inc() }
