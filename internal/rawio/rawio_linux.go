//go:build linux && !race

package rawio

import (
	"os"
	"syscall"
	"unsafe"
)

// raw is false when the environment says CADDY_ILP_RAWIO=off: then the
// usual calls are made, for an operator who suspects the raw ones and
// for measuring what they save.
var raw = os.Getenv("CADDY_ILP_RAWIO") != "off"

// supported: whether New makes an IO.
var supported = raw

// Read reads once from fd, a non-blocking socket, into p: n > 0 bytes, or
// an errno (EAGAIN: nothing to read yet); 0 and no errno is the end of
// the stream. EINTR is retried.
func Read(fd uintptr, p []byte) (int, syscall.Errno) {
	if !raw {
		return usualRead(fd, p)
	}
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
		if errno != syscall.EINTR {
			return int(n), errno
		}
	}
}

// Write writes p once to fd, a non-blocking socket: the bytes the socket
// took (possibly fewer than len(p)), or an errno (EAGAIN: no room yet).
// EINTR is retried.
func Write(fd uintptr, p []byte) (int, syscall.Errno) {
	if !raw {
		return usualWrite(fd, p)
	}
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
		if errno != syscall.EINTR {
			return int(n), errno
		}
	}
}

// Peek reads up to len(b) bytes from fd without taking them and without
// waiting (MSG_PEEK|MSG_DONTWAIT): EAGAIN when there is nothing to read.
func Peek(fd uintptr, b []byte) (int, syscall.Errno) {
	if !raw {
		return usualPeek(fd, b)
	}
	for {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)),
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if errno != syscall.EINTR {
			return int(n), errno
		}
	}
}
