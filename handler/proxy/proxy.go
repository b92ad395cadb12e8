// Package proxy holds ilp_proxy, a forwarder made for ILP over HTTP: its
// configuration and Caddyfile, upstream pools and health, dynamic
// upstreams, HTTP/1.1 client and metrics. It implements the forwarder side
// of package handler's contract (handler/forward.go).
package proxy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/internal/loglimit"
)

// Defaults of the ilp_proxy options.
const (
	DefaultDialTimeout    = 3 * time.Second
	DefaultKeepAlive      = 4 * time.Second
	DefaultHealthInterval = 30 * time.Second
	DefaultHealthTimeout  = 5 * time.Second
)

// Proxy is the `ilp_proxy` handler: a forwarder made for ILP over HTTP, used
// after ilp_edge in place of reverse_proxy. An ILP exchange is one small
// POST answered by one small body, so it skips what a general reverse
// proxy does per request (cloning headers, streaming, goroutine handoffs)
// and writes the packet's exact bytes onto a pooled connection.
//
// It routes like `lb_policy ilp_prefix`, with the same rendezvous ranking
// of the same keys (the upstreams' host:port), so switching between the
// two moves no prefix. A packet is tried on the key's next-ranked healthy
// upstream only when it certainly did not reach a backend: the dial failed,
// or the connection failed before a byte of the request was written. Once
// a backend may have seen it, the failure is final, since a connector that
// got the Prepare twice could forward it twice. When no healthy upstream
// takes it, the ones health has marked down are tried the same way, in
// rank order: health is a hint, and rejecting every packet because each
// connector failed once within fail_duration would turn a rolling restart
// into an outage.
//
// It waits for a reply until the packet's expiry (the deadline ilp_edge
// sets) or max_hold, whichever is first. A failure is a
// *handler.ForwardError saying how far the packet got, from which ilp_edge
// makes the peer's Reject with the same table as for reverse_proxy.
type Proxy struct {
	// The connectors: `http://host:port[/path]` (HTTP/1.1, the default
	// scheme), `h2c://host:port[/path]` (HTTP/2 without TLS, with prior
	// knowledge) or `https://host:port[/path]`. The path (default `/`) may
	// hold placeholders, e.g. `/accounts/{http.ilp.peer}/ilp` for
	// interledger-rs.
	Upstreams []string `json:"upstreams,omitempty"`

	// Upstreams found at request time by one of reverse_proxy's dynamic
	// upstream modules (`a`, `srv`, `multi`, …), used instead of the
	// static ones, which remain the fallback when a lookup fails. Each
	// address found is reached as dynamic_scheme://host:port dynamic_path.
	// Only passive health checks apply to them, as with reverse_proxy.
	DynamicUpstreamsRaw json.RawMessage `json:"dynamic_upstreams,omitempty" caddy:"namespace=http.reverse_proxy.upstreams inline_key=source"`

	// The scheme of dynamic upstreams: http (the default), h2c or https.
	DynamicScheme string `json:"dynamic_scheme,omitempty"`

	// The request path of dynamic upstreams, which may hold placeholders.
	// Default: /.
	DynamicPath string `json:"dynamic_path,omitempty"`

	// TLS settings for https:// upstreams, as reverse_proxy's `transport
	// http { tls_* }`: trust pool, client certificate, server name. By
	// default the system's roots verify the upstreams' certificates.
	TLS *reverseproxy.TLSConfig `json:"tls,omitempty"`

	// How many leading segments of the destination form the routing key,
	// as in ilp_prefix. 0 uses the whole address. Default: 3.
	PrefixSegments *int `json:"prefix_segments,omitempty"`

	// What is hashed to choose the upstream, as in ilp_prefix:
	// "destination" (default), "peer" (all of a peer's packets on one
	// connector) or "peer_destination".
	Key string `json:"key,omitempty"`

	// The longest a packet waits for its reply, whatever its expiry.
	// Default: 30s.
	MaxHold caddy.Duration `json:"max_hold,omitempty"`

	// How long to wait for a connection to an upstream. Default: 3s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`

	// How long an idle connection is kept for reuse. Keep it below the
	// backends' own keep-alive timeout (node's is 5s), or a packet may be
	// written onto a connection the backend is closing. Default: 4s.
	KeepAlive caddy.Duration `json:"keepalive,omitempty"`

	// The most idle connections kept per upstream. Default: no bound, so
	// that as many stay open as the packets in flight at once needed, each
	// closed once idle for keepalive: a bound below the packets in flight
	// makes a connection close at every answer and another be dialled.
	KeepAliveIdleConns int `json:"keepalive_idle_conns,omitempty"`

	// Passive health: how long a failed exchange counts against its
	// upstream. 0 (the default) turns passive health checks off.
	FailDuration caddy.Duration `json:"fail_duration,omitempty"`

	// Passive health: the failures within fail_duration after which an
	// upstream gets no packets. Default: 1.
	MaxFails int `json:"max_fails,omitempty"`

	// Active health: the path GET on each upstream, which must answer 2xx.
	// Empty (the default) turns active health checks off.
	HealthURI string `json:"health_uri,omitempty"`

	// Active health: the port health_uri is asked on, on each upstream's
	// host, in place of the upstream's own port: for connectors whose
	// health page is not where they take packets. rafiki authenticates
	// every request on its connector port, so a health check there gets
	// 401; its health is `/healthz` on its admin port. The check keeps
	// the upstream's scheme and transport, as reverse_proxy's does: an
	// h2c upstream's health port is asked in HTTP/2 with prior knowledge,
	// an https upstream's over TLS with the same settings, so that port
	// must speak what the upstream's does. Needs health_uri. Like every
	// active check, it applies to the static upstreams only. Default: 0,
	// the upstream's own port.
	HealthPort int `json:"health_port,omitempty"`

	// Active health: how often each upstream is checked. Default: 30s.
	HealthInterval caddy.Duration `json:"health_interval,omitempty"`

	// Active health: how long a check may take. Default: 5s.
	HealthTimeout caddy.Duration `json:"health_timeout,omitempty"`

	// Turn off the caddy_ilp_upstream_* and caddy_ilp_rerouted_total
	// Prometheus metrics.
	DisableMetrics bool `json:"disable_metrics,omitempty"`

	static     upstreamSet
	dynamic    *dynamicUpstreams // nil: no dynamic upstreams
	tlsConfig  *tls.Config       // from TLS, for https upstreams
	tlsKey     string            // TLS as JSON, part of the shared state's key
	segments   int
	maxFails   int32 // MaxFails, or no limit when passive health is off
	logger     *zap.Logger
	rerouteLog *loglimit.Limiter // packets delivered past their first choice, per skipped upstream
	tableLog   *loglimit.Limiter // peers' shared routing tables that could not be used, per peer
	stopHealth context.CancelFunc
}

