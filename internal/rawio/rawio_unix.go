//go:build unix && (!linux || race)

package rawio

import "syscall"

// Read reads once from fd into p, the usual way.
func Read(fd uintptr, p []byte) (int, syscall.Errno) { return usualRead(fd, p) }

// Write writes p once to fd, the usual way.
func Write(fd uintptr, p []byte) (int, syscall.Errno) { return usualWrite(fd, p) }

// Peek reads up to len(b) bytes from fd without taking them and without
// waiting, the usual way.
func Peek(fd uintptr, b []byte) (int, syscall.Errno) { return usualPeek(fd, b) }

// supported: whether New makes an IO. Under the race detector it does,
// with the usual calls, so that the IO's waits and partial writes are
// tested there too, and the detector sees the edges it draws between a
// socket's writer and its reader in those calls.
var supported = raceEnabled
