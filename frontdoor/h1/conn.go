package h1

import (
	"bytes"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ilp-edge/caddy-ilp/internal/deadline"
	"github.com/ilp-edge/caddy-ilp/internal/rawio"
)

// This file is a connection's loop: read a request, call the handler,
// buffer its answer, and write the buffered answers before the next
// blocking read, so that the answers to pipelined requests already read
// go out in one write. A connection holds buffers only while it has
// bytes to work on: between requests it is its goroutine and this struct.

// smallBuf is the read buffer most requests fit in, pipelined ones too:
// an ILP request is a few hundred bytes.
const smallBuf = 4 << 10

// maxPooled is the largest write buffer or answer body kept in the pool.
const maxPooled = 64 << 10

// flushAt is how many bytes of answers are buffered at most before they
// are written, even with more pipelined requests to answer.
const flushAt = 32 << 10

// The states of a connection, for Shutdown: an idle one has no request
// begun and can be closed at once; Shutdown marks it closed so that its
// goroutine, woken by bytes at the same moment, drops them.
const (
	stateActive int32 = iota
	stateIdle
	stateClosed
	stateHandoff // to be given to Server.Handoff, not closed
)

// buffers is what a connection holds while it works on requests.
type buffers struct {
	small []byte // the pooled read buffer
	big   *[]byte
	rb    []byte // small, or big while a request needs it
	out   []byte // answers not yet written
	req   Request
	w     ResponseWriter
}

var buffersPool = sync.Pool{New: func() any {
	b := make([]byte, smallBuf)
	return &buffers{small: b, out: make([]byte, 0, smallBuf)}
}}

// conn is one connection and its loop.
type conn struct {
	srv     *Server
	nc      net.Conn
	state   atomic.Int32
	buf     *buffers // nil while idle
	r0, r1  int      // buf.rb[r0:r1] is read and not yet served
	date    dateCache
	idle    idleReader
	rio     *rawio.IO                      // the socket's raw reads and writes; nil with TLS
	tls     *tls.ConnectionState           // once its handshake is done
	served  bool                           // a request was answered
	readBy  time.Time                      // the read deadline, as setDeadline last set it
	writeBy time.Time                      // the write deadline, as setDeadline last set it
	handTo  func(nc net.Conn, next []byte) // for stateHandoff: Server.Handoff when nil
	remote  string                         // the peer's address, once a request needs it
}

// serve runs the connection's loop until it closes; prefix is what was
// already read from it.
func (c *conn) serve(prefix []byte) {
	defer c.close()
	if len(prefix) > c.srv.limits.MaxHeaderBytes+c.srv.limits.MaxBodyBytes {
		return // larger than any request and its head: not HTTP/1 to serve
	}
	if len(prefix) > 0 {
		c.acquire()
		c.makeRoom(len(prefix))
		c.r1 = copy(c.buf.rb, prefix)
	}
	for {
		if c.r0 == c.r1 && (!c.flush() || !c.awaitRequest()) {
			return
		}
		if !c.serveRequest() {
			return
		}
	}
}

// awaitRequest waits, without buffers, for the first bytes of the next
// request, for at most IdleTimeout.
func (c *conn) awaitRequest() bool {
	c.r0, c.r1 = 0, 0
	c.release()
	if !c.setDeadline(&c.readBy, c.srv.IdleTimeout) {
		return false
	}
	// Idle, then check for a shutdown: Shutdown marks the server, then
	// closes idle connections, so one of the two sees the other.
	c.state.Store(stateIdle)
	if c.srv.shuttingDown() {
		c.state.CompareAndSwap(stateIdle, c.srv.endState())
		return false
	}
	err := c.readIdle()
	if !c.state.CompareAndSwap(stateIdle, stateActive) {
		return false
	}
	return err == nil && c.r1 > 0
}

