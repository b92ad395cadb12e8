package h1

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"
)

// compared are the fields whose first value must be what net/http's
// Header.Get gives, besides every field being among net/http's values.
var compared = []string{"Authorization", "Content-Type", "ILP-Destination", "ILP-Peer-Name", "Prefer", "Request-Id", "Expect"}

// FuzzParseRequestMatchesNetHTTP checks that a request ParseHead accepts,
// body whole, is one net/http's ReadRequest reads the same way: same
// method, target, Content-Length, body, Host, fields and keep-alive.
// net/http accepts much that ParseHead refuses; the other way round would
// be a request two parsers frame or route differently.
func FuzzParseRequestMatchesNetHTTP(f *testing.F) {
	for _, tc := range requestCases {
		f.Add([]byte(tc.in))
	}
	f.Add([]byte(ilpRequest))
	f.Add([]byte("POST /ilp HTTP/1.1\r\nHost: edge:443\r\nILP-Destination: g.a.b\r\nPrefer: respond-async\r\nRequest-Id: 1\r\n" +
		"Connection: keep-alive\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\n"))
	lim := Limits{}.withDefaults()
	f.Fuzz(func(t *testing.T, in []byte) {
		var r Request
		n, err := r.ParseHead(in, lim)
		if err != nil || n+int(r.ContentLength) > len(in) {
			return
		}
		body := in[n : n+int(r.ContentLength)]
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(in)))
		if err != nil {
			t.Fatalf("accepted, net/http refuses: %v", err)
		}
		got, err := io.ReadAll(req.Body)
		if err != nil {
			t.Fatalf("net/http's body: %v", err)
		}
		if req.Method != string(r.Method) || req.RequestURI != string(r.Target) ||
			req.ContentLength != r.ContentLength || !bytes.Equal(got, body) ||
			req.ProtoMinor != r.ProtoMinor || req.Host != string(r.Host()) || req.Close == r.KeepAlive() {
			t.Fatalf("net/http reads %q %q length %d body %q minor %d host %q close %v; we read %q %q %d %q %d %q keep-alive %v",
				req.Method, req.RequestURI, req.ContentLength, got, req.ProtoMinor, req.Host, req.Close,
				r.Method, r.Target, r.ContentLength, body, r.ProtoMinor, r.Host(), r.KeepAlive())
		}
		for _, name := range compared {
			if v, ok := r.Lookup(name); req.Header.Get(name) != string(v) || ok != (len(req.Header.Values(name)) > 0) {
				t.Fatalf("%s: net/http reads %q, we read %q", name, req.Header.Values(name), v)
			}
		}
		for _, fl := range r.Fields() {
			if equalFold(fl.Name, "host") {
				continue // net/http moves it to req.Host
			}
			if !slices.Contains(req.Header.Values(string(fl.Name)), string(fl.Value)) {
				t.Fatalf("field %q: %q not among net/http's %q", fl.Name, fl.Value, req.Header.Values(string(fl.Name)))
			}
		}
	})
}

// memConn is a connection whose peer sent in, at most chunk bytes a
// read, then closed; what the server writes is kept.
type memConn struct {
	in    []byte
	chunk int
	out   bytes.Buffer
}

func (c *memConn) Read(b []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(b[:min(len(b), c.chunk)], c.in)
	c.in = c.in[n:]
	return n, nil
}

func (c *memConn) Write(b []byte) (int, error)        { return c.out.Write(b) }
func (c *memConn) Close() error                       { return nil }
func (c *memConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

// FuzzServeConn feeds any bytes, in reads of any size, through a
// connection's loop, of a server that hands requests over whole and of
// one that hands them over on their head (HandleOnHead), whose handler
// reads the body or refuses the request (X-Refuse) without it: it must
// not panic, and what it writes must be well-formed answers, each with a
// Content-Length, none after one that closes the connection.
func FuzzServeConn(f *testing.F) {
	for _, tc := range requestCases {
		f.Add([]byte(tc.in), uint8(0))
		f.Add([]byte(tc.in+getA+tc.in), uint8(7))
	}
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"+getA), uint8(10))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nX-Refuse: 1\r\nContent-Length: 30\r\n\r\nabc"+getA), uint8(40))
	servers := []*Server{
		{Handler: echo, Limits: testLimits},
		{Handler: &onHead{}, Limits: testLimits, HandleOnHead: true},
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		for _, s := range servers {
			checkServeConn(t, s, in, int(chunk)+1)
		}
	})
}

// checkServeConn serves in, chunk bytes a read, on a connection of s,
// and checks what s wrote.
func checkServeConn(t *testing.T, s *Server, in []byte, chunk int) {
	t.Helper()
	c := &memConn{in: in, chunk: chunk}
	s.ServeConn(c, nil)
	br := bufio.NewReader(&c.out)
	for {
		if _, err := br.Peek(1); err == io.EOF {
			return
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("malformed answer: %v\n%q", err, c.out.String())
		}
		if resp.StatusCode == 100 {
			continue
		}
		if cl := resp.Header.Get("Content-Length"); cl == "" || cl != strconv.FormatInt(resp.ContentLength, 10) {
			t.Fatalf("answer without a Content-Length: %q", c.out.String())
		}
		io.Copy(io.Discard, resp.Body)
		if resp.Close {
			if br.Buffered() > 0 {
				t.Fatalf("bytes after an answer that closes: %q", c.out.String())
			}
			return
		}
	}
}
