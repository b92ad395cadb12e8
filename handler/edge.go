// Package handler holds caddy-ilp's Caddy modules: the ilp_edge HTTP
// handler and the ilp_prefix reverse_proxy selection policy, and the
// contract (forward.go) between ilp_edge and the forwarder after it, which
// package proxy's ilp_proxy implements.
package handler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
	"time"
	"unsafe"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"

	"github.com/ilp-edge/caddy-ilp/async"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/internal/loglimit"
	"github.com/ilp-edge/caddy-ilp/store"
)

// Names of the vars ilp_edge sets for other handlers and for the ilp_prefix
// policy ({vars.ilp_peer}, {vars.ilp_destination}).
const (
	VarPeer        = "ilp_peer"
	VarDestination = "ilp_destination"
)

// Defaults.
const (
	DefaultPeerHeader = "ILP-Peer-Name"
	DefaultJWTLeeway  = caddy.Duration(2 * time.Second)
	// destinationHeader is ILP-Destination in canonical form: looking a
	// header up by a canonical key skips a conversion and an allocation.
	destinationHeader = "Ilp-Destination"
)

// Destination header modes.
const (
	DestinationTrust  = "trust"
	DestinationVerify = "verify"
	DestinationIgnore = "ignore"
)

// Edge is the `ilp_edge` HTTP handler: the front door of a fleet of
// ILP-over-HTTP connectors. For each request it
//
//   - refuses anything but POST (405);
//   - authenticates the peer by TLS client certificate, static bearer
//     token or HS256/384/512 JWT (401 with `WWW-Authenticate: Bearer`,
//     before the body is read);
//   - reads the body, at most `max_packet_size` bytes (413 beyond);
//   - reads the ILP Prepare in it, answering an invalid one with an F01
//     Reject and one that expires within `min_expiry_window` with R02;
//   - tells the next handler who the peer is and where the packet goes
//     (vars, placeholders, the peer-name header), gives the request a
//     deadline at the packet's expiry, and calls it;
//   - relays a Fulfill or Reject from the connector byte for byte, and
//     turns anything else into a Reject: T01 when no connector could be
//     reached, R00 when none answered before the packet expired, T00 for
//     an error status or a reply that is not an ILP packet.
//
// It sets the placeholders `{http.ilp.*}` (the packet, who sent it, what
// the peer got and from which connector: see Packet.placeholder), the vars
// `ilp_peer` and `ilp_destination`, and `{http.auth.user.id}` (the access
// log's user_id).
type Edge struct {
	// The edge's own ILP address, the `triggeredBy` of every Reject it
	// makes. Required; must be a valid ILP address.
	Address string `json:"address,omitempty"`

	// The peers allowed to send packets, and how each authenticates.
	Peers []*Peer `json:"peers,omitempty"`

	// Peers defined in the ilp_peers app (the `ilp_peers` global option)
	// that this edge admits too. An edge with neither these nor peers of
	// its own admits every peer of the app.
	PeerNames []string `json:"peer_names,omitempty"`

	// The largest request body accepted, in bytes. Default: 40000, what
	// interledger-rs accepts; the largest legal Prepare is 33857 bytes.
	MaxPacketSize int64 `json:"max_packet_size,omitempty"`

	// Packets with less time than this left before they expire are
	// rejected with R02 rather than forwarded. Default: 0 (only packets
	// already expired are rejected).
	MinExpiryWindow caddy.Duration `json:"min_expiry_window,omitempty"`

	// The longest the forwarder may hold a packet, whatever its expiry:
	// the request's deadline is the sooner of the two, so that a peer
	// that sets an expiry in the year 9999 cannot pin a goroutine and a
	// connection to a silent connector. A packet cut off this way gets
	// T00. Default: 30s, what interledger-rs' and rafiki's clients wait.
	MaxHold caddy.Duration `json:"max_hold,omitempty"`

	// How to use the `ILP-Destination` header that ilp-plugin-http sends
	// with `sendIlpDestination`. The Prepare in the body is always read
	// (for its expiry), so this only chooses where the destination comes
	// from. "trust" (default): from a valid header when there is one, else
	// from the packet. "verify": from the packet, and a header that
	// disagrees with it gets an F01 Reject. "ignore": from the packet.
	DestinationHeader string `json:"destination_header,omitempty"`

	// The request header that tells the backend which peer sent a packet.
	// Whatever the client sent in it is replaced. Default: ILP-Peer-Name,
	// which ilp-plugin-http uses.
	PeerHeader string `json:"peer_header,omitempty"`

	// The limits of every peer, each of which may set its own instead
	// (field by field): the largest Prepare amount (F08 beyond), packets
	// per period (T05) and amount per period (T04). Each edge instance
	// keeps its own budgets, in memory, unless Redis is set.
	Limits *Limits `json:"limits,omitempty"`

	// The shared store: Redis, which every edge instance of the fleet
	// uses with the same settings, so that they act as one edge. The
	// Limits' budgets are kept there (a peer gets its limit once for the
	// whole fleet, not once per instance), and so are the peers' routing
	// tables with routing_protocol fanout (a connector that missed route
	// updates catches up through whichever edge it hears from next).
	// Without it, each instance keeps its own.
	Redis *store.Config `json:"redis,omitempty"`

	// Answer every peer's ILDCP (peer.config) request at the edge: each
	// peer may set its own instead. Without it, they are forwarded like
	// any Prepare.
	ILDCP *ILDCP `json:"ildcp,omitempty"`

	// What to do with every peer's routing protocol (CCP) Prepares, to
	// peer.route.control and peer.route.update; each peer may set its
	// own. "fanout" (default): deliver route updates to every healthy
	// connector (with ilp_proxy), replaying the peer's whole table to one
	// that missed some, and route control to the one the peer's name
	// ranks first, so that a fleet of ilp-connectors learns a peer's
	// routes as one connector. "sticky": forward them like any Prepare,
	// to one connector. "local": accept them at the edge, as a connector
	// would, and drop them, for fleets whose routes are configured.
	RoutingProtocol string `json:"routing_protocol,omitempty"`

	// Request headers of the peer's, besides the ones ilp_edge sets, to
	// pass on to the forwarder, e.g. traceparent and tracestate. Every
	// other field is removed: the backend gets the identity, the credential
	// and the content type ilp_edge sets, and ILP-Destination when it
	// agrees with the destination routed by. Hop-by-hop fields and
	// Idempotency-Key (which makes net/http's transport count a POST as
	// safe to send twice) may not be listed.
	ForwardHeaders []string `json:"forward_headers,omitempty"`

	// Clock skew allowed when checking a JWT's exp and nbf. Default: 2s.
	JWTLeeway *caddy.Duration `json:"jwt_leeway,omitempty"`

	// Accept JWTs without an exp claim. By default they are refused:
	// ilp-plugin-http always sets exp, and a token without one would be
	// valid forever.
	JWTAllowMissingExp bool `json:"jwt_allow_missing_exp,omitempty"`

	// Turn off the caddy_ilp_* Prometheus metrics this handler keeps.
	DisableMetrics bool `json:"disable_metrics,omitempty"`

	// Route-miss failover: a packet that a connector rejected for want of
	// a route goes to its next-ranked connector (see RouteMiss). Off by
	// default.
	RouteMiss *RouteMiss `json:"route_miss_failover,omitempty"`

	// The most asynchronous Prepares (see Peer.Mode) accepted and not yet
	// answered by callback, in all and per peer; past either, a Prepare
	// is refused with 429 before it is accepted. Defaults: 10000 and
	// 1000.
	AsyncMaxInFlight        int `json:"async_max_in_flight,omitempty"`
	AsyncMaxInFlightPerPeer int `json:"async_max_in_flight_per_peer,omitempty"`

	// This route takes peers' replies to the edge's own asynchronous
	// Prepares (ilp_egress's, to peers with mode async and a url), not
	// Prepares: the peer authenticates as usual, POSTs its Fulfill or
	// Reject with the Prepare's Request-Id, and gets 200 when a Prepare
	// of its own waits for that id, 400 otherwise (unknown, already
	// answered, a fulfillment that does not match the condition, or no
	// Fulfill or Reject). ilp_egress's callback_url points here. The
	// handler after it is never called.
	Replies bool `json:"replies,omitempty"`

	auth         *authenticator
	peers        []*peer
	store        *store.Store        // from Redis; nil: budgets and tables in process
	peerHeader   string              // PeerHeader in canonical form, to set without allocating
	forward      map[string]struct{} // ForwardHeaders in canonical form
	logger       *zap.Logger
	authLog      *loglimit.Limiter // auth failures, per claimed peer
	inFlight     *async.InFlight   // asynchronous exchanges accepted and not ended
	claims       *async.Claims     // each peer's Request-Ids, forwarded once
	sender       *async.Sender     // of replies to callback URLs
	workers      *exchangeWorkers  // the goroutines the exchanges run on
	asyncCtx     context.Context   // cancelled when the process exits and the grace period is over
	asyncStop    context.CancelFunc
	configLog    *loglimit.Limiter // config errors seen at run time
	routeMissLog *loglimit.Limiter // route misses failed over, per connector
}

