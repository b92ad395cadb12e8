//go:build !linux

package sharedtcp

import "syscall"

// deferAccept does nothing where TCP_DEFER_ACCEPT is not available.
func deferAccept(string, string, syscall.RawConn) error { return nil }
