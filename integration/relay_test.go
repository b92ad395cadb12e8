package integration

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// relay is a TCP relay on loopback in front of a server, that a test can
// cut (its listener closed, its connections reset) and heal (listening
// again on the same port): a connector up but out of the edge's reach,
// as behind a network partition.
type relay struct {
	addr, to string
	mu       sync.Mutex
	ln       net.Listener // nil while cut
	conns    map[net.Conn]bool
}

func startRelay(t *testing.T, to string) *relay {
	t.Helper()
	r := &relay{to: to, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	t.Cleanup(r.cut)
	return r
}

func (r *relay) serve(ln net.Listener) {
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.pipe(c)
		}
	}()
}

func (r *relay) pipe(c net.Conn) {
	up, err := net.DialTimeout("tcp", r.to, time.Second)
	if err != nil {
		c.Close()
		return
	}
	r.mu.Lock()
	if r.ln == nil { // cut meanwhile
		r.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	r.conns[c], r.conns[up] = true, true
	r.mu.Unlock()
	go func() { io.Copy(up, c); up.Close() }()
	io.Copy(c, up)
	c.Close()
	r.mu.Lock()
	delete(r.conns, c)
	delete(r.conns, up)
	r.mu.Unlock()
}

// cut stops the relay: new connections are refused and open ones reset.
func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	for c := range r.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
	clear(r.conns)
}

// heal listens again on the relay's address.
func (r *relay) heal(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatalf("relay: listening again on %s: %v", r.addr, err)
	}
	r.serve(ln)
}