// CaddyModule returns the Caddy module information.
func (Edge) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.ilp_edge",
		New: func() caddy.Module { return new(Edge) },
	}
}

// Provision sets defaults and resolves and indexes the peers' secrets.
func (e *Edge) Provision(ctx caddy.Context) error {
	e.logger = ctx.Logger()
	if e.MaxPacketSize == 0 {
		e.MaxPacketSize = DefaultMaxPacketSize
	}
	if e.DestinationHeader == "" {
		e.DestinationHeader = DestinationTrust
	}
	if e.MaxHold == 0 {
		e.MaxHold = caddy.Duration(DefaultMaxHold)
	}
	if e.PeerHeader == "" {
		e.PeerHeader = DefaultPeerHeader
	}
	e.peerHeader = http.CanonicalHeaderKey(e.PeerHeader)
	e.forward = make(map[string]struct{}, len(e.ForwardHeaders))
	for _, name := range e.ForwardHeaders {
		e.forward[http.CanonicalHeaderKey(name)] = struct{}{}
	}
	if err := e.usePeersApp(ctx); err != nil {
		return err
	}
	leeway := DefaultJWTLeeway
	if e.JWTLeeway != nil {
		leeway = *e.JWTLeeway
	}
	auth, peers, err := newAuthenticator(e.Peers, caddy.NewReplacer())
	if err != nil {
		return err
	}
	auth.leeway = time.Duration(leeway)
	auth.requireExp = !e.JWTAllowMissingExp
	auth.peerHeader = e.peerHeader
	e.auth, e.peers = auth, peers
	if e.Redis != nil {
		if e.store, err = store.Load(e.Redis, e.logger); err != nil {
			return err
		}
	}
	for i, p := range peers {
		limits := e.Limits.merged(e.Peers[i].Limits)
		if err := limits.validate(fmt.Sprintf("peer %q:", p.name)); err != nil {
			return err // Caddy calls Cleanup, which releases the budgets loaded so far
		}
		if p.limits, err = newPeerLimits(p.name, limits, e.store); err != nil {
			return err
		}
		ildcp := e.ILDCP
		if e.Peers[i].ILDCP != nil {
			ildcp = e.Peers[i].ILDCP
		}
		if p.ildcpReply, err = ildcp.fulfillFor(p.name); err != nil {
			return fmt.Errorf("peer %q: %w", p.name, err)
		}
		routing := cmp.Or(e.Peers[i].RoutingProtocol, e.RoutingProtocol)
		if err := checkRoutingProtocol(routing); err != nil {
			return fmt.Errorf("peer %q: %w", p.name, err)
		}
		p.routing = cmp.Or(routing, RoutingFanout)
		p.store = e.store
		if p.async, err = newPeerAsync(e.Peers[i], caddy.NewReplacer()); err != nil {
			return fmt.Errorf("peer %q: %w", p.name, err)
		}
	}
	e.authLog = &loglimit.Limiter{Interval: time.Second}
	e.inFlight = &async.InFlight{
		Total:   cmp.Or(e.AsyncMaxInFlight, DefaultAsyncMaxInFlight),
		PerPeer: cmp.Or(e.AsyncMaxInFlightPerPeer, DefaultAsyncMaxInFlightPerPeer),
	}
	e.claims = &async.Claims{Store: e.store}
	// Idle connections for as many replies as one peer may have in flight.
	e.sender = async.NewSender(e.inFlight.PerPeer)
	e.workers = newExchangeWorkers()
	e.asyncCtx, e.asyncStop = context.WithCancel(context.Background())
	e.configLog = &loglimit.Limiter{Interval: time.Minute}
	e.routeMissLog = &loglimit.Limiter{Interval: time.Second}
	if !e.DisableMetrics {
		if err := registerMetrics(ctx.GetMetricsRegistry(), e.store != nil); err != nil {
			return fmt.Errorf("registering metrics: %w", err)
		}
		for _, p := range peers {
			p.metrics = newPeerMetrics(p.name)
		}
		zeroSeries(peers)
	}
	e.logReady()
	return nil
}

