package proxy

import (
	"net"
	"testing"
	"time"
)

// TestConnCheckerAfterReadDeadline checks that an idle connection whose
// last packet's read deadline has passed is still found open, and that
// one its backend closed, or sent bytes on unasked, is not.
func TestConnCheckerAfterReadDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() (net.Conn, net.Conn) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, <-accepted
	}

	c, backend := dial()
	defer backend.Close()
	if err := c.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if !newConnChecker(c).open() {
		t.Error("an open connection with a passed read deadline was found closed")
	}

	c, backend = dial()
	backend.Close()
	waitFor(t, "a connection its backend closed to be found closed", func() bool { return !newConnChecker(c).open() })

	c, backend = dial()
	defer backend.Close()
	backend.Write([]byte("HTTP/1.1 200 OK\r\n"))
	waitFor(t, "a connection with bytes nobody asked for to be found closed", func() bool { return !newConnChecker(c).open() })
}
