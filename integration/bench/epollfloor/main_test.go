package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// upstream is a stand-in connector: it answers a fixed Fulfill carrying its
// name and records the ILP-Destination of each request it got.
type upstream struct {
	name      string
	srv       *httptest.Server
	fulfill   []byte
	echo      bool          // answer with the request's body instead
	hold      chan struct{} // if set, each request waits for it
	arrived   chan string   // if set, gets each request's destination
	closeNext atomic.Bool   // close the next request's connection unanswered
	newConns  atomic.Int64
	idle      chan struct{} // a connection went idle (its reply written)

	mu  sync.Mutex
	got map[string]int
}

// newUpstream starts an upstream; set, if not nil, sets it up first.
func newUpstream(t testing.TB, name string, set ...func(*upstream)) *upstream {
	u := &upstream{
		name:    name,
		fulfill: ilpdest.AppendFulfill(nil, []byte(strings.Repeat("f", 32)), []byte(name)),
		got:     map[string]int{},
		idle:    make(chan struct{}, 1000),
	}
	for _, f := range set {
		f(u)
	}
	u.srv = httptest.NewUnstartedServer(u)
	u.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			u.newConns.Add(1)
		case http.StateIdle:
			select {
			case u.idle <- struct{}{}:
			default:
			}
		}
	}
	u.srv.Start()
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) addr() string { return strings.TrimPrefix(u.srv.URL, "http://") }

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	dest := r.Header.Get("ILP-Destination")
	if u.closeNext.CompareAndSwap(true, false) {
		c, _, _ := w.(http.Hijacker).Hijack()
		c.Close()
		return
	}
	reply := u.fulfill
	if u.echo {
		reply = body
	} else if p, err := ilpdest.ReadPrepareHeader(body); err != nil || string(p.Destination) != dest {
		http.Error(w, "body and header disagree", http.StatusUnprocessableEntity)
		return
	}
	u.mu.Lock()
	u.got[dest]++
	u.mu.Unlock()
	if u.arrived != nil {
		u.arrived <- dest
	}
	if u.hold != nil {
		<-u.hold
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(reply)))
	w.Write(reply)
}

func (u *upstream) count(dest string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.got[dest]
}