// logReady says, once per provisioning, what the handler serves: its
// address and each peer with the kinds of credential it has, never their
// values.
func (e *Edge) logReady() {
	peerKinds := make([]string, len(e.Peers))
	for i, c := range e.Peers {
		peerKinds[i] = c.Name + " (" + c.credentialKinds() + ")"
	}
	e.logger.Info("ilp_edge ready", zap.String("address", e.Address), zap.Strings("peers", peerKinds),
		zap.String("destination_header", e.DestinationHeader), zap.Duration("max_hold", time.Duration(e.MaxHold)))
}

// Cleanup releases the peers' budgets and the Redis client: a reload
// that keeps a peer's limits keeps what it has used of them. Accepted
// asynchronous Prepares go on past a reload, each until its reply is
// delivered or its time is up; when the process exits, it waits for them
// for at most max_hold, then gives up on the replies left.
func (e *Edge) Cleanup() error {
	if e.inFlight != nil && caddy.Exiting() {
		grace, cancel := context.WithTimeout(context.Background(), time.Duration(e.MaxHold))
		if n := e.inFlight.Count(); n > 0 {
			e.logger.Info("waiting for asynchronous replies in flight", zap.Int("in_flight", n))
		}
		if !e.inFlight.Wait(grace.Done()) {
			e.logger.Warn("exiting with asynchronous replies undelivered", zap.Int("in_flight", e.inFlight.Count()))
		}
		cancel()
		e.asyncStop()
	}
	if e.sender != nil {
		// Replies still in flight after a reload dial again if they must.
		e.sender.CloseIdle()
	}
	for _, p := range e.peers {
		if p.limits != nil {
			p.limits.release()
		}
	}
	if e.store != nil {
		e.store.Release()
		e.store = nil
	}
	return nil
}

