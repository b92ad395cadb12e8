package egress

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// ilp_egress's series, package-level like ilp_edge's so that values
// survive reloads. The peer label is a configured peer's name.
var (
	metricPackets = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "egress_packets_total",
		Help: "Packets ilp_egress sent to a peer, by peer and result: fulfill, reject, failed (no reply, or one that is not a Fulfill or Reject in a 200), or refused (not sent: over the peer's outgoing_limits, the connector getting F08, T04 or T05 from the edge; or, in multi mode, for no child, F02).",
	}, []string{"peer", "result"})
	metricDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "egress_duration_seconds",
		Help:    "Time from ilp_egress sending a packet to a peer to having its reply, or failing, by peer.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"peer"})
)

// peerMetrics are one peer's series. count does nothing on a nil
// receiver (metrics off).
type peerMetrics struct {
	fulfill, reject, failed, refused prometheus.Counter
	duration                         prometheus.Observer
}

func newPeerMetrics(name string) *peerMetrics {
	return &peerMetrics{
		fulfill:  metricPackets.WithLabelValues(name, "fulfill"),
		reject:   metricPackets.WithLabelValues(name, "reject"),
		failed:   metricPackets.WithLabelValues(name, "failed"),
		refused:  metricPackets.WithLabelValues(name, "refused"),
		duration: metricDuration.WithLabelValues(name),
	}
}

// count records one packet sent: its reply, or the failure to get one.
func (m *peerMetrics) count(r reply, err *handler.ForwardError, d time.Duration) {
	if m == nil {
		return
	}
	m.duration.Observe(d.Seconds())
	if err != nil || r.status != 200 {
		m.failed.Inc()
		return
	}
	switch t, terr := ilpdest.ReadResponseType(r.body); {
	case terr != nil:
		m.failed.Inc()
	case t == ilpdest.TypeFulfill:
		m.fulfill.Inc()
	default:
		m.reject.Inc()
	}
}

// countRefused records a packet not sent: over the peer's outgoing
// limits, or for no child of a multi-mode peer.
func (m *peerMetrics) countRefused() {
	if m != nil {
		m.refused.Inc()
	}
}