// CaddyModule returns the Caddy module information.
func (Proxy) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.ilp_proxy",
		New: func() caddy.Module { return new(Proxy) },
	}
}

// Provision sets defaults and connects the upstreams to their shared
// connection pools and health state.
func (p *Proxy) Provision(ctx caddy.Context) error {
	p.logger = ctx.Logger()
	p.rerouteLog = &loglimit.Limiter{Interval: time.Second}
	p.tableLog = &loglimit.Limiter{Interval: 10 * time.Second}
	p.segments = p.RoutingSegments()
	if p.Key == "" {
		p.Key = handler.KeyDestination
	}
	setDefault(&p.MaxHold, handler.DefaultMaxHold)
	setDefault(&p.DialTimeout, DefaultDialTimeout)
	setDefault(&p.KeepAlive, DefaultKeepAlive)
	setDefault(&p.HealthInterval, DefaultHealthInterval)
	setDefault(&p.HealthTimeout, DefaultHealthTimeout)
	if p.MaxFails == 0 {
		p.MaxFails = 1
	}
	p.maxFails = int32(p.MaxFails)
	if p.FailDuration == 0 {
		p.maxFails = 1 << 30 // passive health off: failures are not counted
	}
	if !p.DisableMetrics {
		if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	p.tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if p.TLS != nil {
		// Before loading: loading the trust pool module clears its JSON.
		key, err := json.Marshal(p.TLS)
		if err != nil {
			return err
		}
		p.tlsKey = string(key)
		if p.tlsConfig, err = p.TLS.MakeTLSClientConfig(ctx); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
	}
	for _, raw := range p.Upstreams {
		u, err := p.newUpstream(raw)
		if err != nil {
			return err
		}
		if !p.static.add(u) {
			u.release()
			return fmt.Errorf("upstream %q: %s is listed twice", raw, u.addr)
		}
	}
	if p.DynamicUpstreamsRaw != nil {
		if p.DynamicScheme == "" {
			p.DynamicScheme = "http"
		}
		if p.DynamicPath == "" {
			p.DynamicPath = "/"
		}
		mod, err := ctx.LoadModule(p, "DynamicUpstreamsRaw")
		if err != nil {
			return fmt.Errorf("loading dynamic upstreams: %w", err)
		}
		p.dynamic = &dynamicUpstreams{source: mod.(reverseproxy.UpstreamSource), proxy: p}
	}
	if p.HealthURI != "" {
		hctx, cancel := context.WithCancel(context.Background())
		p.stopHealth = cancel
		go p.checkHealthEvery(hctx)
	}
	register(p) // for the admin API
	p.logger.Info("ilp_proxy ready", zap.Strings("upstreams", p.static.names), zap.Int("prefix_segments", p.segments), zap.String("key", p.Key),
		zap.Bool("dynamic_upstreams", p.dynamic != nil), zap.Bool("passive_health", p.FailDuration > 0),
		zap.Bool("active_health", p.HealthURI != ""))
	return nil
}

// newUpstream parses raw and connects it to its shared state.
func (p *Proxy) newUpstream(raw string) (*upstream, error) {
	u, err := parseUpstream(raw)
	if err != nil {
		return nil, err
	}
	if err := u.connect(p); err != nil {
		return nil, err
	}
	if !p.DisableMetrics {
		u.metrics = newUpstreamMetrics(u.addr)
		u.metrics.setHealthy(u.healthy(p.maxFails))
	}
	return u, nil
}

func setDefault(d *caddy.Duration, v time.Duration) {
	if *d == 0 {
		*d = caddy.Duration(v)
	}
}

// Validate checks the configuration, every field whatever the others.
func (p *Proxy) Validate() error {
	if len(p.static.upstreams) == 0 && p.dynamic == nil {
		return errors.New("no upstreams")
	}
	if p.dynamic != nil {
		if err := checkDynamic(p.DynamicScheme, p.DynamicPath); err != nil {
			return err
		}
	}
	if p.segments < 0 {
		return fmt.Errorf("prefix_segments must not be negative, got %d", p.segments)
	}
	if err := handler.CheckRouteKey(p.Key); err != nil {
		return err
	}
	if p.MaxFails < 0 {
		return fmt.Errorf("max_fails must not be negative, got %d", p.MaxFails)
	}
	if p.KeepAliveIdleConns < 0 {
		return fmt.Errorf("keepalive_idle_conns must not be negative, got %d", p.KeepAliveIdleConns)
	}
	for name, d := range map[string]caddy.Duration{
		"max_hold": p.MaxHold, "dial_timeout": p.DialTimeout, "keepalive": p.KeepAlive,
		"fail_duration": p.FailDuration, "health_interval": p.HealthInterval, "health_timeout": p.HealthTimeout,
	} {
		if d < 0 {
			return fmt.Errorf("%s must not be negative, got %v", name, time.Duration(d))
		}
	}
	if p.HealthURI != "" && p.HealthURI[0] != '/' {
		return fmt.Errorf("health_uri %q must start with /", p.HealthURI)
	}
	if p.HealthPort < 0 || p.HealthPort > 65535 {
		return fmt.Errorf("health_port must be a port number, 0 to 65535, got %d", p.HealthPort)
	}
	if p.HealthPort != 0 && p.HealthURI == "" {
		// reverse_proxy turns active checks on with a port alone and GETs
		// /, rarely a connector's health page: say what is missing
		// rather than guess a path.
		return fmt.Errorf("health_port %d without health_uri: set health_uri to the path to GET on that port (active health checks are off without it)", p.HealthPort)
	}
	return nil
}

// Cleanup stops the health checks and releases the upstreams' shared state;
// the last config to release an upstream closes its idle connections.
func (p *Proxy) Cleanup() error {
	unregister(p)
	if p.stopHealth != nil {
		p.stopHealth()
	}
	for _, u := range p.static.upstreams {
		u.release()
	}
	if p.dynamic != nil {
		p.dynamic.close()
	}
	return nil
}

var replyBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// stackUpstreams is how many upstreams a packet is ranked over without
// allocating.
const stackUpstreams = 32

var octetStream = []string{"application/octet-stream"}

var errNoUpstream = errors.New("ilp_proxy: no upstream")

// ServeHTTP implements caddyhttp.MiddlewareHandler. It is a terminal
// handler: next is never called.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	pkt := handler.PacketFrom(r)
	if pkt == nil {
		// No ilp_edge before: read the body here.
		var err error
		if pkt, err = handler.ReadPacket(r, handler.DefaultMaxPacketSize); err != nil {
			return fmt.Errorf("ilp_proxy: %w", err)
		}
	}
	set := p.upstreamsFor(r)
	key := handler.PacketRouteKey(pkt, p.Key, p.segments)
	var orderBuf [stackUpstreams]int
	order := ilpdest.Rank(key, set.names, orderBuf[:0])

	deadline := time.Now().Add(time.Duration(p.MaxHold))
	if expiry, ok := r.Context().Deadline(); ok && expiry.Before(deadline) {
		deadline = expiry
	}
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if pkt.FanOut() {
		return p.fanOut(w, r, repl, pkt, set, order, key, deadline)
	}
	var table *heldTable
	if pkt.RouteControl() {
		table = p.holdTable(r.Context(), pkt, deadline)
		defer table.release(p)
	}
	bufp := replyBufPool.Get().(*[]byte)
	defer replyBufPool.Put(bufp)

	reply, u, err := p.deliver(r, repl, pkt, set, order, key, deadline, (*bufp)[:0])
	if err != nil {
		return caddyhttp.Error(err.Failure.HTTPStatus(), err)
	}
	if table != nil && acceptedUpdate(reply, nil) {
		table.controlAccepted(u.addr, pkt.Prepare().Data)
	}
	w.Header()["Content-Type"] = octetStream
	w.WriteHeader(reply.status)
	var werr error
	if len(reply.body) > 0 { // a 204 or 304 may have none
		_, werr = w.Write(reply.body)
	}
	*bufp = reply.body[:0]
	return werr
}

