package proxy

import (
	"cmp"
	"fmt"
	"math"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// upstream is one of ilp_proxy's connectors.
type upstream struct {
	scheme string // http, https or h2c
	addr   string // host:port: the rendezvous key, as reverse_proxy's Dial is
	path   string // request path; may hold placeholders
	// pathReplace is set when path holds placeholders to fill per request.
	pathReplace bool
	state       *upstreamState
	metrics     *upstreamMetrics // nil: metrics off
}

// upstreamState is what outlives a config reload, shared through a
// caddy.UsagePool: the connections (so a reload causes no reconnect
// storm, and packets in flight finish on them) and the health.
type upstreamState struct {
	h1        *h1Pool         // http
	transport *http.Transport // h2c and https
	down      atomic.Bool     // active: the last health check failed
	// passive holds the failures within fail_duration in its low 32 bits
	// and, above them, how many times a passing health check has cleared
	// them: a failure's expiry then takes back only a failure it counted.
	passive atomic.Uint64
	key     string
}

// upstreamStates holds every upstream's state, keyed by everything the
// state was built from.
var upstreamStates = caddy.NewUsagePool()

// Destruct implements caddy.Destructor: the last config using the
// upstream is gone.
func (s *upstreamState) Destruct() error {
	if s.h1 != nil {
		s.h1.close()
	}
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
	return nil
}

// parseUpstream reads "scheme://host:port/path", where scheme is http
// (the default), https or h2c, and the path (default /) may hold
// placeholders such as {http.ilp.peer}.
func parseUpstream(s string) (*upstream, error) {
	u := &upstream{scheme: "http"}
	rest := s
	if scheme, after, ok := strings.Cut(s, "://"); ok {
		u.scheme, rest = strings.ToLower(scheme), after
	}
	host, path, hasPath := strings.Cut(rest, "/")
	u.path = "/" + path
	if !hasPath {
		u.path = "/"
	}
	defaultPort := "80"
	switch u.scheme {
	case "http", "h2c":
	case "https":
		defaultPort = "443"
	default:
		return nil, fmt.Errorf("upstream %q: scheme must be http, https or h2c", s)
	}
	if host == "" {
		return nil, fmt.Errorf("upstream %q: no host", s)
	}
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(strings.Trim(host, "[]"), defaultPort)
	}
	u.addr = host
	if strings.ContainsAny(u.path, " \t\r\n?#") {
		return nil, fmt.Errorf("upstream %q: the path may not hold spaces, a query or a fragment", s)
	}
	u.pathReplace = strings.Contains(u.path, "{")
	return u, nil
}

// stateKey is everything u's shared state is built from under p's
// settings: configs that agree on it share connections and health.
func (u *upstream) stateKey(p *Proxy) string {
	key := fmt.Sprintf("%s://%s dial=%v keepalive=%v idle=%d",
		u.scheme, u.addr, time.Duration(p.DialTimeout), time.Duration(p.KeepAlive), p.KeepAliveIdleConns)
	if u.scheme == "https" {
		key += " tls=" + p.tlsKey
	}
	return key
}

// connect finds or makes the shared state of u for these settings.
func (u *upstream) connect(p *Proxy) error {
	key := u.stateKey(p)
	v, _, err := upstreamStates.LoadOrNew(key, func() (caddy.Destructor, error) {
		s := &upstreamState{key: key}
		if u.scheme == "http" {
			s.h1 = &h1Pool{addr: u.addr, dialTimeout: time.Duration(p.DialTimeout),
				idleTimeout: time.Duration(p.KeepAlive), maxIdle: p.KeepAliveIdleConns}
			return s, nil
		}
		dialer := &net.Dialer{Timeout: time.Duration(p.DialTimeout)}
		t := &http.Transport{
			DialContext:         dialer.DialContext,
			MaxIdleConnsPerHost: cmp.Or(p.KeepAliveIdleConns, math.MaxInt32), // 0 would be net/http's 2
			IdleConnTimeout:     time.Duration(p.KeepAlive),
			TLSClientConfig:     p.tlsConfig.Clone(),
			Protocols:           new(http.Protocols),
		}
		if u.scheme == "h2c" {
			t.Protocols.SetUnencryptedHTTP2(true)
		} else {
			t.Protocols.SetHTTP1(true)
			t.Protocols.SetHTTP2(true)
		}
		s.transport = t
		return s, nil
	})
	if err != nil {
		return err
	}
	u.state = v.(*upstreamState)
	return nil
}

// release gives up u's shared state; it reports whether u was its last
// user, whose leaving closed the idle connections.
func (u *upstream) release() bool {
	deleted, _ := upstreamStates.Delete(u.state.key)
	return deleted
}

// healthy reports whether u may be given packets: its last active health
// check (if any) passed and it has failed fewer than maxFails times within
// fail_duration (if passive health is on).
func (u *upstream) healthy(maxFails int32) bool {
	return !u.state.down.Load() && int64(u.state.failures()) < int64(maxFails)
}

// failures is how many passive failures count now.
func (s *upstreamState) failures() uint32 { return uint32(s.passive.Load()) }

// countFailure records a failed exchange for failDuration, or until a
// passing health check clears it.
func (u *upstream) countFailure(failDuration time.Duration, maxFails int32) {
	if failDuration <= 0 {
		return
	}
	epoch := u.state.passive.Add(1) >> 32
	u.metrics.setHealthy(u.healthy(maxFails))
	time.AfterFunc(failDuration, func() {
		for {
			v := u.state.passive.Load()
			if v>>32 != epoch || u.state.passive.CompareAndSwap(v, v-1) {
				break
			}
		}
		u.metrics.setHealthy(u.healthy(maxFails))
	})
}

// clearFailures forgets the passive failures: a passing active health
// check shows the upstream is back, and a connector restarted in a rolling
// update should not sit out the rest of its fail_duration. It reports
// whether there were any.
func (u *upstream) clearFailures() bool {
	for {
		v := u.state.passive.Load()
		if uint32(v) == 0 {
			return false
		}
		if u.state.passive.CompareAndSwap(v, (v>>32+1)<<32) {
			return true
		}
	}
}