// serveRequest reads the rest of the request at c.r0, calls the handler
// and buffers its answer. It returns false once the connection is to be
// closed, its last answer written.
func (c *conn) serveRequest() bool {
	b := c.buf
	req := &b.req
	timed := false
	var n int
	for {
		var err error
		if n, err = req.parseHead(b.rb[c.r0:c.r1], &c.srv.limits); err == nil {
			break
		}
		if err == ErrHTTP2Preface && !c.served && c.srv.HTTP2 != nil {
			c.handTo = c.srv.HTTP2
			c.state.Store(stateHandoff)
			return false
		}
		if err != ErrIncomplete {
			return c.refuse(err.(*Error))
		}
		// The head must be whole within ReadHeaderTimeout of its first
		// byte; one read is usually enough, and costs no deadline.
		if !timed {
			timed = true
			if !c.setDeadline(&c.readBy, c.srv.ReadHeaderTimeout) {
				return false
			}
		}
		if !c.readMore(c.r1 - c.r0 + 1) {
			return false
		}
	}

	total := n + int(req.ContentLength)
	if c.r1-c.r0 < total {
		c.awaitBody(req, n) // body.go
		if !c.srv.HandleOnHead {
			if _, err := req.ReadBody(); err != nil {
				return false
			}
		}
	} else {
		req.Body = b.rb[c.r0+n : c.r0+total]
	}

	b.w.reset()
	req.tls = c.tlsState()
	c.srv.Handler.ServeH1(&b.w, req)
	c.served = true
	switch {
	case req.bodyErr != nil:
		return false // the body never came: closed without an answer
	case req.BodyPending():
		return c.closeUnread(req) // the handler answered on the head
	}
	c.r0 += total

	shutdown := c.srv.shuttingDown()
	close := !req.KeepAlive() || b.w.close || shutdown && c.srv.Handoff == nil
	head := string(req.Method) == "HEAD"
	b.out = b.w.appendResponse(b.out, head, close, req.ProtoMinor == 0 && !close, c.date.get(time.Now()))
	if close {
		c.flush()
		return false
	}
	if shutdown { // to be handed to the newer server, this answer first
		if c.flush() {
			c.state.Store(stateHandoff)
		}
		return false
	}
	return len(b.out) < flushAt || c.flush()
}

// refuse answers a request this server will not serve, and ends the
// connection.
func (c *conn) refuse(e *Error) bool {
	if c.srv.Refused != nil {
		c.srv.Refused(c.nc.RemoteAddr(), e.Status, e.Reason)
	}
	c.buf.out = appendRefusal(c.buf.out, e, c.date.get(time.Now()))
	if c.flush() {
		c.linger()
	}
	return false
}

// Lingering: after a refusal, what the client still sends is read and
// dropped for a while, so that closing with unread bytes does not reset
// the connection before the client has read its answer. The bytes bound
// is above what a refused client is likely still sending (a 1 MB header
// line refused with 431 after its first kilobytes: with 64 KB the reset
// came first now and then, and the client lost its 431); the time bound
// is what stops a client that never ends.
const (
	lingerTime  = time.Second
	lingerBytes = 4 << 20
)

// linger half-closes a TCP connection and drops what arrives, for at most
// lingerTime or lingerBytes.
func (c *conn) linger() {
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil || c.nc.SetReadDeadline(time.Now().Add(lingerTime)) != nil {
		return
	}
	for read := 0; read < lingerBytes; {
		n, err := c.nc.Read(c.buf.rb)
		if err != nil {
			return
		}
		read += n
	}
}

// readMore writes the buffered answers, then reads once, with room for
// need bytes from c.r0.
func (c *conn) readMore(need int) bool {
	if !c.flush() {
		return false
	}
	c.makeRoom(need)
	n, err := c.read(c.buf.rb[c.r1:])
	c.r1 += n
	return n > 0 || err == nil
}

