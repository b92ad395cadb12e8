//go:build !unix

package h1

// This file is readIdle where the socket cannot be read from the
// runtime's poller: an idle connection holds its buffers while it waits.

// idleReader is empty: every connection reads through net.Conn.
type idleReader struct{}

// initIdle has nothing to prepare.
func (c *conn) initIdle() {}

// readIdle reads the first bytes of a request.
func (c *conn) readIdle() error {
	c.acquire()
	n, err := c.nc.Read(c.buf.rb)
	c.r1 = n
	return err
}
