package async

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

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
}

// Outcome is how a reply's delivery ended.
type Outcome string

// The outcomes of Deliver.
const (
	Delivered Outcome = "delivered" // the callback answered 2xx
	Refused   Outcome = "refused"   // it answered 3xx or 4xx: the draft says stop
	Abandoned Outcome = "abandoned" // no 2xx or 4xx before Until (or the edge shut down)
)

// Sender POSTs replies to callback URLs over connections it keeps, and
// retries on a 5xx or no answer, as the draft asks, until the Prepare
// expires; it stops at any 2xx or 4xx. It follows no redirect: a 3xx
// would let a peer send the edge to a URL its callback policy does not
// allow.
type Sender struct {
	client   *http.Client
	schedule backoff.Schedule
	logger   *zap.Logger
}

// attemptTimeout bounds one POST, within the reply's Until; the first
// has at least firstAttempt, even for a Prepare that expired meanwhile:
// its sender is owed one answer all the same.
const (
	attemptTimeout = 10 * time.Second
	firstAttempt   = 2 * time.Second
)

// NewSender makes a sender with a connection pool of its own.
func NewSender(logger *zap.Logger) *Sender {
	transport := &http.Transport{
		Proxy:                 nil, // never through a proxy from the environment
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: attemptTimeout,
	}
	return &Sender{
		client: &http.Client{
			Transport:     transport,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		schedule: backoff.Schedule{First: 50 * time.Millisecond, Max: 2 * time.Second},
		logger:   logger,
	}
}

// CloseIdle closes the connections the sender keeps and no reply uses.
func (s *Sender) CloseIdle() { s.client.CloseIdleConnections() }

// Deliver POSTs r until it is taken or refused, or its time (or ctx) is
// up, and counts and logs how it ended.
func (s *Sender) Deliver(ctx context.Context, r Reply) Outcome {
	for attempt := 0; ; attempt++ {
		status, err := s.post(ctx, r, attempt == 0)
		result := attemptResult(status, err)
		metricAttempts.WithLabelValues(r.Peer, result).Inc()
		switch {
		case err == nil && status/100 == 2:
			metricReplies.WithLabelValues(r.Peer, string(Delivered)).Inc()
			metricReplySeconds.Observe(time.Since(r.Accepted).Seconds())
			return Delivered
		case err == nil && (status/100 == 4 || status/100 == 3):
			metricReplies.WithLabelValues(r.Peer, string(Refused)).Inc()
			s.logger.Warn("callback refused a reply; not retried",
				zap.String("peer", r.Peer), zap.String("request_id", string(r.RequestID)), zap.Int("status", status))
			return Refused
		}
		wait, ok := s.schedule.Wait(attempt, time.Now(), r.Until)
		if ok {
			select {
			case <-ctx.Done():
				ok = false
			case <-time.After(wait):
			}
		}
		if !ok {
			metricReplies.WithLabelValues(r.Peer, string(Abandoned)).Inc()
			fields := []zap.Field{zap.String("peer", r.Peer), zap.String("request_id", string(r.RequestID)),
				zap.Int("attempts", attempt+1), zap.String("last", result)}
			if err != nil {
				fields = append(fields, zap.Error(err))
			}
			s.logger.Warn("reply abandoned: the callback did not take it before the Prepare expired", fields...)
			return Abandoned
		}
	}
}

// post makes one attempt, and returns the callback's status.
func (s *Sender) post(ctx context.Context, r Reply, first bool) (int, error) {
	now := time.Now()
	deadline := now.Add(attemptTimeout)
	if r.Until.Before(deadline) {
		deadline = r.Until
	}
	if floor := now.Add(firstAttempt); first && deadline.Before(floor) {
		deadline = floor
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return 0, err
	}
	req.Header["Content-Type"] = octetStream
	req.Header["Request-Id"] = []string{string(r.RequestID)}
	if r.Authorization != nil {
		if v := r.Authorization(); v != "" {
			req.Header["Authorization"] = []string{v}
		}
	}
	res, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	// Read (a little of) the body so the connection is kept for the next.
	io.Copy(io.Discard, io.LimitReader(res.Body, 4096))
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
	return fmt.Sprintf("%dxx", status/100)
}
