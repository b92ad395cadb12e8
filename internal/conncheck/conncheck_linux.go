package conncheck

import (
	"net"
	"syscall"

	"github.com/ilp-edge/caddy-ilp/internal/rawio"
)

// Checker tells whether an idle client connection is still open: the
// server has not closed it (a restarted server closes all of them) and
// sent nothing unasked. It peeks without blocking, one system call, and
// is made once per connection so that a check allocates nothing.
type Checker struct {
	raw   syscall.RawConn
	peek  func(fd uintptr)
	alive bool
	buf   [1]byte
}

// New returns c's checker; nil (every check passes) for a connection
// that is not a socket.
func New(c net.Conn) *Checker {
	raw := rawio.RawConnOf(c)
	if raw == nil {
		return nil
	}
	k := &Checker{raw: raw}
	k.peek = func(fd uintptr) {
		// Nothing to read is the one healthy answer: 0 bytes is EOF, and
		// bytes nobody asked for would be taken as the next reply. The
		// call never waits, so it is made raw (package rawio).
		_, errno := rawio.Peek(fd, k.buf[:])
		k.alive = errno == syscall.EAGAIN
	}
	return k
}

// Open reports whether the connection is open with nothing to read. It
// is for an idle connection: no other goroutine may be reading it.
func (k *Checker) Open() bool {
	if k == nil {
		return true
	}
	k.alive = false
	// Control, not Read: the peek never blocks, and Read would refuse it
	// once the last exchange's read deadline has passed, taking a healthy
	// connection for a closed one.
	return k.raw.Control(k.peek) == nil && k.alive
}
