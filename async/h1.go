package async

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/ilp-edge/caddy-ilp/internal/conncheck"
	"github.com/ilp-edge/caddy-ilp/internal/rawio"
)

// This file is the sender's HTTP/1.1 client for plain http callbacks. A
// reply is one small POST and an answer whose body is not kept, so it is
// written straight onto a pooled keep-alive connection by the goroutine
// that delivers it, and the answer read there with net/http's parser:
// none of the two goroutines per connection, the channel hand-offs and
// the per-request maps of net/http's Transport, which cost more than the
// rest of an asynchronous exchange together. Callbacks over https keep
// net/http's Transport, for HTTP/2 and the TLS settings.

// h1Target is where one reply's POSTs go: its URL, read once per reply.
type h1Target struct {
	addr       string // host:port to dial
	host       string // the Host field
	requestURI string // path?query, as escaped in the URL
}

// h1TargetOf returns u's target when the lean client can POST to it: a
// plain http URL whose host is ASCII, without an IPv6 zone, which the
// Host field carries as it is. Any other URL goes through net/http, which
// converts such hosts.
func h1TargetOf(u *url.URL) (h1Target, bool) {
	if u.Scheme != "http" || !httpguts.ValidHostHeader(u.Host) || hasZone(u.Host) {
		return h1Target{}, false
	}
	for i := range len(u.Host) {
		if u.Host[i] >= 0x80 {
			return h1Target{}, false
		}
	}
	return h1Target{
		addr:       net.JoinHostPort(u.Hostname(), cmp.Or(u.Port(), "80")),
		host:       u.Host,
		requestURI: u.RequestURI(),
	}, true
}

func hasZone(host string) bool {
	for i := range len(host) {
		if host[i] == '%' {
			return true
		}
	}
	return false
}

// h1Pool holds the idle keep-alive connections to callbacks over plain
// http, per host:port. It keeps up to maxIdle per host: as many as one
// peer may have replies in flight, so that a burst of replies leaves
// connections to reuse rather than to close and dial again.
type h1Pool struct {
	dialer      net.Dialer
	maxIdle     int
	idleTimeout time.Duration

	mu    sync.Mutex
	hosts map[string]*h1Host
}

// h1Host is a pool's idle connections to one host:port, most recently
// used last, and the timer that closes the ones idle too long.
type h1Host struct {
	idle   []*h1Conn
	reaper *time.Timer // pending while idle is not empty
}

// h1Conn is one connection to a callback. It holds no buffer while idle.
type h1Conn struct {
	net.Conn
	check     *conncheck.Checker
	idleSince time.Time
}

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	headPool   = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}
)

// userAgent is what net/http's client sends, which callbacks saw before.
const userAgent = "Go-http-client/1.1"

// maxDrain is how much of an answer's body is read so that its
// connection can be kept; a longer one closes it.
const maxDrain = 4096

// post makes one attempt of r to t, within deadline, and returns the
// callback's status. auth is the attempt's Authorization ("" for none).
func (p *h1Pool) post(ctx context.Context, t h1Target, r *Reply, auth string, deadline time.Time) (int, error) {
	if auth != "" && !httpguts.ValidHeaderFieldValue(auth) {
		// What net/http refuses too: a secret read from a file with its
		// newline would otherwise split the request.
		return 0, errors.New("the callback credential is not a valid header value")
	}
	c, err := p.get(ctx, t.addr, deadline)
	if err != nil {
		return 0, attemptErr(ctx, err)
	}
	// The edge's shutdown gives up on the POST in progress, as a request
	// made with ctx does.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	status, keep, err := c.exchange(t, r, auth, deadline)
	if !stop() {
		keep = false // its deadline was moved into the past
	}
	if err != nil || !keep {
		c.Close()
		return status, attemptErr(ctx, err)
	}
	p.put(t.addr, c)
	return status, nil
}

// attemptErr is err as the sender reports it: the context's error when
// the edge shut down, and a deadline that passed as the context's, which
// the attempts' metric counts as a timeout.
func attemptErr(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, os.ErrDeadlineExceeded):
		return context.DeadlineExceeded
	}
	return err
}

