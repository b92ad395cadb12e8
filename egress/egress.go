// Package egress holds ilp_egress, the fleet's way out: a forwarder after
// ilp_edge that sends a connector's Prepare to the peer its request path
// names, at the URL and with the credentials the ilp_peers app holds for
// that peer, and relays the peer's reply. It implements the forwarder
// side of package handler's contract (handler/forward.go).
package egress

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/internal/loglimit"
	"github.com/ilp-edge/caddy-ilp/store"
)

// Defaults of the ilp_egress options.
const (
	DefaultPathPrefix = "/peers/"
	// A peer is across the internet, farther than a connector of the
	// fleet (ilp_proxy's 3s).
	DefaultDialTimeout = 5 * time.Second
	// Below node's 5s keep-alive timeout, as ilp_proxy's keepalive, for
	// HTTP/1.1 peers: a packet written onto a connection the peer is
	// closing may or may not have reached it, and cannot be resent.
	DefaultKeepAlive = 4 * time.Second
)

// Egress is the `ilp_egress` handler: the edge as the fleet's way out to
// its peers. The fleet's connectors send their outgoing Prepares to the
// edge as a peer of it (ilp_edge authenticates them, reads the Prepare,
// enforces their limits and its expiry, and makes every Reject); each
// request's path names the peer the packet is for, `<path_prefix><name>`
// or `<path_prefix><name>/…`, so that an ilp-plugin-http account's
// outgoing URL points at e.g. `http://edge:7770/peers/bob/`.
//
// The peer is looked up among the ilp_peers app's peers that have a `url`,
// and only there: a request never chooses where the edge connects. The
// packet's exact bytes are POSTed to that URL with ILP-Destination set and
// the edge's credential toward the peer (callback_token, or an HS256 JWT
// from callback_jwt_secret, re-signed before it nears its expiry; a client
// certificate from callback_tls), over one connection pool per peer:
// HTTP/2 when an https peer offers it, so one multiplexed connection
// carries the fleet's packets to it, else HTTP/1.1 with keep-alive. No
// proxy from the environment is used and no redirect is followed.
//
// A 200 reply is relayed byte for byte, another status as that status;
// ilp_edge checks the reply and turns what is not a Fulfill or Reject into
// its Reject. A failure is a *handler.ForwardError saying how far the
// packet got (handler/rejects.go makes the Reject). The wait ends at the
// request's deadline: the packet's expiry or ilp_edge's max_hold. A packet
// to a synchronous peer is sent once: after a failure the peer may have it.
//
// A peer with `mode async` (RFC 35 draft 3) gets the Prepare with a
// Request-Id of the edge's and callback_url as its Callback-Url; its
// reply, POSTed there to an ilp_edge with `replies`, is relayed once its
// Fulfill matches the Prepare's condition (async/pending.go, egress/async.go).
type Egress struct {
	// The path under which the peer's name is the next segment.
	// Default: /peers/.
	PathPrefix string `json:"path_prefix,omitempty"`

	// How long to wait for a connection to a peer, and for its TLS
	// handshake. Default: 5s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`

	// How long an idle connection to a peer is kept for reuse. Keep it
	// below HTTP/1.1 peers' own keep-alive timeout (node's is 5s).
	// Default: 4s.
	KeepAlive caddy.Duration `json:"keepalive,omitempty"`

	// Turn off the caddy_ilp_egress_* Prometheus metrics.
	DisableMetrics bool `json:"disable_metrics,omitempty"`

	// The edge's public URL where draft 3 peers (mode async) POST their
	// replies: a route with an ilp_edge that has `replies`. Sent as the
	// Callback-Url of every asynchronous Prepare. Required when a peer
	// with a url has mode async; an absolute http or https URL, which
	// may hold {env.*} placeholders.
	//
	// Behind a balancer the reply may land on any edge instance. With
	// the ilp_peers app's `redis`, the URL sent carries this instance's
	// name (a query parameter, `edge`), and an edge that gets a reply
	// for another relays it there through Redis; so every instance may
	// give the same, shared URL. Without it, give each instance a URL
	// that reaches it alone.
	CallbackURL string `json:"callback_url,omitempty"`

	callbackURL string       // CallbackURL, resolved, naming this edge when it has a store
	store       *store.Store // the ilp_peers app's; nil: replies only to this edge
	peers       map[string]*peer
	logger      *zap.Logger
	missLog     *loglimit.Limiter // packets for no peer
}