// startFloor runs the forwarder on a port the kernel picks.
func startFloor(t testing.TB, loops int, ups ...string) *server {
	t.Helper()
	s, err := start("127.0.0.1:0", ups, loops)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func addrs(ups ...*upstream) []string {
	var a []string
	for _, u := range ups {
		a = append(a, u.addr())
	}
	return a
}

// client is one keep-alive connection to the forwarder.
type client struct {
	net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, s *server) *client {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &client{Conn: c, br: bufio.NewReader(c)}
}

func request(dest string, body []byte) []byte {
	r := fmt.Appendf(nil, "POST / HTTP/1.1\r\nHost: floor\r\nILP-Destination: %s\r\nContent-Length: %d\r\n\r\n", dest, len(body))
	return append(r, body...)
}

func prepare(dest string) []byte {
	return ilpdest.AppendPrepare(nil, ilpdest.Prepare{
		Amount: 100, ExpiresAt: time.Now().Add(time.Hour), ExecutionCondition: make([]byte, 32),
		Destination: []byte(dest), Data: []byte("hello"),
	})
}

// read reads one answer.
func (c *client) read() (int, []byte, error) {
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, nil, err
	}
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// post sends a Prepare to dest and reads the answer.
func (c *client) post(dest string) (int, []byte, error) {
	if _, err := c.Write(request(dest, prepare(dest))); err != nil {
		return 0, nil, err
	}
	return c.read()
}

// pick is the upstream gofloor's ranking sends dest to.
func pick(dest string, ups []*upstream) *upstream {
	return ups[ilpdest.Rank(dest, addrs(ups...), nil)[0]]
}

// destFor finds a destination the ranking sends to want.
func destFor(t *testing.T, want *upstream, ups []*upstream) string {
	for i := range 1000 {
		d := fmt.Sprintf("g.test.pick%d", i)
		if pick(d, ups) == want {
			return d
		}
	}
	t.Fatal("no destination ranks to", want.name)
	return ""
}

// (a) Every request, over 32 concurrent keep-alive connections, gets the
// Fulfill of the upstream the ranking picks, and reaches that upstream.
func TestForwardConcurrent(t *testing.T) {
	ups := []*upstream{newUpstream(t, "up-a"), newUpstream(t, "up-b"), newUpstream(t, "up-c")}
	s := startFloor(t, 2, addrs(ups...)...)
	const conns, total = 32, 2000
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for g := range conns {
		c := dial(t, s)
		wg.Go(func() {
			for i := g; i < total; i += conns {
				dest := fmt.Sprintf("g.test.dest%d", i%97)
				code, body, err := c.post(dest)
				if err == nil && (code != 200 || !bytes.Equal(body, pick(dest, ups).fulfill)) {
					err = fmt.Errorf("%s: %d %q, want the Fulfill of %s", dest, code, body, pick(dest, ups).name)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	want := map[*upstream]int{}
	for i := range total {
		want[pick(fmt.Sprintf("g.test.dest%d", i%97), ups)]++
	}
	for _, u := range ups {
		n := 0
		u.mu.Lock()
		for d, k := range u.got {
			if pick(d, ups) != u {
				t.Errorf("%s got %s, which ranks to %s", u.name, d, pick(d, ups).name)
			}
			n += k
		}
		u.mu.Unlock()
		if n != want[u] {
			t.Errorf("%s got %d requests, want %d", u.name, n, want[u])
		}
	}
	s.Close()
	var accepted, dials, requests int64
	for _, l := range s.loops {
		accepted, dials, requests = accepted+l.accepted, dials+l.dials, requests+l.requests
		t.Logf("loop: %d clients, %d dials, %d requests", l.accepted, l.dials, l.requests)
	}
	// Pooling: a loop holds at most one upstream connection per client.
	if accepted != conns || requests != total || dials > conns*int64(len(ups)) {
		t.Errorf("%d clients, %d requests, %d dials; want %d, %d, at most %d", accepted, requests, dials, conns, total, conns*len(ups))
	}
}

// (b) Requests outside the subset get 400 and the connection closes.
func TestBadFraming(t *testing.T) {
	u := newUpstream(t, "up")
	s := startFloor(t, 1, u.addr())
	good := string(request("g.test.good", prepare("g.test.good")))
	for name, req := range map[string]string{
		"chunked":            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"no length":          "POST / HTTP/1.1\r\nHost: x\r\n\r\n",
		"bad length":         "POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\nx",
		"signed length":      "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\nx",
		"two lengths":        "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
		"too long":           "POST / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n",
		"HTTP/1.0":           "POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
		"bare LF":            "POST / HTTP/1.1\nContent-Length: 0\n\n",
		"no colon":           "POST / HTTP/1.1\r\nHost x\r\nContent-Length: 0\r\n\r\n",
		"space before colon": "POST / HTTP/1.1\r\nContent-Length : 0\r\n\r\n",
		"garbage":            "hello\r\n\r\n",
		"control in a value": "POST / HTTP/1.1\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n",
		"head too large":     "POST / HTTP/1.1\r\nX-Big: " + strings.Repeat("a", maxHead),
		"after a good one":   good + "POST / HTTP/1.1\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c := dial(t, s)
			if _, err := c.Write([]byte(req)); err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(req, good) {
				if code, body, err := c.read(); err != nil || code != 200 || !bytes.Equal(body, u.fulfill) {
					t.Fatalf("good request: %d %q %v", code, body, err)
				}
			}
			code, _, err := c.read()
			if err != nil || code != 400 {
				t.Fatalf("got %d %v, want 400", code, err)
			}
			if n, err := c.br.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Errorf("after the 400: read %d, %v; want EOF", n, err)
			}
		})
	}
}

// (c) An upstream that closes without answering, or refuses the
// connection, gets the client a 502; later requests still work.
func TestUpstreamFailure(t *testing.T) {
	ups := []*upstream{newUpstream(t, "up-a"), newUpstream(t, "up-b"), newUpstream(t, "up-c")}
	s := startFloor(t, 1, addrs(ups...)...)
	c := dial(t, s)
	bad := ups[1]
	dest, other := destFor(t, bad, ups), destFor(t, ups[0], ups)
	for range 3 {
		// First on a pooled connection, then the dial is new.
		if code, body, err := c.post(dest); err != nil || code != 200 || !bytes.Equal(body, bad.fulfill) {
			t.Fatalf("before: %d %q %v", code, body, err)
		}
		bad.closeNext.Store(true)
		if code, _, err := c.post(dest); err != nil || code != 502 {
			t.Fatalf("closed upstream: %d %v, want 502", code, err)
		}
		if code, body, err := c.post(other); err != nil || code != 200 || !bytes.Equal(body, ups[0].fulfill) {
			t.Fatalf("other upstream: %d %q %v", code, body, err)
		}
	}
	if code, body, err := c.post(dest); err != nil || code != 200 || !bytes.Equal(body, bad.fulfill) {
		t.Fatalf("after: %d %q %v", code, body, err)
	}

	// An idle pooled connection the upstream closes leaves the pool at
	// once (its EOF is queued before the next request's event).
	ups[0].srv.CloseClientConnections()
	if code, body, err := c.post(other); err != nil || code != 200 || !bytes.Equal(body, ups[0].fulfill) {
		t.Fatalf("after the upstream closed its idle connections: %d %q %v", code, body, err)
	}

	// Nothing listens on a port that was just free.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	names := []string{dead, ups[0].addr()}
	s2 := startFloor(t, 1, names...)
	c2 := dial(t, s2)
	var toDead, toLive string
	for i := 0; toDead == "" || toLive == ""; i++ {
		d := fmt.Sprintf("g.test.dead%d", i)
		if ilpdest.Rank(d, names, nil)[0] == 0 {
			toDead = d
		} else {
			toLive = d
		}
	}
	for range 2 {
		if code, _, err := c2.post(toDead); err != nil || code != 502 {
			t.Fatalf("refused upstream: %d %v, want 502", code, err)
		}
		if code, body, err := c2.post(toLive); err != nil || code != 200 || !bytes.Equal(body, ups[0].fulfill) {
			t.Fatalf("live upstream: %d %q %v", code, body, err)
		}
	}
}

// A client gone before the reply: the reply is read and discarded and the
// upstream connection goes back to the pool (no second dial).
func TestClientGone(t *testing.T) {
	u := newUpstream(t, "up", func(u *upstream) { u.hold, u.arrived = make(chan struct{}), make(chan string, 4) })
	s := startFloor(t, 1, u.addr())
	c := dial(t, s)
	if _, err := c.Write(request("g.test.gone", prepare("g.test.gone"))); err != nil {
		t.Fatal(err)
	}
	<-u.arrived
	c.Close()
	time.Sleep(20 * time.Millisecond) // let the loop see the close first
	close(u.hold)
	<-u.idle // the reply is written, so queued on the loop's connection
	c2 := dial(t, s)
	if code, body, err := c2.post("g.test.next"); err != nil || code != 200 || !bytes.Equal(body, u.fulfill) {
		t.Fatalf("%d %q %v", code, body, err)
	}
	if n := u.newConns.Load(); n != 1 {
		t.Errorf("the upstream saw %d connections, want 1 (pooled)", n)
	}
	s.Close()
	if n := s.loops[0].discarded; n != 1 {
		t.Errorf("%d replies discarded, want 1", n)
	}
}

// Pipelined requests with bodies near the limit, answered while the client
// does not read: buffering, partial writes and EPOLLOUT.
func TestPipelinedLarge(t *testing.T) {
	u := newUpstream(t, "up", func(u *upstream) { u.echo = true })
	s := startFloor(t, 1, u.addr())
	c := dial(t, s)
	const n, size = 200, 60000
	body := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, size) }
	werr := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < n && err == nil; i++ {
			_, err = c.Write(request("g.test.big", body(i)))
		}
		werr <- err
	}()
	time.Sleep(300 * time.Millisecond) // let the answers fill the socket buffers
	for i := range n {
		code, got, err := c.read()
		if err != nil || code != 200 || !bytes.Equal(got, body(i)) {
			t.Fatalf("answer %d: %d, %d bytes, %v", i, code, len(got), err)
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s.loops[0].blocked == 0 {
		t.Error("no write was partial: the test did not test EPOLLOUT")
	}
	t.Logf("%d writes waited for EPOLLOUT", s.loops[0].blocked)
}

func BenchmarkParseHead(b *testing.B) {
	req := request("g.bench.alice", prepare("g.bench.alice"))
	b.ReportAllocs()
	for b.Loop() {
		if h, err := parseHead(req, true); err != nil || h.n == 0 {
			b.Fatal(h, err)
		}
	}
}

// BenchmarkForward is a round trip through the forwarder to an httptest
// upstream, in process: the upstream and client dominate it; it is here
// to catch allocations and gross regressions, not to measure the floor.
func BenchmarkForward(b *testing.B) {
	u := newUpstream(b, "up")
	s := startFloor(b, 1, u.addr())
	req := request("g.bench.alice", prepare("g.bench.alice"))
	b.RunParallel(func(pb *testing.PB) {
		c := dial(b, s)
		for pb.Next() {
			c.Write(req)
			if code, _, err := c.read(); err != nil || code != 200 {
				b.Error(code, err)
				return
			}
		}
	})
}
