// Command gofloor is the benchmark's measuring stick for Go itself: the
// least a goroutine-per-connection HTTP/1.1 forwarder on the standard
// library's net package does per packet, so that the harness shows what
// the Go runtime and the kernel cost before any of caddy-ilp's work.
//
// Per request it reads the head, takes Content-Length and ILP-Destination,
// reads the body, picks a stub by ranking the destination (ilpdest.Rank,
// as ilp_proxy does), writes the request on a pooled connection in one
// write, reads the reply the same way and writes the answer in one write.
// It does nothing else: no authentication, no OER parsing, no deadlines,
// no checks of idle connections, no metrics, no limits on what it reads.
// It is not a server to run anywhere but in the harness, on loopback,
// against the stubs.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/internal/httpsyntax"
)

// maxBody bounds a body, so that a bad length cannot make it allocate
// without end.
const maxBody = 1 << 16

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on (loopback)")
	upstreams := flag.String("upstreams", "", "comma-separated host:port of the stubs")
	flag.Parse()
	f := &forwarder{names: strings.Split(*upstreams, ",")}
	for _, a := range f.names {
		f.pools = append(f.pools, &pool{addr: a})
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("gofloor: %v", err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatalf("gofloor: %v", err)
		}
		go f.serve(c)
	}
}

// forwarder holds the stubs and their idle connections.
type forwarder struct {
	names []string
	pools []*pool
}

// pool is one stub's idle connections.
type pool struct {
	addr string
	mu   sync.Mutex
	idle []*upstreamConn
}

type upstreamConn struct {
	net.Conn
	br *bufio.Reader
}

func (p *pool) get() (*upstreamConn, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		return nil, err
	}
	return &upstreamConn{Conn: c, br: bufio.NewReaderSize(c, 4096)}, nil
}

func (p *pool) put(c *upstreamConn) {
	p.mu.Lock()
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// serve forwards the connection's requests until it closes or one fails.
func (f *forwarder) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 4096)
	in := make([]byte, maxBody)
	reply := make([]byte, maxBody)
	var order []int
	out := make([]byte, 0, 4096)
	for {
		dest, body, err := readMessage(br, in)
		if err != nil {
			return
		}
		order = ilpdest.Rank(dest, f.names, order[:0])
		p := f.pools[order[0]]
		u, err := p.get()
		if err != nil {
			return
		}
		out = append(out[:0], "POST / HTTP/1.1\r\nHost: stub\r\nContent-Type: application/octet-stream\r\nContent-Length: "...)
		out = strconv.AppendInt(out, int64(len(body)), 10)
		out = append(append(out, "\r\n\r\n"...), body...)
		if _, err := u.Write(out); err != nil {
			u.Close()
			return
		}
		_, answer, err := readMessage(u.br, reply)
		if err != nil {
			u.Close()
			return
		}
		p.put(u)
		out = append(out[:0], "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: "...)
		out = strconv.AppendInt(out, int64(len(answer)), 10)
		out = append(append(out, "\r\n\r\n"...), answer...)
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

var errLength = errors.New("no usable Content-Length")

// readMessage reads a request or a reply with a Content-Length body into
// buf, and returns its ILP-Destination, if any, and the body.
func readMessage(br *bufio.Reader, buf []byte) (dest string, body []byte, err error) {
	size := -1
	for first := true; ; first = false {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return "", nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if first || !ok {
			continue // the request or status line
		}
		value = bytes.TrimSpace(value)
		switch {
		case httpsyntax.EqualFold(name, "content-length"):
			if size, err = strconv.Atoi(string(value)); err != nil {
				return "", nil, errLength
			}
		case httpsyntax.EqualFold(name, "ilp-destination"):
			dest = string(value)
		}
	}
	if size < 0 || size > len(buf) {
		return "", nil, errLength
	}
	body = buf[:size]
	_, err = io.ReadFull(br, body)
	return dest, body, err
}