// Validate checks the configuration.
func (e *Edge) Validate() error {
	if !ilpdest.ValidAddress(e.Address) {
		return fmt.Errorf("address %q is not a valid ILP address", e.Address)
	}
	if len(e.peers) == 0 {
		return errors.New("no peers configured")
	}
	if e.MaxPacketSize < 64 {
		return fmt.Errorf("max_packet_size %d is smaller than the smallest Prepare (64 bytes)", e.MaxPacketSize)
	}
	if e.MinExpiryWindow < 0 {
		return errors.New("min_expiry_window must not be negative")
	}
	if e.MaxHold < 0 {
		return errors.New("max_hold must not be negative")
	}
	switch e.DestinationHeader {
	case DestinationTrust, DestinationVerify, DestinationIgnore:
	default:
		return fmt.Errorf("destination_header %q: want trust, verify or ignore", e.DestinationHeader)
	}
	for _, name := range e.ForwardHeaders {
		if err := checkForwardHeader(name); err != nil {
			return err
		}
	}
	if e.RouteMiss != nil {
		return e.RouteMiss.Validate()
	}
	return nil
}

// unforwardable are the fields forward_headers may not name: hop-by-hop
// fields, framing, and the ones that make a forwarder send a packet twice.
var unforwardable = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true, "Content-Length": true, "Expect": true,
	"Idempotency-Key": true, "X-Idempotency-Key": true,
}

// checkForwardHeader says why name cannot be in forward_headers, if it cannot.
func checkForwardHeader(name string) error {
	if !httpguts.ValidHeaderFieldName(name) {
		return fmt.Errorf("forward_headers: %q is not a header name", name)
	}
	if unforwardable[http.CanonicalHeaderKey(name)] {
		return fmt.Errorf("forward_headers: %s may not be forwarded", name)
	}
	return nil
}

// now is the one clock of this package: expiry, JWT validity, metrics and
// log rate limits all read it, and tests move it instead of sleeping.
var now = time.Now

