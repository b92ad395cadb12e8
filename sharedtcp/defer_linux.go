package sharedtcp

import "syscall"

// deferAccept has the kernel complete a connection's accept only once its
// first bytes arrived (TCP_DEFER_ACCEPT), so that a connection is handed
// to a config with its request already there to read: the old config, in
// its last moments, reads it before it begins to shut down.
func deferAccept(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