// deliver sends the packet to the first upstream in order that takes it,
// and returns its reply (in buf) and the upstream. The healthy upstreams
// come first, in rank order; then, if none took the packet, the
// marked-down ones in rank order too, as Envoy's panic mode does. During
// a rolling restart passive health can mark every connector down while
// all are back; a marked-down one that is really gone refuses the
// connection, and the packet moves on undelivered.
func (p *Proxy) deliver(r *http.Request, repl *caddy.Replacer, pkt *handler.Packet, set *upstreamSet, order []int,
	key string, deadline time.Time, buf []byte,
) (upstreamReply, *upstream, *handler.ForwardError) {
	var last *handler.ForwardError
	for _, healthy := range [2]bool{true, false} {
		for rank, i := range order {
			u := set.upstreams[i]
			if u.healthy(p.maxFails) != healthy || pkt.RouteMissed(u.addr) {
				continue
			}
			pkt.SetRoute(r, key, u.addr, rank)
			reply, err := p.exchangeCounted(r, repl, u, pkt.Bytes(), deadline, buf)
			if err == nil {
				if rank > 0 {
					p.logRerouted(set.names[order[0]], u.addr, key, rank)
				}
				return reply, u, nil
			}
			last = err
			if last.Failure != handler.NotDelivered || !time.Now().Before(deadline) {
				return upstreamReply{}, nil, last
			}
			if c := p.logger.Check(zap.DebugLevel, "packet not delivered, trying the next upstream"); c != nil {
				c.Write(zap.String("upstream", u.addr), zap.Bool("healthy", healthy), zap.Error(err))
			}
		}
	}
	if last == nil {
		last = &handler.ForwardError{Failure: handler.NoUpstream, Err: errNoUpstream}
	}
	return upstreamReply{}, nil, last
}

