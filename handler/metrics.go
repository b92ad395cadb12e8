package handler

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ilp-edge/caddy-ilp/ilpdest"

	"github.com/ilp-edge/caddy-ilp/async"
	"github.com/ilp-edge/caddy-ilp/store"
)

// The collectors are package-level and registered with every config's
// registry (Caddy makes a new one per load), so values survive reloads.
// Every label value comes from the config or from a small fixed set,
// never from a request: a peer name, an upstream address, an ILP error
// code, a result.
var (
	metricPackets = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "packets_total",
		Help: "Prepares answered, by peer and result: fulfill, reject (from a connector) or edge_reject (made by the edge).",
	}, []string{"peer", "result"})
	metricRejects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "rejects_total",
		Help: "ILP Rejects sent to peers, by peer, error code and origin (edge or upstream).",
	}, []string{"peer", "code", "origin"})
	metricFulfilledAmount = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "fulfilled_amount_total",
		Help: "Sum of the amounts of fulfilled Prepares, in the peer's units.",
	}, []string{"peer"})
	metricAuthFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "auth_failures_total",
		Help: "Requests refused with 401, by credential method and reason.",
	}, []string{"method", "reason"})
	metricPacketDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "packet_duration_seconds",
		Help:    "Time from a Prepare read (its body in) to its answer, by peer and result.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"peer", "result"})
	metricPeerProtocol = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "peer_protocol_answers_total",
		Help: "Peer protocol requests ilp_edge answered itself, by peer and protocol: ildcp (peer.config, with ildcp) or ccp (peer.route.*, with routing_protocol local).",
	}, []string{"peer", "protocol"})
	metricRouteMisses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "route_misses_total",
		Help: "Packets a connector rejected for want of a route that route_miss_failover sent to the next connector, by the connector (host:port) that missed.",
	}, []string{"upstream"})
	metricExpiryHeadroom = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "ilp", Name: "expiry_headroom_seconds",
		Help:    "Time left before a Prepare's expiresAt when its answer went back.",
		Buckets: []float64{0, .1, .25, .5, 1, 2, 5, 10, 20, 30, 60},
	})
)

// registerMetrics registers ilp_edge's collectors with a config's
// registry, and the limit store's when it has one.
func registerMetrics(reg prometheus.Registerer, withStore bool) error {
	cs := []prometheus.Collector{metricPackets, metricRejects, metricFulfilledAmount, metricAuthFailures,
		metricPacketDuration, metricExpiryHeadroom, metricPeerProtocol, metricRouteMisses}
	cs = append(cs, async.Collectors()...)
	if withStore {
		cs = append(cs, store.Collectors()...)
	}
	return RegisterCollectors(reg, cs...)
}

// RegisterCollectors registers package-level collectors with a config's
// registry (nil: metrics are off), which Caddy makes anew at every load;
// registering one that is already there is not an error.
func RegisterCollectors(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			if _, already := errors.AsType[prometheus.AlreadyRegisteredError](err); !already {
				return err
			}
		}
	}
	return nil
}

// Packet results, the `result` label.
const (
	resultFulfill    = "fulfill"
	resultReject     = "reject"
	resultEdgeReject = "edge_reject"
)

// peerMetrics are one peer's series, looked up once at provisioning so
// that counting a packet is a few atomic adds, not label hashing.
type peerMetrics struct {
	fulfilled, rejected, edgeRejected prometheus.Counter
	amount                            prometheus.Counter
	fulfillTime, rejectTime, edgeTime prometheus.Observer
	ildcp, ccp                        prometheus.Counter // peer protocol answers the edge made
}

func newPeerMetrics(name string) *peerMetrics {
	return &peerMetrics{
		fulfilled:    metricPackets.WithLabelValues(name, resultFulfill),
		rejected:     metricPackets.WithLabelValues(name, resultReject),
		edgeRejected: metricPackets.WithLabelValues(name, resultEdgeReject),
		amount:       metricFulfilledAmount.WithLabelValues(name),
		fulfillTime:  metricPacketDuration.WithLabelValues(name, resultFulfill),
		rejectTime:   metricPacketDuration.WithLabelValues(name, resultReject),
		edgeTime:     metricPacketDuration.WithLabelValues(name, resultEdgeReject),
		ildcp:        metricPeerProtocol.WithLabelValues(name, "ildcp"),
		ccp:          metricPeerProtocol.WithLabelValues(name, "ccp"),
	}
}

// countPeerProtocol records a peer protocol request the edge answered
// itself; it does nothing on a nil receiver (metrics off).
func (m *peerMetrics) countPeerProtocol(pkt *Packet) {
	switch {
	case m == nil:
	case string(pkt.prepare.Destination) == ilpdest.PeerConfig:
		m.ildcp.Inc()
	default:
		m.ccp.Inc()
	}
}

// codeLabel bounds the code label to what RFC 27 allows: a class letter
// and two digits; anything else a connector sends counts as "other".
func codeLabel(c ilpdest.Code) string {
	if (c[0] == 'F' || c[0] == 'T' || c[0] == 'R') && '0' <= c[1] && c[1] <= '9' && '0' <= c[2] && c[2] <= '9' {
		return c.String()
	}
	return "other"
}

// authFailureLabels names the credential method and reason of an
// authentication error.
func authFailureLabels(err error) (method, reason string) {
	for _, k := range authFailureKinds {
		if errors.Is(err, k.err) {
			return k.method, k.reason
		}
	}
	return "jwt", "malformed"
}

// authFailureKinds are the auth failures by label; a JWT that fails
// otherwise is jwt/malformed.
var authFailureKinds = []struct {
	err            error
	method, reason string
}{
	{errNoCredentials, "none", "missing"},
	{errUnknownToken, "token", "unknown"},
	{errJWTSignature, "jwt", "signature"},
	{errJWTExpired, "jwt", "expired"},
	{errJWTNotYet, "jwt", "not_yet_valid"},
	{errJWTAlg, "jwt", "algorithm"},
	{errJWTNoExp, "jwt", "no_exp"},
}

// zeroSeries creates at 0 the series that can occur before the first
// event does, so that rates and alerts on them work from the start: every
// auth failure kind, and for each peer the Rejects the edge itself makes.
func zeroSeries(peers []*peer) {
	for _, k := range authFailureKinds {
		metricAuthFailures.WithLabelValues(k.method, k.reason)
	}
	metricAuthFailures.WithLabelValues("jwt", "malformed")
	for _, p := range peers {
		for _, c := range edgeRejectCodes {
			metricRejects.WithLabelValues(p.name, c.String(), "edge")
		}
	}
}
