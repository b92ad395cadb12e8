package proxy

import (
	"bufio"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/internal/conncheck"
	"github.com/ilp-edge/caddy-ilp/internal/deadline"
	"github.com/ilp-edge/caddy-ilp/internal/rawio"
)

// This file is ilp_proxy's HTTP/1.1 client. An ILP exchange is one small
// POST and one small reply, so it writes the request straight onto a
// pooled keep-alive connection and reads the reply into a pooled buffer,
// without the goroutines, channels and header maps of net/http's
// Transport. Knowing exactly when the first byte left also tells when a
// retry is safe.

// h1Pool holds the idle keep-alive connections to one upstream address.
type h1Pool struct {
	addr        string
	dialTimeout time.Duration
	idleTimeout time.Duration
	maxIdle     int // 0: no bound

	mu     sync.Mutex
	idle   []*h1Conn   // most recently used last
	reaper *time.Timer // armed while idle connections wait; nil until the first
	closed bool
}

// h1Conn is one connection to an upstream. It counts what it writes: a
// request from which no byte was written cannot have reached the backend.
type h1Conn struct {
	net.Conn
	br        *bufio.Reader
	check     *conncheck.Checker
	written   int64
	idleSince time.Time
	writeBy   time.Time // the write deadline set
}

// writeSlack is how much earlier than a packet's deadline the write
// deadline of its request may be.
const writeSlack = time.Second

func (c *h1Conn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.written += int64(n)
	return n, err
}

// get returns an idle connection that is still open, or dials a new one.
func (p *h1Pool) get(deadline time.Time) (*h1Conn, error) {
	now := time.Now()
	for {
		p.mu.Lock()
		if len(p.idle) == 0 {
			p.mu.Unlock()
			break
		}
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		p.mu.Unlock()
		// An old idle connection may be about to be closed by the backend
		// (node closes them after 5 s): writing into that race could lose
		// a packet the backend never saw, so it is not reused. The check
		// is a system call, made outside the lock.
		if now.Sub(c.idleSince) < p.idleTimeout && c.check.Open() {
			// A write deadline an earlier packet left may have passed, or
			// be about to, while this packet's is later by less than
			// writeSlack: forgotten, exchange sets this packet's.
			if c.writeBy.Before(now.Add(writeSlack)) {
				c.writeBy = time.Time{}
			}
			return c, nil
		}
		c.Close()
	}

	d := net.Dialer{Timeout: p.dialTimeout, Deadline: deadline}
	nc, err := d.Dial("tcp", p.addr)
	if err != nil {
		return nil, err
	}
	nc = rawio.Wrap(nc) // its reads and writes never wait in a system call
	return &h1Conn{Conn: nc, br: bufio.NewReaderSize(nc, 4096), check: conncheck.New(nc)}, nil
}

// put returns a connection whose exchange completed to the pool.
func (p *h1Pool) put(c *h1Conn) {
	c.idleSince = time.Now()
	c.written = 0
	p.mu.Lock()
	if p.closed || p.maxIdle > 0 && len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle = append(p.idle, c)
	if len(p.idle) == 1 {
		p.armReaper(p.idleTimeout)
	}
	p.mu.Unlock()
}

// armReaper makes reap run after d; p.mu is held. get takes the most
// recent connections first, so after a burst the older ones would
// otherwise stay open, each with a descriptor and a read buffer, until
// traffic reached them: 9,200 of them after 10,000 packets in flight.
func (p *h1Pool) armReaper(d time.Duration) {
	if p.reaper == nil {
		p.reaper = time.AfterFunc(d, p.reap)
		return
	}
	p.reaper.Reset(d)
}

// reap closes the idle connections older than the idle timeout, the
// oldest first in p.idle, and comes back when the next one will be.
func (p *h1Pool) reap() {
	now := time.Now()
	p.mu.Lock()
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].idleSince) >= p.idleTimeout {
		n++
	}
	expired := slices.Clone(p.idle[:n])
	p.idle = slices.Delete(p.idle, 0, n)
	if len(p.idle) > 0 && !p.closed {
		p.armReaper(p.idle[0].idleSince.Add(p.idleTimeout).Sub(now))
	}
	p.mu.Unlock()
	for _, c := range expired {
		c.Close()
	}
}

// close closes the idle connections; connections in use close when
// their exchange ends.
func (p *h1Pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.reaper != nil {
		p.reaper.Stop()
	}
	for _, c := range p.idle {
		c.Close()
	}
	p.idle = nil
}

// h1Request is what is written for one packet.
type h1Request struct {
	path   string
	host   string
	header http.Header // forwarded, less hop-by-hop fields
	body   []byte
}

var bufWriterPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}

// roundTrip sends req on a connection from the pool and reads the reply
// into buf. The connection goes back to the pool only after a complete
// exchange that leaves it reusable.
func (p *h1Pool) roundTrip(req *h1Request, deadline time.Time, buf []byte) (upstreamReply, *handler.ForwardError) {
	c, err := p.get(deadline)
	if err != nil {
		return upstreamReply{}, forwardFailure(p.addr, false, err)
	}
	reply, keepAlive, err := c.exchange(req, deadline, buf)
	if err != nil {
		c.Close()
		return upstreamReply{}, forwardFailure(p.addr, c.written > 0, err)
	}
	if keepAlive {
		p.put(c)
	} else {
		c.Close()
	}
	return reply, nil
}

// exchange writes the request and reads the reply.
func (c *h1Conn) exchange(req *h1Request, packetDeadline time.Time, buf []byte) (reply upstreamReply, keepAlive bool, err error) {
	// The reply is waited for until the packet's deadline exactly: a
	// Fulfill read a moment later would be one the peer never gets. A
	// write blocks only on a connector that stopped reading, so its
	// deadline may be up to writeSlack early, and is moved only then, or
	// when get forgot one that had passed or was about to.
	if err := c.SetReadDeadline(packetDeadline); err != nil {
		return reply, false, err
	}
	if deadline.Due(c.writeBy, packetDeadline, writeSlack) {
		c.writeBy = packetDeadline
		if err := c.SetWriteDeadline(packetDeadline); err != nil {
			return reply, false, err
		}
	}
	bw := bufWriterPool.Get().(*bufio.Writer)
	bw.Reset(c)
	writeRequest(bw, req)
	err = bw.Flush()
	bw.Reset(nil)
	bufWriterPool.Put(bw)
	if err != nil {
		return reply, false, err
	}
	reply, keepAlive, err = readReply(c.br, buf)
	// Bytes after the reply answer nothing asked yet: a connector that
	// sent two replies or garbage would have them read as the next
	// packet's reply.
	if c.br.Buffered() > 0 {
		keepAlive = false
	}
	return reply, keepAlive, err
}

// writeRequest writes the packet's request: the proxy's own framing, then
// the forwarded header fields, less the hop-by-hop ones.
func writeRequest(w *bufio.Writer, req *h1Request) {
	w.WriteString("POST ")
	w.WriteString(req.path)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(req.host)
	w.WriteString("\r\nContent-Length: ")
	w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(len(req.body)), 10))
	w.WriteString("\r\n")
	for k, vv := range req.header {
		if hopByHop(k) {
			continue
		}
		for _, v := range vv {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	w.WriteString("\r\n")
	w.Write(req.body)
}

// hopByHop reports whether a request header (in canonical form) belongs to
// one connection and is not forwarded (RFC 9110 §7.6.1), or is one the
// proxy writes itself. The fields a request's Connection header names are
// hop-by-hop too; ilp_edge (or handler.ReadPacket) has removed them.
func hopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Host", "Content-Length":
		return true
	}
	return false
}