// exchangeCounted is u.exchange, counted in u's metrics and, when it
// fails, in its passive health.
func (p *Proxy) exchangeCounted(r *http.Request, repl *caddy.Replacer, u *upstream, body []byte, deadline time.Time,
	buf []byte,
) (upstreamReply, *handler.ForwardError) {
	reply, err := u.exchange(r, repl, body, deadline, buf)
	u.metrics.count(err)
	if err != nil {
		u.countFailure(time.Duration(p.FailDuration), p.maxFails)
	}
	return reply, err
}

// logRerouted counts a packet delivered past its prefix's first choice
// and says so at Info, at most once a second per skipped upstream.
func (p *Proxy) logRerouted(skipped, upstream, key string, rank int) {
	if !p.DisableMetrics {
		metricRerouted.Inc()
	}
	if !p.rerouteLog.Allow(skipped, time.Now()) {
		return
	}
	if c := p.logger.Check(zap.InfoLevel, "packet rerouted past its first choice"); c != nil {
		c.Write(zap.String("skipped", skipped), zap.String("upstream", upstream),
			zap.String("route_key", key), zap.Int("rank", rank))
	}
}

// upstreamsFor returns the upstreams to rank r's packet over: the dynamic
// source's current answer, else (no source, or its lookup failed) the
// static upstreams.
func (p *Proxy) upstreamsFor(r *http.Request) *upstreamSet {
	if p.dynamic == nil {
		return &p.static
	}
	set, err := p.dynamic.get(r)
	if err != nil {
		if c := p.logger.Check(zap.ErrorLevel, "dynamic upstream lookup failed; using the static upstreams"); c != nil {
			c.Write(zap.Error(err))
		}
		return &p.static
	}
	return set
}

