package deferaccept

import "syscall"

// Control, as a net.ListenConfig's, has the kernel complete a TCP
// connection's accept only once its first bytes arrived
// (TCP_DEFER_ACCEPT, up to 1 s, after which it is accepted anyway).
func Control(network, _ string, c syscall.RawConn) error {
	if network != "tcp" && network != "tcp4" && network != "tcp6" {
		return nil
	}
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
