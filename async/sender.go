package async

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/ilp-edge/caddy-ilp/internal/backoff"
)

// Reply is the Fulfill or Reject of an accepted asynchronous Prepare, to
// POST to its sender's callback URL.
type Reply struct {
	Peer      string
	URL       string // resolved by the peer's CallbackPolicy
	RequestID RequestID
	Body      []byte    // the Fulfill or Reject, OER
	Accepted  time.Time // when the Prepare got its 202
	// Until is when retrying stops: the Prepare's expiry, after which
	// the peer has given up on it anyway.
	Until time.Time
	// Authorization, when not nil, is the header's value for an attempt:
	// called once per attempt, so that a JWT is signed afresh.
	Authorization func() string
	// TLS, when not nil, is how to connect to the callback: the edge's
	// client certificate toward the peer, the roots that verify the
	// peer's server. Replies with one TLS config share connections only
	// with each other, since a pooled connection carries the certificate
	// it was dialled with; nil: the sender's shared pool, the system's
	// roots and no certificate.
	TLS *tls.Config
}

// Outcome is how a reply's delivery ended: the result of its log line
// and the outcome label of its metric.
type Outcome string

// The outcomes of Deliver.
const (
	Delivered Outcome = "delivered" // the callback answered 2xx
	Refused   Outcome = "refused"   // it answered 3xx or 4xx: the draft says stop
	Abandoned Outcome = "abandoned" // no 2xx or 4xx before Until (or the edge shut down)
)

// Delivery is how a reply's delivery ended, for the caller's log line.
type Delivery struct {
	Outcome  Outcome
	Status   int // the last POST's answer; 0 when it got none
	Attempts int // the POSTs made
	// Err is why the last POST got no answer: never the request's URL,
	// whose query a peer may have put a secret in.
	Err error
}

// Sender POSTs replies to callback URLs over connections it keeps, and
// retries on a 5xx or no answer, as the draft asks, until the Prepare
// expires; it stops at any 2xx or 4xx. It follows no redirect: a 3xx
// would let a peer send the edge to a URL its callback policy does not
// allow.
type Sender struct {
	h1     *h1Pool      // replies to plain http callbacks
	client *http.Client // replies to https ones without TLS settings of their own
	idle   int          // connections kept idle per host, in each pool

	mu         sync.Mutex
	tlsClients map[*tls.Config]*http.Client // one pool per Reply.TLS
}

// RetrySchedule spaces the tries of an exchange with a draft 3 peer that
// answered 5xx or not at all, a reply's and ilp_egress's Prepare's: 50 ms
// doubling to 2 s, jittered, the last try starting 250 ms before the
// deadline, time for a nearby host to answer.
var RetrySchedule = backoff.Schedule{First: 50 * time.Millisecond, Max: 2 * time.Second, Last: 250 * time.Millisecond}

// attemptTimeout bounds one POST, within the reply's Until; the first
// has at least firstAttempt, even for a Prepare that expired meanwhile:
// its sender is owed one answer all the same.
const (
	attemptTimeout = 10 * time.Second
	firstAttempt   = 2 * time.Second
)

// The sender's connections: how long one is dialled for, and kept idle.
const (
	dialTimeout = 5 * time.Second
	idleTimeout = 90 * time.Second
)

// NewSender makes a sender with connection pools of its own, which keep
// up to idlePerHost connections idle to each callback host (at least
// one): as many as replies to one peer may be in flight, so that the
// connections a burst of them needed are reused, not closed and dialled
// again.
func NewSender(idlePerHost int) *Sender {
	idle := max(1, idlePerHost)
	return &Sender{
		h1: &h1Pool{
			dialer:  net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second},
			maxIdle: idle, idleTimeout: idleTimeout,
		},
		client: newClient(nil, idle),
		idle:   idle,
	}
}

