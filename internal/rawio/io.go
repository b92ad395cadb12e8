package rawio

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// IO reads and writes one connection's socket with raw system calls,
// waiting through its syscall.RawConn. Like a net.Conn, it takes one
// reader and one writer at a time; its Read and Write allocate nothing.
type IO struct {
	conn net.Conn
	raw  syscall.RawConn

	rp     []byte // the read in progress
	rn     int
	rerrno syscall.Errno
	readFn func(uintptr) bool

	wp      []byte // the write in progress
	wn      int
	werrno  syscall.Errno
	writeFn func(uintptr) bool
}

// New returns an IO for c, or nil when c is not a socket (a TLS
// connection, a pipe) or the system is not Linux: the caller then uses
// c's own Read and Write.
func New(c net.Conn) *IO {
	if !supported {
		return nil
	}
	raw := RawConnOf(c)
	if raw == nil {
		return nil
	}
	o := &IO{conn: c, raw: raw}
	o.readFn, o.writeFn = o.read, o.write
	return o
}

// RawConnOf returns c's syscall.RawConn, or nil when c is not a socket
// (a TLS connection, a pipe).
func RawConnOf(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// RawConn is the connection's syscall.RawConn.
func (o *IO) RawConn() syscall.RawConn { return o.raw }

// Read reads into p as net.Conn's Read does: at least one byte, or an
// error (io.EOF at the end of the stream; a read deadline's error
// matches os.ErrDeadlineExceeded).
func (o *IO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	o.rp, o.rn, o.rerrno = p, 0, 0
	err := o.raw.Read(o.readFn)
	o.rp = nil
	switch {
	case err != nil:
		return 0, o.opError("read", err)
	case o.rerrno != 0:
		return 0, o.opError("read", os.NewSyscallError("read", o.rerrno))
	case o.rn == 0:
		return 0, io.EOF
	}
	return o.rn, nil
}

// read is the poller's callback: false to wait for the socket to be
// readable.
func (o *IO) read(fd uintptr) bool {
	n, errno := Read(fd, o.rp)
	switch errno {
	case 0:
		o.rn = n
	case syscall.EAGAIN:
		return false
	default:
		o.rerrno = errno
	}
	return true
}

// Write writes all of p as net.Conn's Write does, or returns how much
// was written and the error that stopped it.
func (o *IO) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	o.wp, o.wn, o.werrno = p, 0, 0
	err := o.raw.Write(o.writeFn)
	n := o.wn
	o.wp = nil
	switch {
	case err != nil:
		return n, o.opError("write", err)
	case o.werrno != 0:
		return n, o.opError("write", os.NewSyscallError("write", o.werrno))
	}
	return n, nil
}

// write is the poller's callback: false to wait for room in the socket.
func (o *IO) write(fd uintptr) bool {
	for o.wn < len(o.wp) {
		n, errno := Write(fd, o.wp[o.wn:])
		switch errno {
		case 0:
			o.wn += n
		case syscall.EAGAIN:
			return false
		default:
			o.werrno = errno
			return true
		}
	}
	return true
}

// opError makes err read as net.Conn's would: "read tcp a->b: ...",
// not the RawConn's "raw-read".
func (o *IO) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: o.conn.LocalAddr().Network(), Source: o.conn.LocalAddr(), Addr: o.conn.RemoteAddr(), Err: err}
}

// Conn is a net.Conn whose Read and Write are made by an IO.
type Conn struct {
	net.Conn
	io *IO
}

// Wrap returns c with its reads and writes made raw, or c itself when it
// gets no IO (see New).
func Wrap(c net.Conn) net.Conn {
	if o := New(c); o != nil {
		return &Conn{Conn: c, io: o}
	}
	return c
}

func (c *Conn) Read(p []byte) (int, error)  { return c.io.Read(p) }
func (c *Conn) Write(p []byte) (int, error) { return c.io.Write(p) }

// SyscallConn returns the socket's syscall.RawConn, for what checks it
// directly (package conncheck).
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.io.raw, nil }
