package deferaccept

import (
	"context"
	"net"
	"syscall"
	"testing"
)

// TestControlDefersAccept: a TCP listener made with Control has
// TCP_DEFER_ACCEPT set; a Unix one is left alone.
func TestControlDefersAccept(t *testing.T) {
	lc := net.ListenConfig{Control: Control}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	raw.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT)
	})
	if gerr != nil || v == 0 {
		t.Fatalf("TCP_DEFER_ACCEPT %d, %v; want it set", v, gerr)
	}

	ul, err := lc.Listen(context.Background(), "unix", t.TempDir()+"/s")
	if err != nil {
		t.Fatalf("a Unix listener with Control: %v", err)
	}
	ul.Close()
}
