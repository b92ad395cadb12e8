package frontdoor

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/ilp-edge/caddy-ilp/frontdoor/h1"
	"github.com/ilp-edge/caddy-ilp/frontdoor/h2"
	"github.com/ilp-edge/caddy-ilp/internal/httpsyntax"
)

// exchange is what one request needs to go through ilp_edge and
// ilp_proxy as a Caddy HTTP route would run them: an *http.Request and
// an http.ResponseWriter over package h1's request and writer, with the
// context values the handlers read (the replacer and the vars). It is
// pooled: only what the handlers keep per packet is allocated.
type exchange struct {
	req    *http.Request // with ctx as its context, for good
	blank  http.Request  // *req as it was made: what release resets it to
	url    url.URL
	body   requestBody
	ctx    requestContext
	header http.Header
	values []string // the header's values, each a one-value slice of it
	vars   map[string]any
	resp   responseWriter
	host   string // the last request's Host, kept: most are the same
}

var exchangePool = sync.Pool{New: func() any {
	ex := &exchange{header: http.Header{}, vars: map[string]any{}, resp: responseWriter{header: http.Header{}}}
	// A request's context can only be set by copying the request: made
	// once per exchange, and reset field by field (by blank) after each
	// request, the copy costs nothing per packet.
	ex.req = new(http.Request).WithContext(&ex.ctx)
	ex.blank = *ex.req
	return ex
}}

// requestBody is the request's body: the bytes h1 or h2 buffered, or,
// for a request handed over on its head, its source, read at the first
// Read. ilp_edge checks the method and the credentials before it reads
// the body, so a request it refuses is answered without its body ever
// being awaited, and without "100 Continue" (see Server.setupServers).
type requestBody struct {
	r       bytes.Reader
	pending bodySource // nil once read
	err     error
}

// bodySource is h1's and h2's Request, with a body still to come.
type bodySource interface {
	ReadBody() ([]byte, error)
}

// reset makes the body b, or the one src will read when src is not nil.
func (b *requestBody) reset(body []byte, src bodySource) {
	b.r.Reset(body)
	b.pending, b.err = src, nil
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.pending != nil {
		body, err := b.pending.ReadBody()
		b.pending, b.err = nil, err
		b.r.Reset(body)
	}
	if b.err != nil {
		return 0, b.err
	}
	return b.r.Read(p)
}

// Close does nothing: the body is in memory, or left unread, which h1
// and h2 tell the client.
func (*requestBody) Close() error { return nil }

// requestContext holds the context values ilp_edge and ilp_proxy read,
// as Caddy's HTTP server sets them, without a context per value.
type requestContext struct {
	context.Context
	repl *caddy.Replacer
	vars map[string]any
}

func (c *requestContext) Value(key any) any {
	switch key {
	case caddy.ReplacerCtxKey:
		if c.repl == nil {
			return nil // not a nil *caddy.Replacer, which a type assertion would take
		}
		return c.repl
	case caddyhttp.VarsCtxKey:
		return c.vars
	}
	return c.Context.Value(key)
}

// serveH1 answers one HTTP/1.1 request through the server's handlers.
func (s *Server) serveH1(w *h1.ResponseWriter, r *h1.Request) {
	ex := exchangePool.Get().(*exchange)
	defer ex.release()
	req := ex.request(r.Method, r.Target, r.Host(), r.RemoteAddr(), r.TLS(), r.Body, s.ctx)
	if r.BodyPending() {
		ex.body.reset(nil, r)
		req.ContentLength = r.ContentLength
	}
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.1", 1, r.ProtoMinor
	if r.ProtoMinor == 0 {
		req.Proto = "HTTP/1.0"
	}
	addFields(ex, r.Fields())
	s.answer(ex, w)
}

// serveH2 answers one HTTP/2 request (stream) through the server's
// handlers.
func (s *Server) serveH2(w *h2.ResponseWriter, r *h2.Request) {
	ex := exchangePool.Get().(*exchange)
	defer ex.release()
	req := ex.request(r.Method, r.Path, r.Authority, r.RemoteAddr(), r.TLS(), r.Body, s.ctx)
	if r.BodyPending() {
		ex.body.reset(nil, r)
		req.ContentLength = r.ContentLength // -1 without a content-length
	}
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/2.0", 2, 0
	addFields(ex, r.Fields())
	s.answer(ex, w)
}

// answer runs the handlers on the exchange's request and finishes the
// answer on w, then logs it when the server keeps an access log. The
// request gets a replacer only when something reads it (the access log,
// ilp_proxy's placeholders or dynamic upstreams): ilp_edge's placeholders
// cost it five allocations per packet otherwise.
func (s *Server) answer(ex *exchange, w answerWriter) {
	var start time.Time
	if s.accessLog != nil {
		start = time.Now()
	}
	if s.needsReplacer {
		ex.ctx.repl = caddy.NewEmptyReplacer()
	}
	ex.resp.w = w
	status := ex.resp.finish(s.serve(&ex.resp, ex.req), s.logger)
	if s.accessLog != nil {
		s.logAccess(ex, status, start)
	}
}

// serve runs the handlers, a panic turned into an error as Caddy's HTTP
// server does, so that one bad packet does not take the process down.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) (err error) {
	defer func() {
		if v := recover(); v != nil {
			s.logger.Error("handler panicked", zap.Any("panic", v), zap.Stack("stack"))
			err = caddyhttp.Error(http.StatusInternalServerError, errors.New("handler panicked"))
		}
	}()
	return s.chain.ServeHTTP(w, r)
}

