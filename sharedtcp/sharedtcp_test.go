package sharedtcp

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"
)

func listen(t *testing.T, port int) net.Listener {
	t.Helper()
	ln, err := Listen(context.Background(), Network, "127.0.0.1", strconv.Itoa(port), 0, net.ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return ln.(net.Listener)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestHandOver: while two configs overlap, connections reach the newer;
// once the old one closes every connection still reaches the new one and
// none is refused or reset; when the last one closes, the port is
// released.
func TestHandOver(t *testing.T) {
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	old := listen(t, port)
	next := listen(t, port)
	if old.Addr().String() != addr || next.Addr().String() != addr {
		t.Fatalf("addresses %s and %s, want %s", old.Addr(), next.Addr(), addr)
	}
	// The old config keeps asking, but connections go to the newer one,
	// whose server will be the one left.
	oldGot := make(chan net.Conn, 1)
	go func() {
		if c, err := old.Accept(); err == nil {
			oldGot <- c
		}
		close(oldGot)
	}()
	early, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	time.Sleep(50 * time.Millisecond) // give the old config every chance to take it
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if c, ok := <-oldGot; ok {
		c.Close()
		t.Fatal("the old config got a connection while a newer one listened")
	}
	if _, err := old.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
	accepted := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := next.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	const n = 50
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial while the next config listens: %v", err)
		}
		defer c.Close()
	}
	for i := range n + 1 { // the early connection too
		select {
		case c := <-accepted:
			c.Close()
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d connections reached the next config", i, n+1)
		}
	}
	if err := next.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-accepted; ok {
		t.Fatal("a connection was accepted after the last Close")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the port still accepts after the last config closed it")
	}
}

// connected dials a fresh sharedtcp port, sends first, and returns the
// peer's side, the config's side as its listener accepted it, and that
// listener.
func connected(t *testing.T, first []byte) (port int, client net.Conn, c net.Conn, old net.Listener) {
	t.Helper()
	port = freePort(t)
	old = listen(t, port)
	client, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if _, err := client.Write(first); err != nil {
		t.Fatal(err)
	}
	if c, err = old.Accept(); err != nil {
		t.Fatal(err)
	}
	return port, client, c, old
}

// TestDroppedRequestHandedOver: a config that reads a request and closes
// the connection without answering (net/http does, once its server began
// to shut down) hands it to the newer config, which reads the same
// request and answers on the same connection.
func TestDroppedRequestHandedOver(t *testing.T) {
	port, client, c, old := connected(t, []byte("request"))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "request" {
		t.Fatalf("old config read %q, %v", buf[:n], err)
	}
	next := listen(t, port)
	defer next.Close()
	old.Close()
	c.Close() // dropped unanswered
	c2, err := next.Accept()
	if err != nil {
		t.Fatal(err)
	}
	n, err = c2.Read(buf)
	if err != nil || string(buf[:n]) != "request" {
		t.Fatalf("next config read %q, %v; want the dropped request", buf[:n], err)
	}
	c2.Write([]byte("answer"))
	c2.Close()
	client.SetDeadline(time.Now().Add(5 * time.Second))
	n, err = client.Read(buf)
	if string(buf[:n]) != "answer" {
		t.Fatalf("the peer got %q, %v; want the newer config's answer", buf[:n], err)
	}
}

// TestClosedWithoutReload: with no newer config listening, a connection
// is closed when its config closes it.
func TestClosedWithoutReload(t *testing.T) {
	_, client, c, ln := connected(t, []byte("request"))
	defer ln.Close()
	buf := make([]byte, 64)
	c.Read(buf)
	c.Close() // no newer config: a real close
	client.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(buf); err == nil {
		t.Fatalf("the peer read %q from a closed connection", buf[:n])
	}
}

// TestIdleConnectionHandedOver: a keep-alive connection that the old
// config closes as idle, while its server waits to read the next request,
// goes to the newer config, which reads the peer's next request.
func TestIdleConnectionHandedOver(t *testing.T) {
	port, client, c, old := connected(t, []byte("first"))
	buf := make([]byte, 64)
	if n, _ := c.Read(buf); string(buf[:n]) != "first" {
		t.Fatalf("read %q", buf[:n])
	}
	c.Write([]byte("answer 1"))
	blocked := make(chan error, 1)
	go func() { // the old server waits for the next request
		_, err := c.Read(buf)
		blocked <- err
	}()
	time.Sleep(20 * time.Millisecond)
	next := listen(t, port)
	defer next.Close()
	old.Close()
	c.Close() // closed as idle
	if err := <-blocked; err == nil {
		t.Fatal("the old config's read went on after its Close")
	}
	client.Write([]byte("second"))
	c2, err := next.Accept()
	if err != nil {
		t.Fatal(err)
	}
	n, err := c2.Read(buf)
	if err != nil || string(buf[:n]) != "second" {
		t.Fatalf("the newer config read %q, %v; want the peer's next request", buf[:n], err)
	}
	c2.Write([]byte("answer 2"))
	client.SetDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 0, 64)
	for len(got) < len("answer 1answer 2") {
		n, err := client.Read(buf)
		if err != nil {
			t.Fatalf("the peer got %q, then %v", got, err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "answer 1answer 2" {
		t.Fatalf("the peer got %q", got)
	}
	c2.Close()
}

// TestTLSConnectionNotMoved: a connection whose peer speaks TLS is closed,
// not handed over: its session lives in the old config.
func TestTLSConnectionNotMoved(t *testing.T) {
	port, client, c, old := connected(t, []byte{0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5})
	c.Read(make([]byte, 64))
	next := listen(t, port)
	defer next.Close()
	old.Close()
	c.Close()
	client.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes from a TLS connection that should be closed", n)
	}
}