// CaddyModule returns the Caddy module information.
func (Egress) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.ilp_egress",
		New: func() caddy.Module { return new(Egress) },
	}
}

// Provision sets defaults and makes a connection pool for each peer of
// the ilp_peers app that has a url.
func (e *Egress) Provision(ctx caddy.Context) error {
	var app handler.PeersApp
	v, err := ctx.AppIfConfigured("ilp_peers")
	switch {
	case err == nil:
		app = *v.(*handler.PeersApp)
	case !errors.Is(err, caddy.ErrNotConfigured):
		return err
	}
	if app.Redis != nil {
		if e.store, err = store.Load(app.Redis, ctx.Logger()); err != nil {
			return err
		}
	}
	return e.provision(ctx, app.Peers)
}

// provision is Provision with the peers given, and e.store set if any.
func (e *Egress) provision(ctx caddy.Context, cfgs []*handler.Peer) error {
	e.logger = ctx.Logger()
	e.missLog = &loglimit.Limiter{Interval: 10 * time.Second}
	if e.PathPrefix == "" {
		e.PathPrefix = DefaultPathPrefix
	}
	if e.DialTimeout == 0 {
		e.DialTimeout = caddy.Duration(DefaultDialTimeout)
	}
	if e.KeepAlive == 0 {
		e.KeepAlive = caddy.Duration(DefaultKeepAlive)
	}
	if !e.DisableMetrics {
		if err := handler.RegisterCollectors(ctx.GetMetricsRegistry(), metricPackets, metricDuration); err != nil {
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	e.peers = make(map[string]*peer)
	repl := caddy.NewReplacer()
	if e.CallbackURL != "" {
		var err error
		if e.callbackURL, err = repl.ReplaceOrErr(e.CallbackURL, true, true); err != nil {
			return fmt.Errorf("callback_url: %w", err)
		}
		if err := checkCallbackURL(e.callbackURL); err != nil {
			return err
		}
		if e.store != nil {
			e.callbackURL = withEdge(e.callbackURL, e.store.ReplyEdge())
		}
	}
	var names []string
	for _, c := range cfgs {
		if c.EgressURL == "" {
			continue
		}
		p, err := newPeer(c, e.store, repl, time.Duration(e.DialTimeout), time.Duration(e.KeepAlive), !e.DisableMetrics)
		if err != nil {
			e.closePeers()
			return fmt.Errorf("peer %q: %w", c.Name, err)
		}
		if p.async && e.callbackURL == "" {
			e.closePeers()
			return fmt.Errorf("peer %q: mode async needs ilp_egress's callback_url: where the peer POSTs its replies", c.Name)
		}
		e.peers[c.Name] = p
		names = append(names, c.Name)
	}
	if len(e.peers) == 0 {
		e.logger.Warn("ilp_egress has no peer to send to: no peer of ilp_peers has a url")
	}
	register(e) // for the admin API
	e.logger.Info("ilp_egress ready", zap.String("path_prefix", e.PathPrefix), zap.Strings("peers", names))
	return nil
}

// Validate checks the configuration.
func (e *Egress) Validate() error {
	if err := checkPathPrefix(e.PathPrefix); err != nil {
		return err
	}
	if e.DialTimeout < 0 || e.KeepAlive < 0 {
		return errors.New("dial_timeout and keepalive must not be negative")
	}
	return nil
}

// checkPathPrefix: the peer's name is a whole segment after the prefix.
func checkPathPrefix(p string) error {
	if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") {
		return fmt.Errorf("path_prefix %q must start and end with /", p)
	}
	return nil
}

// Cleanup closes the idle connections to the peers; those in use close
// when their packets are answered.
func (e *Egress) Cleanup() error {
	unregister(e)
	e.closePeers()
	if e.store != nil {
		e.store.Release()
	}
	return nil
}

func (e *Egress) closePeers() {
	for _, p := range e.peers {
		p.close()
	}
}

// Errors of a packet that goes to no peer.
var (
	errNoPeer       = errors.New("ilp_egress: the path names no peer with a url")
	errWithoutEdge  = errors.New("ilp_egress: no ilp_edge before it: the fleet must authenticate to ilp_edge, which must run first in the route")
	octetStreamType = []string{"application/octet-stream"}
)

// ServeHTTP implements caddyhttp.MiddlewareHandler. It is a terminal
// handler: next is never called.
func (e *Egress) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	pkt := handler.PacketFrom(r)
	if pkt == nil {
		// Unlike ilp_proxy, never on its own: nobody would have
		// authenticated the sender, who could then send anything to any
		// peer with the edge's credentials.
		e.logger.Error(errWithoutEdge.Error())
		return caddyhttp.Error(http.StatusInternalServerError, errWithoutEdge)
	}
	name, _ := e.peerName(r.URL.Path)
	p := e.peers[name]
	if p == nil {
		e.logMiss(name, errNoPeer)
		return handler.NewForwardError(handler.NoUpstream, "", errNoPeer)
	}
	target, err := p.target(pkt)
	if err != nil {
		p.metrics.countRefused()
		return handler.NewUnreachable(err.Error())
	}
	settle, err := p.admit(r, pkt)
	if err != nil {
		p.metrics.countRefused()
		return err
	}
	pkt.SetRoute(r, "", p.host, 0)
	start := time.Now()
	var reply reply
	var ferr *handler.ForwardError
	if p.async {
		reply, ferr = p.sendAsync(r, pkt, target, e.store, e.callbackURL)
	} else {
		reply, ferr = p.send(r, pkt, target)
	}
	p.metrics.count(reply, ferr, time.Since(start))
	if settle != nil {
		settle(reply, ferr)
	}
	if ferr != nil {
		return caddyhttp.Error(ferr.Failure.HTTPStatus(), ferr)
	}
	w.Header()["Content-Type"] = octetStreamType
	w.WriteHeader(reply.status)
	if reply.status != http.StatusOK {
		// ilp_edge answers the connector T00: the peer's error page is of
		// no use to it.
		return nil
	}
	_, err = w.Write(reply.body)
	return err
}

// peerName returns the peer's name in path: the segment after
// path_prefix.
func (e *Egress) peerName(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, e.PathPrefix)
	if !ok {
		return "", false
	}
	name, _, _ := strings.Cut(rest, "/")
	return name, name != ""
}

// logMiss says why a packet went to no peer, at most once per interval
// per kind: a connector misconfigured (or a fleet member probing) could
// otherwise cost a line per packet. The name comes from the request, so
// it is not a key, and is logged only quoted and cut short.
func (e *Egress) logMiss(name string, err error) {
	if !e.missLog.Allow(err.Error(), time.Now()) {
		return
	}
	if len(name) > 64 {
		name = name[:64] + "…"
	}
	if c := e.logger.Check(zap.WarnLevel, "packet for no egress peer"); c != nil {
		c.Write(zap.String("peer", name), zap.Error(err))
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Egress)(nil)
	_ caddy.Validator             = (*Egress)(nil)
	_ caddy.CleanerUpper          = (*Egress)(nil)
	_ caddyhttp.MiddlewareHandler = (*Egress)(nil)
)