// exchange writes the POST and reads the answer, and reports whether the
// connection may be kept: the answer read whole, with nothing after it,
// and no Connection: close.
func (c *h1Conn) exchange(t h1Target, r *Reply, auth string, deadline time.Time) (status int, keep bool, err error) {
	if err := c.SetDeadline(deadline); err != nil {
		return 0, false, err
	}
	bp := headPool.Get().(*[]byte)
	b := append((*bp)[:0], "POST "...)
	b = append(b, t.requestURI...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, t.host...)
	b = append(b, "\r\nUser-Agent: "+userAgent+"\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(r.Body)), 10)
	b = append(b, "\r\nContent-Type: application/octet-stream\r\nRequest-Id: "...)
	b = append(b, r.RequestID...)
	if auth != "" {
		b = append(b, "\r\nAuthorization: "...)
		b = append(b, auth...)
	}
	b = append(b, "\r\n\r\n"...)
	b = append(b, r.Body...) // one write: head and body in one segment
	_, err = c.Write(b)
	*bp = b
	headPool.Put(bp)
	if err != nil {
		return 0, false, err
	}

	br := readerPool.Get().(*bufio.Reader)
	br.Reset(c.Conn)
	defer func() {
		br.Reset(nil)
		readerPool.Put(br)
	}()
	var res *http.Response
	for {
		if res, err = http.ReadResponse(br, nil); err != nil {
			return 0, false, err
		}
		// An interim answer (103 Early Hints, say) precedes the real one,
		// which net/http's client waits for too.
		if res.StatusCode >= 200 || res.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	n, err := io.Copy(io.Discard, io.LimitReader(res.Body, maxDrain+1))
	keep = err == nil && n <= maxDrain && !res.Close && br.Buffered() == 0
	return res.StatusCode, keep, nil
}

// get returns an idle connection to addr that is still open, or dials
// one.
func (p *h1Pool) get(ctx context.Context, addr string, deadline time.Time) (*h1Conn, error) {
	now := time.Now()
	for {
		p.mu.Lock()
		h := p.hosts[addr]
		if h == nil || len(h.idle) == 0 {
			p.mu.Unlock()
			break
		}
		c := h.idle[len(h.idle)-1]
		h.idle[len(h.idle)-1] = nil
		h.idle = h.idle[:len(h.idle)-1]
		p.mu.Unlock()
		// A callback that restarted, or closed a connection idle too long
		// by its count (node's after 5 s), would have a POST written into
		// the close and lost: checked first, outside the lock (a system
		// call).
		if now.Sub(c.idleSince) < p.idleTimeout && c.check.Open() {
			return c, nil
		}
		c.Close()
	}
	d := p.dialer
	d.Deadline = deadline
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	nc = rawio.Wrap(nc) // its reads and writes never wait in a system call
	return &h1Conn{Conn: nc, check: conncheck.New(nc)}, nil
}

// put keeps c for addr's next reply, unless maxIdle are kept already.
func (p *h1Pool) put(addr string, c *h1Conn) {
	c.idleSince = time.Now()
	p.mu.Lock()
	if p.hosts == nil {
		p.hosts = map[string]*h1Host{}
	}
	h := p.hosts[addr]
	if h == nil {
		h = &h1Host{}
		p.hosts[addr] = h
	}
	if len(h.idle) >= p.maxIdle {
		p.mu.Unlock()
		c.Close()
		return
	}
	h.idle = append(h.idle, c)
	if h.reaper == nil {
		h.reaper = time.AfterFunc(p.idleTimeout, func() { p.reap(addr, h) })
	}
	p.mu.Unlock()
}

// reap closes h's connections idle for idleTimeout, which a callback
// server may never close (net/http's has no idle timeout by default),
// and waits for the next to be.
func (p *h1Pool) reap(addr string, h *h1Host) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	// The oldest first: put appends.
	n := 0
	for n < len(h.idle) && now.Sub(h.idle[n].idleSince) >= p.idleTimeout {
		h.idle[n].Close()
		n++
	}
	h.idle = append(h.idle[:0], h.idle[n:]...)
	if len(h.idle) == 0 {
		h.reaper = nil
		if p.hosts[addr] == h {
			delete(p.hosts, addr)
		}
		return
	}
	h.reaper.Reset(h.idle[0].idleSince.Add(p.idleTimeout).Sub(now))
}

// closeIdle closes the idle connections; those in use are kept after
// their POST, as net/http's CloseIdleConnections leaves them.
func (p *h1Pool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.hosts {
		for _, c := range h.idle {
			c.Close()
		}
		h.idle = nil
		h.reaper.Stop()
	}
	p.hosts = nil
}