// Shared header values, never modified.
var (
	octetStream     = []string{"application/octet-stream"}
	allowPost       = []string{http.MethodPost}
	bearer          = []string{"Bearer"}
	connectionClose = []string{"close"}
)

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// Refusals leave the body unread, and net/http would read it before
	// answering (for the connection's sake) however long the client takes
	// to send it: closing the connection after the answer lets it go out
	// at once.
	if r.Method != http.MethodPost {
		w.Header()["Allow"] = allowPost
		w.Header()["Connection"] = connectionClose
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("ilp_edge: method %s: ILP over HTTP takes POST only", r.Method))
	}
	p, err := e.auth.authenticate(r)
	if err != nil {
		w.Header()["Www-Authenticate"] = bearer
		w.Header()["Connection"] = connectionClose
		e.authFailed(r, err)
		return caddyhttp.Error(http.StatusUnauthorized, fmt.Errorf("ilp_edge: authentication failed: %w", err))
	}
	if e.Replies {
		return e.serveReply(w, r, p)
	}

	var x *asyncExchange
	if p.async.wantsAsync(r) {
		if x, err = e.startAsync(w, r, p); err != nil {
			return err
		}
	}

	pkt := new(Packet)
	pkt.peer = p
	if x != nil {
		pkt.requestID = x.id
	}
	// The ilp app's front door passes no replacer when nothing would read
	// one.
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(pkt.placeholder)
	}
	tooLarge, err := pkt.readBody(r, e.MaxPacketSize)
	if tooLarge || err != nil {
		if x != nil {
			e.release(x)
		}
		if tooLarge {
			w.Header()["Connection"] = connectionClose
			return caddyhttp.Error(http.StatusRequestEntityTooLarge,
				fmt.Errorf("ilp_edge: peer %q: body over max_packet_size %d", p.name, e.MaxPacketSize))
		}
		return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("ilp_edge: peer %q: reading body: %w", p.name, err))
	}
	if x != nil {
		return e.accept(w, r, next, pkt, x)
	}
	return e.serveRead(w, r, next, pkt)
}

// serveRead answers the Prepare in pkt, read from r's body, with a
// Fulfill or Reject: the edge's own, or the forwarder's (next).
func (e *Edge) serveRead(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, pkt *Packet) error {
	p := pkt.peer
	caddyhttp.SetVar(r.Context(), VarPeer, p.nameValue)
	// One reading of the clock for the expiry check, the hold and the
	// metrics' start, another for the answer: it costs about 2% of the
	// front door's CPU per packet at 5 readings.
	pkt.start = now()

	if rej := e.readPrepare(pkt, firstValue(r.Header, destinationHeader)); rej != nil {
		return e.writeReject(w, pkt, rej, now())
	}
	if reply, rej := p.peerProtocolReply(pkt); rej != nil {
		return e.writeReject(w, pkt, rej, now())
	} else if reply != nil {
		writeILP(w, reply)
		e.count(pkt, reply, nil, now())
		p.metrics.countPeerProtocol(pkt)
		return nil
	}
	if l := p.limits; l != nil {
		charged, rej := l.admit(r.Context(), pkt)
		if rej != nil {
			return e.writeReject(w, pkt, rej, now())
		}
		pkt.charged = charged
		defer l.settle(pkt) // after the answer: a Reject gives the amount back
	}
	caddyhttp.SetVar(r.Context(), VarDestination, (*destinationView)(pkt))

	// Toward the backend, only what it needs, so that nothing a peer sends
	// can make the forwarder or the connector act on it: an
	// Idempotency-Key, say, makes net/http's Transport (reverse_proxy's)
	// send a POST again after a reused connection breaks, and a connector
	// that had read the packet gets it twice. The fields Connection names
	// go first, as a forwarder strips them. The authenticated identity
	// replaces whatever the client claimed, its credential is not passed
	// on, and the body is the exact bytes received, with a length and the
	// content type rafiki insists on.
	dropConnectionFields(r.Header)
	for name, v := range r.Header {
		if _, ok := e.forward[name]; ok || name == destinationHeader && len(v) == 1 && v[0] == pkt.destination {
			continue
		}
		delete(r.Header, name)
	}
	r.Header[e.peerHeader] = p.nameHeader
	if p.upstreamAuth != nil {
		r.Header["Authorization"] = p.upstreamAuth
	} else {
		delete(r.Header, "Authorization")
	}
	r.Header["Content-Type"] = octetStream
	pkt.reader.Reset(pkt.body)
	r.Body = pkt
	r.GetBody = pkt.getBody
	r.ContentLength = int64(len(pkt.body))
	delete(r.Header, "Transfer-Encoding")
	r.TransferEncoding = nil

	deadline := pkt.prepare.ExpiresAt
	if hold := pkt.start.Add(time.Duration(e.MaxHold)); hold.Before(deadline) {
		deadline = hold
	}
	pkt.ctx.init(r.Context(), deadline)
	defer pkt.ctx.cancel()
	pkt.capture.reset(w)
	fr := r.WithContext(&pkt.ctx)
	err := e.serveNext(&pkt.capture, fr, next)
	if err == nil && e.RouteMiss != nil && !pkt.FanOut() {
		err = e.failOver(fr, next, pkt)
	}
	answered := now()
	if pkt.FanOut() && !pkt.fannedOut && e.configLog.Allow("no fan-out", answered) {
		e.logger.Warn("routing_protocol fanout: the forwarder sent a route update to one connector",
			zap.String("peer", pkt.peer.name), zap.String("fix",
				"forward with ilp_proxy, which delivers it to every connector, or set routing_protocol sticky or local"))
	}
	// The clock, not the context, says whether the packet expired: a
	// forwarder's connection deadline can fire a moment before the
	// context's timer does.
	expired := !answered.Before(pkt.prepare.ExpiresAt)
	if r.Context().Err() != nil && !expired {
		// The peer went away; there is nobody to answer.
		pkt.capture.release()
		return err
	}
	if rej := upstreamReject(&pkt.capture, err, expired); rej != nil {
		pkt.capture.release()
		return e.writeReject(w, pkt, rej, answered)
	}
	reply := pkt.capture.bytes()
	writeILP(w, reply)
	e.count(pkt, reply, nil, answered)
	pkt.capture.release()
	return nil
}

