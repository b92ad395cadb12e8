package frontdoor

import (
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// metricRefusals counts what the HTTP/1.1 and HTTP/2 servers refuse
// themselves, which no handler sees and so no ilp_edge metric counts.
// Every label value comes from the config or a small fixed set.
var metricRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "caddy", Subsystem: "ilp", Name: "front_door_refusals_total",
	Help: "Requests and connections the ilp app's front door refused before ilp_edge, by server, protocol (h1, h2) " +
		"and answer: an HTTP status, or RST_STREAM or GOAWAY with its HTTP/2 error code.",
}, []string{"server", "protocol", "answer"})

// connectionsDesc is the front doors' open connections, read from their
// servers when Prometheus scrapes, so that a connection costs nothing
// more to serve.
var connectionsDesc = prometheus.NewDesc("caddy_ilp_front_door_connections",
	"Connections the ilp app's front door is serving, by server and protocol (h1, h2).",
	[]string{"server", "protocol"}, nil)

// openConns is the collector of the running servers' open connections.
var openConns = &connCollector{servers: map[*Server]struct{}{}}

type connCollector struct {
	mu      sync.Mutex
	servers map[*Server]struct{} // started and not yet stopped
}

func (c *connCollector) add(s *Server) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.servers[s] = struct{}{}
}

func (c *connCollector) remove(s *Server) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.servers, s)
}

func (c *connCollector) Describe(ch chan<- *prometheus.Desc) { ch <- connectionsDesc }

// Collect adds up the servers of the same name: during a reload, the
// stopping config's and the new one's.
func (c *connCollector) Collect(ch chan<- prometheus.Metric) {
	type series struct{ server, protocol string }
	open := map[series]int{}
	c.mu.Lock()
	for s := range c.servers {
		open[series{s.name, "h1"}] += s.srv.OpenConns()
		open[series{s.name, "h2"}] += s.srv2.OpenConns()
	}
	c.mu.Unlock()
	for k, n := range open {
		ch <- prometheus.MustNewConstMetric(connectionsDesc, prometheus.GaugeValue, float64(n), k.server, k.protocol)
	}
}

// refusedH1 is h1.Server's Refused.
func (s *Server) refusedH1(remote net.Addr, status int, reason string) {
	s.refused(remote, "h1", strconv.Itoa(status), reason)
}

// refusedH2 is h2.Server's Refused.
func (s *Server) refusedH2(remote net.Addr, answer, reason string) {
	s.refused(remote, "h2", answer, reason)
}

// refused counts a refusal, and logs it at debug level, at most once a
// second for each answer, so that a flood of bad requests does not flood
// the log.
func (s *Server) refused(remote net.Addr, protocol, answer, reason string) {
	metricRefusals.WithLabelValues(s.name, protocol, answer).Inc()
	if c := s.logger.Check(zap.DebugLevel, "front door refused a request"); c != nil && s.refusalLog.Allow(protocol+" "+answer, time.Now()) {
		c.Write(zap.String("remote", remote.String()), zap.String("protocol", protocol),
			zap.String("answer", answer), zap.String("reason", reason))
	}
}
