package handler

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// Defaults of the ilp_proxy options.
const (
	DefaultMaxHold            = 30 * time.Second
	DefaultDialTimeout        = 3 * time.Second
	DefaultKeepAlive          = 4 * time.Second
	DefaultKeepAliveIdleConns = 64
	DefaultHealthInterval     = 30 * time.Second
	DefaultHealthTimeout      = 5 * time.Second
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
// got the Prepare twice could forward it twice.
//
// It waits for a reply until the packet's expiry (the deadline ilp_edge
// sets) or max_hold, whichever is first. Failures are handler errors that
// ilp_edge turns into Rejects as it does for reverse_proxy: no upstream
// reachable (502, 503) is T01, the packet's expiry passing is R00,
// anything else T00.
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

	// The longest a packet waits for its reply, whatever its expiry.
	// Default: 30s.
	MaxHold caddy.Duration `json:"max_hold,omitempty"`

	// How long to wait for a connection to an upstream. Default: 3s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`

	// How long an idle connection is kept for reuse. Keep it below the
	// backends' own keep-alive timeout (node's is 5s), or a packet may be
	// written onto a connection the backend is closing. Default: 4s.
	KeepAlive caddy.Duration `json:"keepalive,omitempty"`

	// The most idle connections kept per upstream. Default: 64.
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
	p.segments = DefaultPrefixSegments
	if p.PrefixSegments != nil {
		p.segments = *p.PrefixSegments
	}
	setDefault(&p.MaxHold, DefaultMaxHold)
	setDefault(&p.DialTimeout, DefaultDialTimeout)
	setDefault(&p.KeepAlive, DefaultKeepAlive)
	setDefault(&p.HealthInterval, DefaultHealthInterval)
	setDefault(&p.HealthTimeout, DefaultHealthTimeout)
	if p.KeepAliveIdleConns == 0 {
		p.KeepAliveIdleConns = DefaultKeepAliveIdleConns
	}
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

// Validate checks the configuration.
func (p *Proxy) Validate() error {
	switch {
	case len(p.static.upstreams) == 0 && p.dynamic == nil:
		return errors.New("no upstreams")
	case p.dynamic != nil:
		return checkDynamic(p.DynamicScheme, p.DynamicPath)
	case p.segments < 0:
		return fmt.Errorf("prefix_segments must not be negative, got %d", p.segments)
	case p.MaxFails < 0 || p.KeepAliveIdleConns < 0:
		return errors.New("max_fails and keepalive_idle_conns must not be negative")
	case p.HealthURI != "" && p.HealthURI[0] != '/':
		return fmt.Errorf("health_uri %q must start with /", p.HealthURI)
	}
	return nil
}

// Cleanup stops the health checks and releases the upstreams' shared state;
// the last config to release an upstream closes its idle connections.
func (p *Proxy) Cleanup() error {
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

// ServeHTTP implements caddyhttp.MiddlewareHandler. It is a terminal
// handler: next is never called.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	// After ilp_edge the body is its packet, already read and checked.
	pkt, ok := r.Body.(*packet)
	if !ok {
		var err error
		if pkt, err = readPacket(r); err != nil {
			return err
		}
	}
	set := p.upstreamsFor(r)
	key := ilpdest.Prefix(pkt.destination, p.segments)
	var orderBuf [maxStackUpstreams]int
	order := ilpdest.Rank(key, set.names, orderBuf[:0])

	deadline := time.Now().Add(time.Duration(p.MaxHold))
	expiry, hasExpiry := r.Context().Deadline()
	if hasExpiry && expiry.Before(deadline) {
		deadline = expiry
	}
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	bufp := replyBufPool.Get().(*[]byte)
	defer replyBufPool.Put(bufp)

	var lastErr error
	tried := 0
	for rank, i := range order {
		u := set.upstreams[i]
		if !u.healthy(p.maxFails) {
			continue
		}
		tried++
		reply, err := u.exchange(r, repl, pkt.body, deadline, (*bufp)[:0])
		u.metrics.count(err)
		if err == nil {
			caddyhttp.SetVar(r.Context(), VarUpstreamRank, rank)
			if rank > 0 && !p.DisableMetrics {
				metricRerouted.Inc()
			}
			h := w.Header()
			h["Content-Type"] = octetStream
			w.WriteHeader(reply.status)
			_, err = w.Write(reply.body)
			*bufp = reply.body[:0]
			return err
		}
		u.countFailure(time.Duration(p.FailDuration), p.maxFails)
		lastErr = err
		var fe *forwardError
		if !errors.As(err, &fe) || fe.sent || !time.Now().Before(deadline) {
			break
		}
		if c := p.logger.Check(zap.DebugLevel, "packet not delivered, trying the next upstream"); c != nil {
			c.Write(zap.String("upstream", u.addr), zap.Error(err))
		}
	}
	if tried == 0 {
		return caddyhttp.Error(http.StatusServiceUnavailable, errors.New("ilp_proxy: no healthy upstream"))
	}
	if errors.Is(lastErr, os.ErrDeadlineExceeded) || errors.Is(lastErr, context.DeadlineExceeded) {
		if hasExpiry && !deadline.Before(expiry) {
			// The packet expired. ilp_edge tells that from its context,
			// whose timer, if something started one (the h2 transport
			// does), may lag the connection's by a moment.
			<-r.Context().Done()
			return caddyhttp.Error(http.StatusGatewayTimeout, fmt.Errorf("ilp_proxy: packet expired: %w", lastErr))
		}
		return caddyhttp.Error(http.StatusGatewayTimeout, fmt.Errorf("ilp_proxy: no reply within max_hold: %w", lastErr))
	}
	return caddyhttp.Error(http.StatusBadGateway, fmt.Errorf("ilp_proxy: %w", lastErr))
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

// readPacket reads the body when ilp_proxy runs without ilp_edge before it.
func readPacket(r *http.Request) (*packet, error) {
	pkt := new(packet)
	tooLarge, err := pkt.readBody(r, DefaultMaxPacketSize)
	if tooLarge {
		return nil, caddyhttp.Error(http.StatusRequestEntityTooLarge, errors.New("ilp_proxy: body over 40000 bytes"))
	}
	if err != nil {
		return nil, caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("ilp_proxy: reading body: %w", err))
	}
	prepare, err := ilpdest.ReadPrepareHeader(pkt.body)
	if err != nil {
		return nil, caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("ilp_proxy: %w", err))
	}
	pkt.destination = string(prepare.Destination)
	return pkt, nil
}

