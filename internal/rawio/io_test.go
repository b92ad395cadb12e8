package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pair returns both ends of a loopback TCP connection.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func newIO(t *testing.T, c net.Conn) *IO {
	t.Helper()
	o := New(c)
	if o == nil {
		if !supported {
			t.Skip("raw system calls are for Linux")
		}
		t.Fatal("no IO for a TCP connection")
	}
	return o
}

// TestReadWrite: what one end writes through IO, the other reads
// through IO, whole, including more than the socket buffers hold (the
// writer waits for room, the reader for bytes); then EOF.
func TestReadWrite(t *testing.T) {
	client, server := pair(t)
	w, r := newIO(t, client), newIO(t, server)
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	written := make(chan error, 1)
	go func() {
		n, err := w.Write(want)
		if err == nil && n != len(want) {
			err = io.ErrShortWrite
		}
		client.(*net.TCPConn).CloseWrite()
		written <- err
	}()
	var got bytes.Buffer
	buf := make([]byte, 3000)
	for {
		n, err := r.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatal("a read of 0 bytes without an error")
		}
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("read %d bytes, want the %d written", got.Len(), len(want))
	}
}

// TestReadDeadline: a read with nothing to read waits for the
// connection's deadline, and fails as net.Conn's does.
func TestReadDeadline(t *testing.T) {
	client, _ := pair(t)
	o := newIO(t, client)
	client.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := o.Read(make([]byte, 10))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v; want a timeout", err)
	}
	if !strings.HasPrefix(err.Error(), "read tcp ") {
		t.Errorf("error %q, want net.Conn's wording", err)
	}
}

// TestWriteToReset: a write to a connection the other end reset fails
// with the errno, as net.Conn's does, after what the socket took.
func TestWriteToReset(t *testing.T) {
	client, server := pair(t)
	o := newIO(t, client)
	server.(*net.TCPConn).SetLinger(0)
	server.Close() // RST
	var err error
	for range 100 {
		if _, err = o.Write([]byte("x")); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("writes to a reset connection: %v; want ECONNRESET or EPIPE", err)
	}
	if !strings.HasPrefix(err.Error(), "write tcp ") {
		t.Errorf("error %q, want net.Conn's wording", err)
	}
}

// TestClosedConn: IO on a connection closed here fails, as net.Conn's
// does, without a system call on a descriptor that may be another's.
func TestClosedConn(t *testing.T) {
	client, _ := pair(t)
	o := newIO(t, client)
	client.Close()
	if _, err := o.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
	if _, err := o.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}

// TestPeek: nothing to read is EAGAIN; bytes are seen and left; the
// other end's close is 0 bytes.
func TestPeek(t *testing.T) {
	client, server := pair(t)
	raw := newIO(t, client).RawConn()
	peek := func() (n int, errno syscall.Errno) {
		var b [1]byte
		raw.Control(func(fd uintptr) { n, errno = Peek(fd, b[:]) })
		return n, errno
	}
	if _, errno := peek(); errno != syscall.EAGAIN {
		t.Fatalf("peek on an empty socket: %v", errno)
	}
	server.Write([]byte("hi"))
	waitFor(t, func() bool { n, errno := peek(); return errno == 0 && n == 1 })
	var b [2]byte
	if n, err := io.ReadFull(client, b[:]); err != nil || string(b[:n]) != "hi" {
		t.Fatalf("after the peek read %q, %v", b[:n], err)
	}
	server.Close()
	waitFor(t, func() bool { n, errno := peek(); return errno == 0 && n == 0 })
}

// TestNotASocket: a connection without a socket gets no IO.
func TestNotASocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if New(a) != nil {
		t.Error("an IO for a pipe")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// BenchmarkReadWrite is one small request and its answer over loopback
// through IO at both ends, as a proxy's hop does.
func BenchmarkReadWrite(b *testing.B) { benchmarkHop(b, true) }

// BenchmarkReadWriteNetConn is the same through net.Conn.
func BenchmarkReadWriteNetConn(b *testing.B) { benchmarkHop(b, false) }

func benchmarkHop(b *testing.B, raw bool) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	type rw interface {
		Read([]byte) (int, error)
		Write([]byte) (int, error)
	}
	wrap := func(c net.Conn) rw {
		if raw {
			if o := New(c); o != nil {
				return o
			}
		}
		return c
	}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		s := wrap(c)
		buf := make([]byte, 512)
		for {
			n, err := s.Read(buf)
			if err != nil {
				return
			}
			if _, err := s.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cl := wrap(c)
	msg, buf := bytes.Repeat([]byte{1}, 200), make([]byte, 512)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cl.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(cl, buf[:len(msg)]); err != nil {
			b.Fatal(err)
		}
	}
}
