// Package rawio reads and writes a non-blocking socket with system calls
// the Go runtime does not account for, while the waits stay net's: a
// read with nothing to read, or a write the socket has no room for,
// parks the goroutine on the runtime's poller through the connection's
// syscall.RawConn, with its deadlines.
//
// Why: a system call made the usual way (syscall.Read, and so net.Conn)
// tells the scheduler it is entering one, so that a call that blocks
// gives its P to another thread, and the first one made while every P
// is idle wakes the runtime's monitor thread (sysmon), which then polls
// every 20 µs until the process is idle again. A read or a write on a
// non-blocking socket never blocks, so the bookkeeping buys nothing; on
// an edge between packets, each packet's first call woke sysmon, and its
// sleeps (3.5 a packet at 2,000 packets/s over 1,000 connections,
// measured with perf trace) were a fifth of the process's CPU on a
// virtual machine, where every trip through the kernel's scheduler is
// dear. A raw call holds its P for the call's microseconds, as the
// runtime's own poller does.
//
// CADDY_ILP_RAWIO=off in the process's environment turns the raw calls
// off: the usual ones are made, as on other systems.
//
// On other Unix systems, New returns nil and Read, Write and Peek make
// the usual calls; so they do under the race detector, which draws its
// edges between a socket's writer and its reader in those calls, while
// the IO's waits and its handling of partial writes are the same.
package rawio