// authFailed counts a refused request and logs it at Info, at most once a
// second for each claimed peer (and once for all other requests), so that
// an attack does not flood the log. Credentials are never logged.
func (e *Edge) authFailed(r *http.Request, err error) {
	method, reason := authFailureLabels(err)
	if !e.DisableMetrics {
		metricAuthFailures.WithLabelValues(method, reason).Inc()
	}
	claimed := firstValue(r.Header, e.peerHeader)
	if !e.auth.names[claimed] {
		claimed = "" // not a label from the config: one bucket for the rest
	}
	if !e.authLog.Allow(claimed, now()) {
		return
	}
	if c := e.logger.Check(zap.InfoLevel, "peer authentication failed"); c != nil {
		c.Write(zap.String("remote_ip", r.RemoteAddr), zap.String("claimed_peer", claimed),
			zap.String("method", method), zap.String("reason", reason))
	}
}

// count records an answered packet for the placeholders, in the metrics
// and in the debug log:
// reply is what went back at answered, rej the edge's own Reject when it
// made one. The type and code are read from the reply's first bytes.
func (e *Edge) count(pkt *Packet, reply []byte, rej *edgeReject, answered time.Time) {
	pkt.answer.record(reply, rej, e.Address)
	m := pkt.peer.metrics
	debug := e.logger.Check(zap.DebugLevel, "packet")
	if m == nil && debug == nil {
		return
	}
	elapsed := answered.Sub(pkt.start)
	result, code, origin := pkt.answer.result, pkt.answer.code, "upstream"
	if result == resultEdgeReject {
		origin = "edge"
	}
	if m != nil {
		switch result {
		case resultFulfill:
			m.fulfilled.Inc()
			m.amount.Add(float64(pkt.prepare.Amount))
			m.fulfillTime.Observe(elapsed.Seconds())
		case resultReject:
			m.rejected.Inc()
			m.rejectTime.Observe(elapsed.Seconds())
		default:
			m.edgeRejected.Inc()
			m.edgeTime.Observe(elapsed.Seconds())
		}
		if result != resultFulfill {
			metricRejects.WithLabelValues(pkt.peer.name, codeLabel(code), origin).Inc()
		}
		if !pkt.prepare.ExpiresAt.IsZero() {
			metricExpiryHeadroom.Observe(pkt.prepare.ExpiresAt.Sub(answered).Seconds())
		}
	}
	if debug != nil {
		fields := []zap.Field{zap.String("peer", pkt.peer.name),
			zap.String("result", result), zap.Duration("duration", elapsed)}
		if pkt.routeKey != "" { // the prefix ilp_prefix or ilp_proxy routed by
			fields = append(fields, zap.String("route_key", pkt.routeKey))
		}
		if result != resultFulfill {
			fields = append(fields, zap.String("code", code.String()))
		}
		debug.Write(fields...)
	}
}

