//go:build !linux

package deferaccept

import "syscall"

// Control does nothing where TCP_DEFER_ACCEPT is not available.
func Control(string, string, syscall.RawConn) error { return nil }
