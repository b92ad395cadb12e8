package store

import "github.com/prometheus/client_golang/prometheus"

// The store's metrics. Their names keep the limit store's, which they
// were before the store kept more than limits.
var (
	metricLeases = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "limit_store_requests_total",
		Help: "Leases asked of the Redis limit store, by result: granted, denied (the budget is spent) or error.",
	}, []string{"result"})
	metricLeaseDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "limit_store_duration_seconds",
		Help:    "Time a lease took from the Redis limit store, errors included.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
	})
	metricDegraded = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "limit_store_degraded",
		Help: "1 while the Redis store is not answering and on_store_failure applies, else 0.",
	})
	metricEdges = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "store_edges_alive",
		Help: "Edge instances alive on the shared store when this one last announced itself.",
	})
	metricTableOps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "store_route_tables_total",
		Help: "Peers' routing tables taken from the shared store for a route update or control, by result: shared, or local when the store could not be used.",
	}, []string{"result"})
)

// Collectors are the store's metrics, for a handler to register with its
// config's registry.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{metricLeases, metricLeaseDuration, metricDegraded, metricEdges, metricTableOps}
}