// newClient is a client with a pool of its own, which presents what
// tlsConfig holds to the servers it dials (nil: the defaults).
func newClient(tlsConfig *tls.Config, idlePerHost int) *http.Client {
	transport := &http.Transport{
		Proxy:                 nil, // never through a proxy from the environment
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   idlePerHost,
		IdleConnTimeout:       idleTimeout,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: attemptTimeout,
		// The answer's body is read only to keep its connection.
		DisableCompression: true,
	}
	if tlsConfig != nil {
		// A copy: the transport adds h2 to the one it is given.
		transport.TLSClientConfig = tlsConfig.Clone()
	}
	return &http.Client{
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// clientFor is the client for replies made with tlsConfig: the shared
// one for nil, else one per config, made at its first reply. The edge
// makes a peer's config once per provisioning, and a sender lives as
// long as that provisioning, so there are at most as many as peers.
func (s *Sender) clientFor(tlsConfig *tls.Config) *http.Client {
	if tlsConfig == nil {
		return s.client
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.tlsClients[tlsConfig]
	if !ok {
		if s.tlsClients == nil {
			s.tlsClients = make(map[*tls.Config]*http.Client)
		}
		c = newClient(tlsConfig, s.idle)
		s.tlsClients[tlsConfig] = c
	}
	return c
}

// CloseIdle closes the connections the sender keeps and no reply uses.
func (s *Sender) CloseIdle() {
	s.h1.closeIdle()
	s.client.CloseIdleConnections()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.tlsClients {
		c.CloseIdleConnections()
	}
}

// Deliver POSTs r until it is taken or refused, or its time (or ctx) is
// up, counts how it ended and returns it. A TLS handshake the callback
// fails (it wants a client certificate the reply does not have, say) is
// no answer, as a refused connection is: retried until Until.
func (s *Sender) Deliver(ctx context.Context, r Reply) Delivery {
	post := s.poster(&r)
	for attempt := 0; ; attempt++ {
		status, err := post(ctx, attemptDeadline(r.Until, attempt == 0))
		result := attemptResult(status, err)
		metricAttempts.WithLabelValues(r.Peer, result).Inc()
		d := Delivery{Status: status, Attempts: attempt + 1, Err: err}
		switch {
		case err == nil && status/100 == 2:
			metricReplies.WithLabelValues(r.Peer, string(Delivered)).Inc()
			metricReplySeconds.Observe(time.Since(r.Accepted).Seconds())
			d.Outcome = Delivered
			return d
		case err == nil && (status/100 == 4 || status/100 == 3):
			metricReplies.WithLabelValues(r.Peer, string(Refused)).Inc()
			d.Outcome = Refused
			return d
		}
		wait, ok := RetrySchedule.Wait(attempt, time.Now(), r.Until)
		if ok {
			select {
			case <-ctx.Done():
				ok = false
			case <-time.After(wait):
			}
		}
		if !ok {
			metricReplies.WithLabelValues(r.Peer, string(Abandoned)).Inc()
			d.Outcome = Abandoned
			return d
		}
	}
}

// poster returns how r's attempts are made: over the sender's own
// HTTP/1.1 connections to a plain http callback, else with net/http's
// client (https, with r's TLS settings).
func (s *Sender) poster(r *Reply) func(ctx context.Context, deadline time.Time) (int, error) {
	u, err := url.Parse(r.URL)
	if err != nil {
		// The policy parsed it: not reached.
		return func(context.Context, time.Time) (int, error) {
			return 0, errors.New("the callback URL does not parse")
		}
	}
	if t, ok := h1TargetOf(u); ok && r.TLS == nil {
		return func(ctx context.Context, deadline time.Time) (int, error) {
			return s.h1.post(ctx, t, r, authorization(r), deadline)
		}
	}
	client := s.clientFor(r.TLS)
	return func(ctx context.Context, deadline time.Time) (int, error) {
		return postWith(ctx, client, r, deadline)
	}
}

// attemptDeadline is when an attempt gives up: attemptTimeout from now,
// or until, whichever is sooner; the first attempt has firstAttempt at
// least.
func attemptDeadline(until time.Time, first bool) time.Time {
	now := time.Now()
	deadline := now.Add(attemptTimeout)
	if until.Before(deadline) {
		deadline = until
	}
	if floor := now.Add(firstAttempt); first && deadline.Before(floor) {
		deadline = floor
	}
	return deadline
}

// authorization is an attempt's Authorization, "" for none.
func authorization(r *Reply) string {
	if r.Authorization == nil {
		return ""
	}
	return r.Authorization()
}

// postWith makes one attempt with client, and returns the callback's
// status. An error never holds r.URL.
func postWith(ctx context.Context, client *http.Client, r *Reply, deadline time.Time) (int, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return 0, errors.New("the callback URL does not parse") // the policy parsed it: not reached
	}
	req.Header["Content-Type"] = octetStream
	req.Header["Request-Id"] = []string{string(r.RequestID)}
	if v := authorization(r); v != "" {
		req.Header["Authorization"] = []string{v}
	}
	res, err := client.Do(req)
	if err != nil {
		// Client.Do's errors quote the URL, query and all.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return 0, err
	}
	// Read (a little of) the body so the connection is kept for the next.
	io.Copy(io.Discard, io.LimitReader(res.Body, maxDrain))
	res.Body.Close()
	return res.StatusCode, nil
}

var octetStream = []string{"application/octet-stream"}

// attemptResult is an attempt's label: its status class, or error.
func attemptResult(status int, err error) string {
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return "timeout"
		}
		return "error"
	}
	if c := status / 100; c >= 1 && c <= 5 {
		return statusClasses[c]
	}
	return fmt.Sprintf("%dxx", status/100)
}

// statusClasses are the labels of the usual status classes, made once.
var statusClasses = [...]string{1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