// serveNext calls next, turning the panic with which reverse_proxy aborts
// a reply that broke off mid-body into an error: nothing has reached the
// peer yet, so it can still get a Reject.
func (e *Edge) serveNext(c *responseCapture, r *http.Request, next caddyhttp.Handler) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				panic(v)
			}
			err = errAborted
		}
	}()
	return next.ServeHTTP(c, r)
}

// readPrepare reads the Prepare in the body and settles the destination,
// or returns the Reject the packet gets instead.
func (e *Edge) readPrepare(pkt *Packet, header string) *edgeReject {
	var err error
	if pkt.prepare, err = ilpdest.ReadPrepare(pkt.body); err != nil {
		return invalidPacket(err)
	}
	// The destination aliases the body, which nothing modifies while the
	// request lives: a string view saves a copy per packet.
	fromBody := unsafe.String(unsafe.SliceData(pkt.prepare.Destination), len(pkt.prepare.Destination))
	pkt.destination = fromBody
	switch e.DestinationHeader {
	case DestinationTrust:
		if header != "" && ilpdest.ValidAddress(header) {
			pkt.destination = header
		}
	case DestinationVerify:
		if header != "" && header != fromBody {
			return invalidPacket(errDestinationMismatch)
		}
	}
	left := pkt.prepare.ExpiresAt.Sub(pkt.start)
	if left <= 0 || left < time.Duration(e.MinExpiryWindow) {
		return insufficientTimeout(left <= 0)
	}
	return nil
}

// writeReject answers with a Reject from the edge, at answered.
func (e *Edge) writeReject(w http.ResponseWriter, pkt *Packet, rej *edgeReject, answered time.Time) error {
	level := zap.WarnLevel
	switch {
	case rej.code == ilpdest.CodeF01 || rej.code == ilpdest.CodeR02 || rej.code == ilpdest.CodeF08 ||
		rej.code == ilpdest.CodeT04 || rej.code == ilpdest.CodeT05:
		level = zap.DebugLevel // the peer's problem (or its limits), not the fleet's
	case rej.cause == errNoForwarder:
		// A config error that rejects every packet: said loudly, but not
		// once per packet.
		if e.configLog.Allow("no forwarder", answered) {
			e.logger.Error("ilp_edge has no forwarder after it: every packet is rejected",
				zap.String("fix", "put reverse_proxy or ilp_proxy after ilp_edge in the same route"))
		}
		level = zap.DebugLevel
	}
	if c := e.logger.Check(level, "edge rejected packet"); c != nil {
		c.Write(zap.String("peer", pkt.peer.name), zap.String("destination", pkt.destination),
			zap.String("code", rej.code.String()), zap.String("message", rej.message), zap.NamedError("cause", rej.cause))
	}
	buf := ilpdest.AppendReject(nil, ilpdest.Reject{
		Code: rej.code, TriggeredBy: e.Address, Message: rej.message, Data: rej.data,
	})
	writeILP(w, buf)
	e.count(pkt, buf, rej, answered)
	return nil
}

// dropConnectionFields removes the Connection header and the fields it
// names (RFC 9110 §7.6.1): they belong to the peer's connection, not to
// the request the connector gets.
func dropConnectionFields(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				delete(h, http.CanonicalHeaderKey(f))
			}
		}
	}
	delete(h, "Connection")
}

// firstValue is Header.Get for a key already in canonical form.
func firstValue(h http.Header, canonicalKey string) string {
	if v := h[canonicalKey]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// writeILP sends an ILP packet as a 200 response.
func writeILP(w http.ResponseWriter, b []byte) {
	h := w.Header()
	// A backend's reply headers were written to this map while its reply
	// was captured; drop the ones that would misdescribe this body.
	// net/http sets Content-Length itself for a body written in one go,
	// as every ILP reply of up to a few KB is.
	delete(h, "Content-Length")
	delete(h, "Content-Encoding")
	delete(h, "Transfer-Encoding")
	delete(h, "Trailer")
	h["Content-Type"] = octetStream
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Edge)(nil)
	_ caddy.Validator             = (*Edge)(nil)
	_ caddy.CleanerUpper          = (*Edge)(nil)
	_ caddyhttp.MiddlewareHandler = (*Edge)(nil)
)
