package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"github.com/ilp-edge/caddy-ilp/handler"
)

// roundTripHTTP2 sends one packet over h2c or https with net/http's
// Transport, which multiplexes streams on one connection and itself
// retries a stream the server refused before processing it.
func (u *upstream) roundTripHTTP2(r *http.Request, path string, body []byte, deadline time.Time, buf []byte) (upstreamReply, *handler.ForwardError) {
	scheme := "https://"
	if u.scheme == "h2c" {
		scheme = "http://"
	}
	ctx, cancel := context.WithDeadline(r.Context(), deadline)
	defer cancel()
	// Whether the request's headers went out tells a packet that cannot
	// have been delivered (dial or TLS handshake failed) from one that may.
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() { wrote.Store(true) }})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+u.addr+path, bytes.NewReader(body))
	if err != nil {
		return upstreamReply{}, forwardFailure(u.addr, false, err)
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
		return upstreamReply{}, forwardFailure(u.addr, wrote.Load(), err)
	}
	defer resp.Body.Close()
	reply, err := readAllInto(resp.Body, buf)
	if err != nil {
		return upstreamReply{}, forwardFailure(u.addr, true, err)
	}
	return upstreamReply{status: resp.StatusCode, body: reply}, nil
}
