package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ilp-edge/caddy-ilp/handler"
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
	maxIdle     int

	mu     sync.Mutex
	idle   []*h1Conn // most recently used last
	closed bool
}

// h1Conn is one connection to an upstream. It counts what it writes: a
// request from which no byte was written cannot have reached the backend.
type h1Conn struct {
	net.Conn
	br        *bufio.Reader
	check     *connChecker
	written   int64
	idleSince time.Time
}

func (c *h1Conn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.written += int64(n)
	return n, err
}

// get returns an idle connection that is still open, or dials a new one.
func (p *h1Pool) get(deadline time.Time) (*h1Conn, error) {
	now := time.Now()
	p.mu.Lock()
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		// An old idle connection may be about to be closed by the backend
		// (node closes them after 5 s): writing into that race could lose
		// a packet the backend never saw, so it is not reused.
		if now.Sub(c.idleSince) < p.idleTimeout && c.check.open() {
			p.mu.Unlock()
			return c, nil
		}
		c.Close()
	}
	p.mu.Unlock()

	d := net.Dialer{Timeout: p.dialTimeout, Deadline: deadline}
	nc, err := d.Dial("tcp", p.addr)
	if err != nil {
		return nil, err
	}
	return &h1Conn{Conn: nc, br: bufio.NewReaderSize(nc, 4096), check: newConnChecker(nc)}, nil
}

// put returns a connection whose exchange completed to the pool.
func (p *h1Pool) put(c *h1Conn) {
	c.idleSince = time.Now()
	c.written = 0
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// close closes the idle connections; connections in use close when
// their exchange ends.
func (p *h1Pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
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
func (c *h1Conn) exchange(req *h1Request, deadline time.Time, buf []byte) (reply upstreamReply, keepAlive bool, err error) {
	if err := c.SetDeadline(deadline); err != nil {
		return reply, false, err
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
	return readReply(c.br, buf)
}

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
// proxy writes itself.
func hopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Host", "Content-Length":
		return true
	}
	return false
}

// errMalformedReply is wrapped by every error that says the connector's
// reply is not HTTP this client can read, as opposed to a broken
// connection.
var errMalformedReply = errors.New("malformed reply")

var (
	errReplyTooLarge = fmt.Errorf("%w: over %d bytes", errMalformedReply, handler.MaxReplySize)
	errBadStatusLine = fmt.Errorf("%w: bad HTTP status line", errMalformedReply)
	errBadHeader     = fmt.Errorf("%w: bad HTTP header", errMalformedReply)
)

// readReply reads one HTTP/1.x response, skipping interim 1xx responses.
// The body is read into buf's spare capacity, or a new buffer if that is
// too small.
func readReply(br *bufio.Reader, buf []byte) (reply upstreamReply, keepAlive bool, err error) {
	for {
		line, err := readLine(br)
		if err != nil {
			return reply, false, err
		}
		// "HTTP/1.1 200 OK"
		if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
			return reply, false, errBadStatusLine
		}
		status, err := strconv.Atoi(string(line[9:12]))
		if err != nil || status < 100 {
			return reply, false, errBadStatusLine
		}
		keepAlive = line[7] == '1' // HTTP/1.1 keeps the connection unless told otherwise
		length, chunked := int64(-1), false
		for {
			line, err := readLine(br)
			if err != nil {
				return reply, false, err
			}
			if len(line) == 0 {
				break
			}
			name, value, ok := bytes.Cut(line, []byte(":"))
			if !ok {
				return reply, false, errBadHeader
			}
			value = bytes.TrimSpace(value)
			switch {
			case asciiEqualFold(name, "content-length"):
				n, err := strconv.ParseInt(string(value), 10, 64)
				if err != nil || n < 0 || (length >= 0 && n != length) {
					return reply, false, errBadHeader
				}
				length = n
			case asciiEqualFold(name, "transfer-encoding"):
				chunked = asciiEqualFold(value, "chunked")
				if !chunked {
					return reply, false, fmt.Errorf("%w: unsupported Transfer-Encoding %q", errMalformedReply, value)
				}
			case asciiEqualFold(name, "connection"):
				if asciiEqualFold(value, "close") {
					keepAlive = false
				} else if asciiEqualFold(value, "keep-alive") {
					keepAlive = true
				}
			}
		}
		if status < 200 && status != http.StatusSwitchingProtocols {
			continue // 100 Continue, 103 Early Hints: the real reply follows
		}
		reply.status = status
		switch {
		case chunked:
			reply.body, err = readAllInto(httputil.NewChunkedReader(br), buf[:0])
		case length > handler.MaxReplySize:
			return reply, false, errReplyTooLarge
		case length >= 0:
			reply.body = slices.Grow(buf[:0], int(length))[:length]
			_, err = io.ReadFull(br, reply.body)
		default:
			keepAlive = false // the body runs to the end of the connection
			reply.body, err = readAllInto(br, buf[:0])
		}
		return reply, keepAlive && err == nil, err
	}
}

// readLine returns a line without its CRLF; it is valid until the next read.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, fmt.Errorf("%w: HTTP header line over 4096 bytes", errMalformedReply)
	}
	if err != nil {
		if err == io.EOF && len(line) == 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

// readAllInto reads r to its end into buf, refusing more than
// handler.MaxReplySize bytes.
func readAllInto(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			if len(buf) > handler.MaxReplySize {
				return buf, errReplyTooLarge
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			if len(buf) > handler.MaxReplySize {
				return buf, errReplyTooLarge
			}
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// asciiEqualFold compares a header field with a lower-case ASCII name.
func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
