package conncheck

import (
	"net"
	"testing"
	"time"
)

// TestCheckerAfterReadDeadline checks that an idle connection whose last
// exchange's read deadline has passed is still found open, and that one
// its server closed, or sent bytes on unasked, is not.
func TestCheckerAfterReadDeadline(t *testing.T) {
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

	c, server := dial()
	defer server.Close()
	if err := c.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if !New(c).Open() {
		t.Error("an open connection with a passed read deadline was found closed")
	}

	c, server = dial()
	server.Close()
	waitFor(t, "a connection its server closed to be found closed", func() bool { return !New(c).Open() })

	c, server = dial()
	defer server.Close()
	server.Write([]byte("HTTP/1.1 200 OK\r\n"))
	waitFor(t, "a connection with bytes nobody asked for to be found closed", func() bool { return !New(c).Open() })
}

// waitFor polls cond for up to 5 s: the close reaches the socket in the
// background.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
