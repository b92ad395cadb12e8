//go:build unix

package h1

import (
	"io"
	"syscall"

	"github.com/ilp-edge/caddy-ilp/internal/rawio"
)

// This file waits for an idle connection's next request without holding a
// buffer: the read is made from the runtime's poller callback, with
// buffers taken from the pool only for the attempt and kept only if bytes
// came. It costs no system call more than a plain Read, and the call is
// raw (package rawio), as are the connection's other reads and writes
// without TLS.

// idleReader is a connection's access to its socket, when it has one.
type idleReader struct {
	raw  syscall.RawConn
	read func(fd uintptr) bool // c.readFD, bound once
	err  error
}

// initIdle prepares c.readIdle, and the raw reads and writes of a
// connection without TLS (package rawio), once per connection.
func (c *conn) initIdle() {
	c.rio = rawio.New(c.nc)
	if raw := rawio.RawConnOf(c.nc); raw != nil {
		c.idle = idleReader{raw: raw, read: c.readFD}
	}
}

// readIdle reads the first bytes of a request into fresh buffers.
func (c *conn) readIdle() error {
	if c.idle.raw == nil {
		c.acquire()
		n, err := c.nc.Read(c.buf.rb)
		c.r1 = n
		return err
	}
	c.idle.err = nil
	if err := c.idle.raw.Read(c.idle.read); err != nil {
		return err
	}
	return c.idle.err
}

// readFD is called by the poller when the socket may be readable; it
// returns false to wait for the next readiness.
func (c *conn) readFD(fd uintptr) bool {
	if c.buf == nil {
		c.acquire()
	}
	n, errno := rawio.Read(fd, c.buf.rb)
	switch {
	case errno == syscall.EAGAIN:
		c.release()
		return false
	case errno != 0:
		c.idle.err = errno
	case n == 0:
		c.idle.err = io.EOF
	default:
		c.r1 = n
	}
	return true
}
