package handler

import (
	"net"
	"syscall"
)

// connAlive reports whether an idle connection is still open: the backend
// has not closed it (a restarted connector closes all of them) and sent
// nothing unasked. It peeks without blocking, one system call.
func connAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		// Nothing to read is the one healthy answer: 0 bytes is EOF, and
		// bytes nobody asked for would be taken as the next reply.
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && alive
}