// NeedsReplacer reports whether forwarding a request reads its
// replacer: for placeholders in an upstream's path, or for a dynamic
// upstream source (Caddy's read it). The ilp app's front door makes one
// per request only then.
func (p *Proxy) NeedsReplacer() bool {
	if p.dynamic != nil {
		return true
	}
	for _, u := range p.static.upstreams {
		if u.pathReplace {
			return true
		}
	}
	return false
}

// upstreamReply is an upstream's answer; body aliases a pooled buffer.
type upstreamReply struct {
	status int
	body   []byte
}

// exchange sends one packet to u and reads the reply into buf.
func (u *upstream) exchange(r *http.Request, repl *caddy.Replacer, body []byte, deadline time.Time, buf []byte) (upstreamReply, *handler.ForwardError) {
	path := u.path
	if u.pathReplace && repl != nil {
		path = repl.ReplaceKnown(path, "")
	}
	if u.state.h1 != nil {
		return u.state.h1.roundTrip(&h1Request{path: path, host: u.addr, header: r.Header, body: body}, deadline, buf)
	}
	return u.roundTripHTTP2(r, path, body, deadline, buf)
}

// forwardFailure classifies a failed exchange with the upstream at addr:
// sent tells whether any byte of the packet may have reached it.
func forwardFailure(addr string, sent bool, err error) *handler.ForwardError {
	return handler.FailedExchange(addr, sent, errors.Is(err, errMalformedReply), err)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Proxy)(nil)
	_ caddy.Validator             = (*Proxy)(nil)
	_ caddy.CleanerUpper          = (*Proxy)(nil)
	_ caddyhttp.MiddlewareHandler = (*Proxy)(nil)
)