// makeRoom makes c.buf.rb[c.r0:] at least need bytes long: the unserved
// bytes move to its start, or to a buffer of the largest request's size.
func (c *conn) makeRoom(need int) {
	b := c.buf
	switch {
	case need > len(b.rb):
		if b.big == nil {
			b.big = c.srv.bigPool.Get().(*[]byte)
		}
		c.r1 = copy(*b.big, b.rb[c.r0:c.r1])
		c.r0 = 0
		b.rb = *b.big
	case c.r0+need > len(b.rb) || c.r1 == len(b.rb):
		c.r1 = copy(b.rb, b.rb[c.r0:c.r1])
		c.r0 = 0
	}
}

// flush writes the buffered answers, within WriteTimeout.
func (c *conn) flush() bool {
	if c.buf == nil || len(c.buf.out) == 0 {
		return true
	}
	if !c.setDeadline(&c.writeBy, c.srv.WriteTimeout) {
		return false
	}
	var err error
	if c.rio != nil {
		_, err = c.rio.Write(c.buf.out)
	} else {
		_, err = c.nc.Write(c.buf.out)
	}
	c.buf.out = c.buf.out[:0]
	return err == nil
}

// read reads from the connection once, raw when it can (package rawio).
func (c *conn) read(p []byte) (int, error) {
	if c.rio != nil {
		return c.rio.Read(p)
	}
	return c.nc.Read(p)
}

// setDeadline sets the read (by is &c.readBy) or write (&c.writeBy)
// deadline timeout from now, unless the one set is earlier by less than a
// tenth of timeout (deadline.Due): a busy connection moves each about once
// per tenth of its timeout, not for every request.
func (c *conn) setDeadline(by *time.Time, timeout time.Duration) bool {
	t := time.Now().Add(timeout)
	if !deadline.Due(*by, t, timeout/10) {
		return true
	}
	*by = t
	if by == &c.writeBy {
		return c.nc.SetWriteDeadline(t) == nil
	}
	return c.nc.SetReadDeadline(t) == nil
}

// acquire takes buffers from the pool.
func (c *conn) acquire() {
	c.buf = buffersPool.Get().(*buffers)
	c.buf.rb = c.buf.small
	// Formatted once per connection rather than for every request.
	if c.remote == "" {
		c.remote = c.nc.RemoteAddr().String()
	}
	c.buf.req.remote = c.remote
}

// tlsState is the connection's TLS state, taken once its handshake is
// done (its first read), or nil without TLS.
func (c *conn) tlsState() *tls.ConnectionState {
	if c.tls != nil {
		return c.tls
	}
	if tc, ok := c.nc.(*tls.Conn); ok {
		if st := tc.ConnectionState(); st.HandshakeComplete {
			c.tls = &st
		}
	}
	return c.tls
}

// release returns the buffers to the pool; a big read buffer goes back to
// the server's.
func (c *conn) release() {
	b := c.buf
	if b == nil {
		return
	}
	c.buf = nil
	if b.big != nil {
		c.srv.bigPool.Put(b.big)
		b.big = nil
	}
	b.rb = nil
	b.out = b.out[:0]
	// An answer of unusual size leaves no buffer of its size in the pool.
	if cap(b.out) > maxPooled {
		b.out = nil
	}
	if cap(b.w.body) > maxPooled {
		b.w.body = nil
	}
	buffersPool.Put(b)
}

// close closes the connection and forgets it, or hands it to
// Server.Handoff (or Server.HTTP2) with what was read of its next
// request.
func (c *conn) close() {
	if c.state.Load() == stateHandoff {
		var next []byte
		if c.buf != nil {
			next = bytes.Clone(c.buf.rb[c.r0:c.r1])
		}
		c.release()
		c.srv.forget(c)
		to := c.handTo
		if to == nil {
			to = c.srv.Handoff
		}
		if c.nc.SetDeadline(time.Time{}) == nil {
			to(c.nc, next)
			return
		}
	}
	c.state.Store(stateClosed)
	c.nc.Close()
	c.release()
	c.srv.forget(c)
}
