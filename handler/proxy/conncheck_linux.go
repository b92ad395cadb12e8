package proxy

import (
	"net"
	"syscall"
)

// connChecker tells whether an idle connection is still open: the backend
// has not closed it (a restarted connector closes all of them) and sent
// nothing unasked. It peeks without blocking, one system call, and is made
// once per connection so that a check allocates nothing.
type connChecker struct {
	raw   syscall.RawConn
	peek  func(fd uintptr)
	alive bool
	buf   [1]byte
}

func newConnChecker(c net.Conn) *connChecker {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	k := &connChecker{raw: raw}
	k.peek = func(fd uintptr) {
		// Nothing to read is the one healthy answer: 0 bytes is EOF, and
		// bytes nobody asked for would be taken as the next reply.
		_, _, err := syscall.Recvfrom(int(fd), k.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		k.alive = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
	}
	return k
}

func (k *connChecker) open() bool {
	if k == nil {
		return true
	}
	k.alive = false
	// Control, not Read: the peek never blocks, and Read would refuse it
	// once the last packet's read deadline has passed, taking a healthy
	// connection for a closed one.
	return k.raw.Control(k.peek) == nil && k.alive
}
