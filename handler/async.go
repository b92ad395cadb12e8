package handler

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"

	"github.com/ilp-edge/caddy-ilp/async"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/internal/loglimit"
)

// How ilp_edge answers a peer's Prepares: Peer.Mode's values.
const (
	// The Fulfill or Reject in the 200 answer (RFC 35 drafts 1 and 2),
	// whatever the request's headers say.
	ModeSync = "sync"
	// 202 Accepted at once, the Fulfill or Reject POSTed to the peer's
	// callback URL with its Request-Id (RFC 35 draft 3); a request
	// without a Request-Id is refused (400).
	ModeAsync = "async"
	// Async for a request that has a Request-Id header or asks with
	// Prefer: respond-async (the 2021–2024 drafts' signal, which Dassie
	// sends), sync for one that has neither. The default.
	ModeAuto = "auto"
)

// Defaults of the bounds on asynchronous exchanges in flight.
const (
	DefaultAsyncMaxInFlight        = 10000
	DefaultAsyncMaxInFlightPerPeer = 1000
)

// peerAsync is a peer's asynchronous side, provisioned.
type peerAsync struct {
	mode      string
	callbacks async.CallbackPolicy
	auth      func() string     // the callback's Authorization; nil: none
	tls       *tls.Config       // callback_tls, loaded; nil: none
	failLog   *loglimit.Limiter // replies not delivered, per result
}

func newPeerAsync(c *Peer, repl *caddy.Replacer) (*peerAsync, error) {
	a := &peerAsync{mode: c.Mode, callbacks: c.CallbackPolicy, failLog: &loglimit.Limiter{Interval: time.Second}}
	switch a.mode {
	case "":
		a.mode = ModeAuto
	case ModeSync, ModeAsync, ModeAuto:
	default:
		return nil, fmt.Errorf("mode %q: want sync, async or auto", a.mode)
	}
	if err := a.callbacks.Provision(); err != nil {
		return nil, err
	}
	if a.mode == ModeAsync && !a.callbacks.Configured() && c.EgressURL == "" {
		// A peer with a url may be one the edge only sends to (ilp_egress):
		// its own Prepares, if any, are refused for want of an allowed
		// callback URL.
		return nil, errors.New("mode async needs callback_url or callback_url_prefix: the edge POSTs only where the peer may be answered")
	}
	var err error
	if a.auth, err = c.OutgoingAuthorization(repl); err != nil {
		return nil, err
	}
	if c.CallbackTLS != nil {
		// Over plain http the certificate would never be presented: the
		// replies would go out without the credential the operator set.
		for _, u := range append([]string{c.URL}, c.Prefixes...) {
			if u != "" && !strings.HasPrefix(strings.ToLower(u), "https:") {
				u, _, _ = strings.Cut(u, "?") // where a peer may keep a secret
				return nil, fmt.Errorf("callback_tls: callback URL %q is not https", u)
			}
		}
		if a.tls, err = c.CallbackTLS.Load(); err != nil {
			return nil, fmt.Errorf("callback_tls: %w", err)
		}
	}
	return a, nil
}

// callbackJWTLifetime is how long a JWT the edge signs for a callback is
// valid: long enough for one POST, short enough that a leaked one is of
// little use.
const callbackJWTLifetime = time.Minute

// callbackJWT is the edge's JWT toward one peer: signed, then sent with
// every request for the first half of its lifetime and signed afresh
// after that, as ilp-plugin-http keeps its own. A signature per POST
// costs more than the rest of the POST's request; a token never goes out
// with less than half its lifetime left.
type callbackJWT struct {
	signer jose.Signer

	mu       sync.Mutex
	value    string    // "Bearer " and the token; "" until the first request
	signedAt time.Time // its iat
}

// authorization is the Authorization of a request to the peer now.
func (c *callbackJWT) authorization() string { return c.at(now()) }

// at is the Authorization of a request to the peer at t.
func (c *callbackJWT) at(t time.Time) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.value == "" || t.Sub(c.signedAt) >= callbackJWTLifetime/2 {
		c.value, c.signedAt = "Bearer "+signJWT(c.signer, t), t
	}
	return c.value
}

// signJWT signs a token as ilp-plugin-http does (jsonwebtoken, HS256, a
// payload of iat and exp), valid from t for callbackJWTLifetime.
func signJWT(signer jose.Signer, t time.Time) string {
	payload, _ := json.Marshal(struct {
		IAT int64 `json:"iat"`
		EXP int64 `json:"exp"`
	}{t.Unix(), t.Add(callbackJWTLifetime).Unix()})
	jws, err := signer.Sign(payload)
	if err != nil {
		return "" // an HMAC signer does not fail
	}
	s, _ := jws.CompactSerialize()
	return s
}

