package egress

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/store"
)

// peer is one peer ilp_egress sends to, provisioned.
type peer struct {
	name      string
	url       string    // the peer's url, resolved
	multi     *multiURL // its multi-mode template; nil: url as it is
	host      string    // its host:port, for SetRoute and ForwardError
	async     bool      // mode async: RFC 35 draft 3, replies by callback (async.go)
	auth      func() string
	limits    *handler.OutgoingLimits // nil: none
	pool      *pool
	transport *http.Transport // pool's
	metrics   *peerMetrics    // nil: metrics off
}

// newPeer provisions c's egress side: its URL, its credential, its
// outgoing limits (on st, if not nil) and its connection pool, which
// presents the peer's client certificate (callback_tls) if it has one.
// Close it when done.
func newPeer(c *handler.Peer, st *store.Store, repl *caddy.Replacer, dialTimeout, keepAlive time.Duration, metrics bool) (*peer, error) {
	raw, err := repl.ReplaceOrErr(c.EgressURL, true, true)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	var u *url.URL
	var multi *multiURL
	if c.URLSegmentAfter != "" {
		m := &multiURL{after: c.URLSegmentAfter + "."}
		if u, m.before, m.rest, err = handler.ParsePeerURLTemplate(raw); err != nil {
			return nil, fmt.Errorf("url: %w", err)
		}
		multi = m
	} else if u, err = handler.ParsePeerURL(raw); err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	p := &peer{name: c.Name, url: u.String(), multi: multi, host: hostPort(u.Scheme, u.Host), async: c.Mode == handler.ModeAsync}
	if multi != nil {
		p.url = multi.before + "%" + multi.rest
	}
	if p.auth, err = c.OutgoingAuthorization(repl); err != nil {
		return nil, err
	}
	var tlsConfig *tls.Config
	if c.CallbackTLS != nil {
		if u.Scheme != "https" {
			// The certificate would never be presented.
			return nil, errors.New("callback_tls: url is not https")
		}
		if tlsConfig, err = c.CallbackTLS.Load(); err != nil {
			return nil, fmt.Errorf("callback_tls: %w", err)
		}
	}
	if p.pool, err = loadPool(c.Name, u, tlsConfig, dialTimeout, keepAlive); err != nil {
		return nil, err
	}
	p.transport = p.pool.transport
	if p.limits, err = handler.NewOutgoingLimits(c, st); err != nil {
		p.pool.release()
		return nil, err
	}
	if metrics {
		p.metrics = newPeerMetrics(c.Name)
	}
	return p, nil
}

// close gives up the peer's connection pool (the last config to use it
// closes its idle connections; those in use close when their packets are
// answered) and its limits' budgets.
func (p *peer) close() {
	p.pool.release()
	if p.limits != nil {
		p.limits.Release()
	}
}

// admit spends pkt's share of the peer's outgoing limits, and returns
// what to do once the packet is answered: give its amount back unless it
// was fulfilled. Its error is ilp_edge's to answer with the Reject.
func (p *peer) admit(r *http.Request, pkt *handler.Packet) (settle func(reply, *handler.ForwardError), err error) {
	if p.limits == nil {
		return nil, nil
	}
	charged, err := p.limits.Admit(r.Context(), pkt)
	if err != nil || !charged {
		return nil, err
	}
	return func(rep reply, ferr *handler.ForwardError) {
		if ferr != nil || !rep.fulfill() {
			p.limits.Refund(pkt)
		}
	}, nil
}

// hostPort is host with its scheme's port when it has none.
func hostPort(scheme, host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	port := "80"
	if scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port)
}

// reply is a peer's answer.
type reply struct {
	status int
	body   []byte
}

// fulfill reports whether the reply is a Fulfill.
func (r reply) fulfill() bool {
	t, err := ilpdest.ReadResponseType(r.body)
	return r.status == http.StatusOK && err == nil && t == ilpdest.TypeFulfill
}

// errReplyTooLarge: no Fulfill or Reject is near handler.MaxReplySize.
var errReplyTooLarge = fmt.Errorf("reply over %d bytes", handler.MaxReplySize)

// target is where the packet goes: the peer's url, or for a multi-mode
// url the template with the destination's segment; the error is ilp_edge's
// to answer F02 with, when the destination has no such segment.
func (p *peer) target(pkt *handler.Packet) (string, error) {
	if p.multi == nil {
		return p.url, nil
	}
	return p.multi.url(pkt.Destination())
}

// send POSTs the packet to the peer and reads its reply, until r's
// deadline. It is made once: net/http itself resends only a request it
// knows the peer did not process (an HTTP/2 stream refused, an idle
// HTTP/1.1 connection closed before the write).
func (p *peer) send(r *http.Request, pkt *handler.Packet, target string) (reply, *handler.ForwardError) {
	resp, wrote, err := p.post(r.Context(), pkt, target, nil)
	if err != nil {
		return reply{}, p.failure(wrote, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, handler.MaxReplySize+1))
	if err == nil && len(b) > handler.MaxReplySize {
		err = errReplyTooLarge
	}
	if err != nil {
		return reply{}, p.failure(true, err)
	}
	return reply{status: resp.StatusCode, body: b}, nil
}

// post POSTs the packet to the peer with ILP-Destination, the edge's
// credential toward it and the fields in extra. It returns the peer's
// answer, or the error of a try that got none and whether any of the
// packet may have been sent: whether the request's headers went out
// tells a packet that cannot have been delivered (dial or TLS handshake
// failed) from one that may.
func (p *peer) post(ctx context.Context, pkt *handler.Packet, target string, extra http.Header) (*http.Response, bool, error) {
	resp, wrote, err := p.postOnce(ctx, pkt, target, extra)
	if err != nil && !wrote && ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		// Nothing was sent, and the deadline or cancellation is not this
		// packet's: net/http pools a connection before handing the answer
		// to its request, and when that request's deadline fires in
		// between, it closes the connection another request has taken
		// (golang/go#70834). Sent again once, on another connection.
		resp, wrote, err = p.postOnce(ctx, pkt, target, extra)
	}
	return resp, wrote, err
}

// postOnce is one try of post.
func (p *peer) postOnce(ctx context.Context, pkt *handler.Packet, target string, extra http.Header) (*http.Response, bool, error) {
	body := pkt.Bytes()
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() { wrote.Store(true) }})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, false, err // the URL parsed at provisioning: not reached
	}
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	req.Header = http.Header{
		"Content-Type":    octetStreamType,
		"Ilp-Destination": {pkt.Destination()},
	}
	maps.Copy(req.Header, extra)
	if p.auth != nil {
		req.Header["Authorization"] = []string{p.auth()}
	}
	// RoundTrip, not a Client: no redirect is followed, and no cookie kept.
	resp, err := p.transport.RoundTrip(req)
	if err != nil {
		return nil, wrote.Load(), err
	}
	return resp, true, nil
}

// failure classifies a failed exchange with the peer: sent tells whether
// any byte of the packet may have reached it. Its error never holds the
// URL, whose query may hold a secret.
func (p *peer) failure(sent bool, err error) *handler.ForwardError {
	return handler.FailedExchange(p.host, sent, errors.Is(err, errReplyTooLarge) || malformed(err), err)
}

// malformed reports whether err is net/http's for a reply that is not
// HTTP: its errors for that have no type of their own, only this text
// ("malformed HTTP response", "malformed HTTP status code", "malformed
// MIME header line"), which TestEgressFailures holds it to.
func malformed(err error) bool {
	return strings.Contains(err.Error(), "malformed ")
}