// request fills the exchange's *http.Request with what every version
// of HTTP has; the caller adds the version and the header fields.
func (ex *exchange) request(method, target, host []byte, remote string, state *tls.ConnectionState, body []byte,
	base context.Context,
) *http.Request {
	req := ex.req
	req.Method = http.MethodPost
	if string(method) != http.MethodPost {
		req.Method = string(method)
	}
	ex.url = url.URL{Path: "/"}
	if string(target) != "/" {
		path, query, _ := strings.Cut(string(target), "?")
		ex.url = url.URL{Path: path, RawQuery: query}
		if p, err := url.PathUnescape(path); err == nil && p != path {
			ex.url.Path, ex.url.RawPath = p, path
		}
	}
	req.URL = &ex.url
	req.Header = ex.header
	if string(host) != ex.host {
		ex.host = string(host)
	}
	req.Host = ex.host
	req.RemoteAddr = remote
	req.TLS = state
	ex.body.reset(body, nil)
	req.Body = &ex.body
	req.ContentLength = int64(len(body))
	ex.ctx = requestContext{Context: base, vars: ex.vars}
	return req
}

// addFields adds the request's header fields, h1's or h2's. Their values
// are copied into one string, and each gets a slice of the exchange's
// values, whose backing array is reused: one allocation per request
// rather than two per field (BenchmarkExchangeH1).
func addFields[F ~struct{ Name, Value []byte }](ex *exchange, fields []F) {
	n := 0
	for _, f := range fields {
		n += len(struct{ Name, Value []byte }(f).Value)
	}
	var b strings.Builder
	b.Grow(n)
	for _, f := range fields {
		b.Write(struct{ Name, Value []byte }(f).Value)
	}
	all := b.String()
	for _, f := range fields {
		f := struct{ Name, Value []byte }(f)
		value := all[:len(f.Value)]
		all = all[len(f.Value):]
		key := canonicalKey(f.Name)
		if v, ok := ex.header[key]; ok {
			ex.header[key] = append(v, value)
			continue
		}
		// A full slice: a handler that appends to it gets a copy, never
		// the next field's value.
		ex.values = append(ex.values, value)
		n := len(ex.values)
		ex.header[key] = ex.values[n-1 : n : n]
	}
}

// release clears the exchange and returns it to the pool.
func (ex *exchange) release() {
	ex.reset()
	exchangePool.Put(ex)
}

// reset clears what one request left in the exchange.
func (ex *exchange) reset() {
	*ex.req = ex.blank
	ex.ctx = requestContext{}
	ex.body.reset(nil, nil)
	clear(ex.header)
	clear(ex.values)
	ex.values = ex.values[:0]
	clear(ex.vars)
	ex.resp.reset()
}

// Header names ilp_edge reads or passes on, and the ones clients commonly
// send, in canonical form and by length, so that they cost no allocation
// and are found with a comparison or two: a map lookup would hash a
// lower-cased copy of every name.
var knownKeys = func() (byLen [16][]string) {
	for _, k := range []string{"Host", "Authorization", "Ilp-Destination", "Content-Type", "Content-Length",
		"Ilp-Peer-Name", "User-Agent", "Accept", "Accept-Encoding", "Connection", "Traceparent", "Tracestate",
		"Prefer", "Request-Id"} {
		byLen[len(k)] = append(byLen[len(k)], k)
	}
	return byLen
}()

// canonicalKey is name in http.Header's canonical form.
func canonicalKey(name []byte) string {
	if len(name) < len(knownKeys) {
		for _, k := range knownKeys[len(name)] {
			if httpsyntax.EqualFold(name, k) {
				return k
			}
		}
	}
	return http.CanonicalHeaderKey(string(name))
}

// responseWriter is the http.ResponseWriter the handlers write to: the
// status and the fields an ILP answer or a refusal has, and the body,
// written to h1's writer.
type responseWriter struct {
	header http.Header
	status int
	size   int // body bytes written
	w      answerWriter
}

// answerWriter is what h1's and h2's writers have in common.
type answerWriter interface {
	SetStatus(code int)
	SetContentType(value string) bool
	AddField(name, value string) bool
	Write(p []byte) (int, error)
}

func (rw *responseWriter) Header() http.Header { return rw.header }

func (rw *responseWriter) WriteHeader(code int) {
	if rw.status == 0 {
		rw.status = code
	}
}

func (rw *responseWriter) Write(b []byte) (int, error) {
	rw.WriteHeader(http.StatusOK)
	n, err := rw.w.Write(b)
	rw.size += n
	return n, err
}

// finish completes the answer after the handlers returned err, and
// returns its status: a handler error is answered with its status and no
// body, as Caddy's HTTP server answers one when no handle_errors route is
// set.
func (rw *responseWriter) finish(err error, logger *zap.Logger) int {
	status := rw.status
	if err != nil {
		status = http.StatusInternalServerError
		var he caddyhttp.HandlerError
		if errors.As(err, &he) && he.StatusCode != 0 {
			status = he.StatusCode
		}
		level := zap.DebugLevel
		if status >= 500 {
			level = zap.ErrorLevel
		}
		if c := logger.Check(level, "request refused"); c != nil {
			c.Write(zap.Int("status", status), zap.Error(err))
		}
	}
	if status == 0 {
		status = http.StatusOK
	}
	rw.w.SetStatus(status)
	for name, v := range rw.header {
		switch {
		case len(v) == 0:
		case name == "Content-Type":
			rw.w.SetContentType(v[0])
		case name == "Connection": // HTTP/2 has no such field, and closes no connection for a request
			if c, ok := rw.w.(interface{ CloseConn() }); ok && strings.EqualFold(v[0], "close") {
				c.CloseConn()
			}
		default:
			for _, value := range v {
				rw.w.AddField(name, value)
			}
		}
	}
	return status
}

func (rw *responseWriter) reset() {
	clear(rw.header)
	rw.status, rw.size = 0, 0
	rw.w = nil
}