// wantsAsync reports whether r, from a peer with a, is to be answered
// asynchronously.
func (a *peerAsync) wantsAsync(r *http.Request) bool {
	switch a.mode {
	case ModeSync:
		return false
	case ModeAsync:
		return true
	}
	if _, ok := r.Header["Request-Id"]; ok {
		return true
	}
	for _, v := range r.Header["Prefer"] {
		for pref := range strings.SplitSeq(v, ",") {
			if name, _, _ := strings.Cut(strings.TrimSpace(pref), ";"); strings.EqualFold(strings.TrimSpace(name), "respond-async") {
				return true
			}
		}
	}
	return false
}

// asyncExchange is an asynchronous Prepare being accepted: its id, where
// its reply goes, and its place among those in flight.
type asyncExchange struct {
	peer     *peer
	id       async.RequestID
	callback string
	released bool
}

// startAsync checks an asynchronous request's head: its Request-Id and
// callback URL, and a place in flight. A refusal goes out before the body
// is read. A malformed head closes the connection, as an authentication
// failure does; a busy edge's 429 keeps it: the peer sends again after
// Retry-After, and the server reads the refused body (a packet, bounded)
// before it answers. Closing there would also cost the answer now and
// then: the close resets the connection when the unread body is still in
// the socket and the peer has not read its 429 within net/http's 500 ms
// grace (a loaded CI machine lost 3 of 4,713).
func (e *Edge) startAsync(w http.ResponseWriter, r *http.Request, p *peer) (*asyncExchange, error) {
	refuse := func(status int, result string, err error) error {
		async.CountPrepare(p.name, result)
		if status != http.StatusTooManyRequests {
			w.Header()["Connection"] = connectionClose
		}
		return caddyhttp.Error(status, fmt.Errorf("ilp_edge: peer %q: asynchronous Prepare: %w", p.name, err))
	}
	id, err := async.ParseRequestID(firstValue(r.Header, "Request-Id"))
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "bad_request_id", err)
	}
	callback, err := p.async.callbacks.Resolve(firstValue(r.Header, "Callback-Url"))
	if err != nil {
		result := "callback_refused"
		if errors.Is(err, async.ErrNoCallback) {
			result = "no_callback"
		}
		return nil, refuse(http.StatusBadRequest, result, err)
	}
	if !e.inFlight.Acquire(p.name) {
		w.Header()["Retry-After"] = retryAfterOne
		return nil, refuse(http.StatusTooManyRequests, "busy", errors.New("too many asynchronous Prepares in flight"))
	}
	return &asyncExchange{peer: p, id: id, callback: callback}, nil
}

var retryAfterOne = []string{"1"}

// release gives back x's place in flight, once.
func (e *Edge) release(x *asyncExchange) {
	if !x.released {
		x.released = true
		e.inFlight.Release(x.peer.name)
	}
}

// accept answers an asynchronous Prepare whose body pkt holds: 400 if it
// is not a Prepare, 409 if its Request-Id came with another packet, else
// 202, and then, unless it is a replay of one accepted before, it goes
// through the edge and the forwarder as a synchronous one does, and its
// Fulfill or Reject goes to the callback URL.
func (e *Edge) accept(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, pkt *Packet, x *asyncExchange) error {
	p := x.peer
	caddyhttp.SetVar(r.Context(), VarPeer, p.nameValue)
	prepare, err := ilpdest.ReadPrepare(pkt.body)
	if err != nil {
		e.release(x)
		async.CountPrepare(p.name, "bad_packet")
		return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("ilp_edge: peer %q: asynchronous Prepare: %w", p.name, err))
	}
	switch e.claims.Claim(r.Context(), p.name, x.id, pkt.body, prepare.ExpiresAt) {
	case async.Replay:
		e.release(x)
		async.CountPrepare(p.name, "replay")
		w.WriteHeader(http.StatusAccepted)
		return nil
	case async.Conflict:
		e.release(x)
		async.CountPrepare(p.name, "conflict")
		return caddyhttp.Error(http.StatusConflict,
			fmt.Errorf("ilp_edge: peer %q: Request-Id %s came with another Prepare", p.name, x.id))
	}
	async.CountPrepare(p.name, "accepted")
	// The request and the packet as the exchange goes on with them, past
	// the 202: the server may reuse r's as soon as this returns, and its
	// access log reads the packet's placeholders.
	detached := pkt.detached()
	dr := r.Clone(detachedContext(r.Context(), detached))
	accepted := now()
	w.WriteHeader(http.StatusAccepted)
	e.workers.run(func() { e.answerAsync(dr, next, detached, x, accepted) })
	return nil
}

// exchangeWorkers runs asynchronous exchanges on goroutines that, done
// with one, wait a while for the next. A fresh goroutine's stack grows
// (and is copied, at each doubling) through the forwarder and the
// callback POST every time, 7% of an exchange's CPU as profiled; a
// reused one has grown it already.
type exchangeWorkers struct {
	jobs chan func() // unbuffered: an exchange goes only to a worker waiting
}

func newExchangeWorkers() *exchangeWorkers { return &exchangeWorkers{jobs: make(chan func())} }

// workerIdle is how long a worker waits for another exchange before it
// ends: longer than a busy edge's gaps, short enough that a config's
// workers are gone soon after a reload replaced it.
const workerIdle = 2 * time.Second