// upstreamReply is an upstream's answer; body aliases a pooled buffer.
type upstreamReply struct {
	status int
	body   []byte
}

// exchange sends one packet to u and reads the reply into buf.
func (u *upstream) exchange(r *http.Request, repl *caddy.Replacer, body []byte, deadline time.Time, buf []byte) (upstreamReply, error) {
	path := u.path
	if u.pathReplace && repl != nil {
		path = repl.ReplaceKnown(path, "")
	}
	if u.state.h1 != nil {
		return u.state.h1.roundTrip(&h1Request{path: path, host: u.addr, header: r.Header, body: body}, deadline, buf)
	}
	return u.roundTripHTTP2(r, path, body, deadline, buf)
}

// roundTripHTTP2 sends one packet over h2c or https with net/http's
// Transport, which multiplexes streams on one connection and itself
// retries a stream the server refused before processing it.
func (u *upstream) roundTripHTTP2(r *http.Request, path string, body []byte, deadline time.Time, buf []byte) (upstreamReply, error) {
	scheme := "https://"
	if u.scheme == "h2c" {
		scheme = "http://"
	}
	ctx, cancel := context.WithDeadline(r.Context(), deadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+u.addr+path, bytes.NewReader(body))
	if err != nil {
		return upstreamReply{}, &forwardError{upstream: u.addr, err: err}
	}
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	req.Header = make(http.Header, len(r.Header))
	for k, v := range r.Header {
		if !hopByHop(k) {
			req.Header[k] = v
		}
	}
	resp, err := u.state.transport.RoundTrip(req)
	if err != nil {
		var op *net.OpError
		dialFailed := errors.As(err, &op) && op.Op == "dial"
		return upstreamReply{}, &forwardError{upstream: u.addr, sent: !dialFailed, err: err}
	}
	defer resp.Body.Close()
	reply, err := readAllInto(resp.Body, buf)
	if err != nil {
		return upstreamReply{}, &forwardError{upstream: u.addr, sent: true, err: err}
	}
	return upstreamReply{status: resp.StatusCode, body: reply}, nil
}

// checkHealthEvery runs the active health checks until ctx ends.
func (p *Proxy) checkHealthEvery(ctx context.Context) {
	t := time.NewTicker(time.Duration(p.HealthInterval))
	defer t.Stop()
	for {
		for _, u := range p.static.upstreams {
			cctx, cancel := context.WithTimeout(ctx, time.Duration(p.HealthTimeout))
			err := u.checkHealth(cctx, p.HealthURI)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if wasDown := u.state.down.Swap(err != nil); wasDown != (err != nil) {
				u.metrics.setHealthy(u.healthy(p.maxFails))
				if err != nil {
					p.logger.Warn("upstream unhealthy", zap.String("upstream", u.addr), zap.Error(err))
				} else {
					p.logger.Info("upstream healthy", zap.String("upstream", u.addr))
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Proxy)(nil)
	_ caddy.Validator             = (*Proxy)(nil)
	_ caddy.CleanerUpper          = (*Proxy)(nil)
	_ caddyhttp.MiddlewareHandler = (*Proxy)(nil)
)
