//go:build !unix

package rawio

import "syscall"

// Read is not made here: New returns nil, and nothing else calls it.
func Read(uintptr, []byte) (int, syscall.Errno) { return 0, syscall.EWINDOWS }

// Write is not made here: New returns nil, and nothing else calls it.
func Write(uintptr, []byte) (int, syscall.Errno) { return 0, syscall.EWINDOWS }

// Peek is not made here: nothing calls it.
func Peek(uintptr, []byte) (int, syscall.Errno) { return 0, syscall.EWINDOWS }

var supported = false