// run starts job on a worker waiting, or on a new one.
func (w *exchangeWorkers) run(job func()) {
	select {
	case w.jobs <- job:
	default:
		go w.work(job)
	}
}

func (w *exchangeWorkers) work(job func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		job()
		idle.Reset(workerIdle)
		select {
		case job = <-w.jobs:
		case <-idle.C:
			return
		}
	}
}

// answerAsync forwards an accepted asynchronous Prepare and delivers its
// reply.
func (e *Edge) answerAsync(r *http.Request, next caddyhttp.Handler, pkt *Packet, x *asyncExchange, accepted time.Time) {
	defer e.release(x)
	rec := &replyRecorder{header: http.Header{}}
	if err := e.serveRead(rec, r, next, pkt); err != nil || rec.status != http.StatusOK || len(rec.body) == 0 {
		// serveRead answers every packet it read with an ILP reply; this
		// is for what it might not (a panic in a forwarder, recovered by
		// none here): the peer still gets one answer.
		rec = &replyRecorder{header: http.Header{}}
		e.writeReject(rec, pkt, &edgeReject{code: ilpdest.CodeT00, message: "no reply from the forwarder", cause: err}, now())
	}
	until := pkt.prepare.ExpiresAt
	if hold := accepted.Add(time.Duration(e.MaxHold) + callbackGrace); hold.Before(until) {
		until = hold
	}
	d := e.sender.Deliver(e.asyncCtx, async.Reply{
		Peer: x.peer.name, URL: x.callback, RequestID: x.id, Body: rec.body,
		Accepted: accepted, Until: until, Authorization: x.peer.async.auth, TLS: x.peer.async.tls,
	})
	e.logReply(x, d, accepted)
}

// logReply writes the one log line of an asynchronous exchange that
// ended: the access log's line for its request went out with the 202,
// before there was a reply. Debug when the callback took the reply; Info
// when it refused it or the edge gave up, at most once a second per peer
// and result, since a peer whose callback is down would otherwise cost a
// line per packet. Neither the credential nor the callback URL's query
// (where a peer may keep a secret) is logged.
func (e *Edge) logReply(x *asyncExchange, d async.Delivery, accepted time.Time) {
	level := zap.InfoLevel
	if d.Outcome == async.Delivered {
		level = zap.DebugLevel
	}
	c := e.logger.Check(level, "asynchronous reply")
	if c == nil {
		return
	}
	at := now()
	if level != zap.DebugLevel && !x.peer.async.failLog.Allow(string(d.Outcome), at) {
		return
	}
	callback, _, _ := strings.Cut(x.callback, "?")
	fields := []zap.Field{zap.String("peer", x.peer.name), zap.String("request_id", string(x.id)),
		zap.String("result", string(d.Outcome)), zap.Int("status", d.Status), zap.Int("attempts", d.Attempts),
		zap.Duration("duration", at.Sub(accepted)), zap.String("callback", callback)}
	if d.Err != nil {
		fields = append(fields, zap.Error(d.Err))
	}
	c.Write(fields...)
}

// callbackGrace is how long past max_hold the edge keeps trying to
// deliver a reply to a Prepare that expires later than that.
const callbackGrace = 30 * time.Second

// replyRecorder keeps the answer serveRead writes, for the callback.
type replyRecorder struct {
	header http.Header
	status int
	body   []byte
}

func (r *replyRecorder) Header() http.Header { return r.header }

func (r *replyRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *replyRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.body = append(r.body, b...)
	return len(b), nil
}

// A Detacher is a request context that its server reuses once the
// request is answered (the ilp app's front door pools them): Detach
// returns what a context that outlives the request may keep of it.
type Detacher interface {
	Detach() context.Context
}

// detachedContext is a context for a request's work past its answer:
// none of its cancellation, its own vars (with the peer, copied) and, if
// the request had a replacer, one of its own with pkt's placeholders, so
// that nothing it sets races with the access log of the request that was
// answered. The ilp app's front door gives a request no replacer when
// neither its access log nor its forwarder reads one; the exchange, past
// the access log, needs one no more than that.
func detachedContext(ctx context.Context, pkt *Packet) context.Context {
	base := ctx
	if d, ok := ctx.(Detacher); ok {
		base = d.Detach()
	}
	c := &outlivingContext{Context: context.WithoutCancel(base), vars: map[string]any{VarPeer: pkt.peer.nameValue}}
	if _, ok := ctx.Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		c.repl = caddy.NewReplacer()
		c.repl.Map(pkt.placeholder)
	}
	return c
}

type outlivingContext struct {
	context.Context
	vars map[string]any
	repl *caddy.Replacer
}

func (c *outlivingContext) Value(key any) any {
	switch key {
	case caddyhttp.VarsCtxKey:
		return c.vars
	case caddy.ReplacerCtxKey:
		if c.repl == nil {
			return nil // not a nil *caddy.Replacer, which a type assertion would take
		}
		return c.repl
	}
	return c.Context.Value(key)
}
