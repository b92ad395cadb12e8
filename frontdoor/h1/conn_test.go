package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// echo answers "METHOD target body", and closes the connection when the
// request asks with X-Close.
var echo = HandlerFunc(func(w *ResponseWriter, r *Request) {
	w.SetContentType("text/plain")
	w.Write(r.Method)
	w.WriteString(" ")
	w.Write(r.Target)
	w.WriteString(" ")
	w.Write(r.Body)
	if _, ok := r.Lookup("X-Close"); ok {
		w.CloseConn()
	}
})

// startServer serves s on a loopback port until the test ends.
func startServer(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// dial connects to addr, with a deadline that bounds the test.
func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// readAnswer reads one answer and its body.
func readAnswer(br *bufio.Reader) (*http.Response, string, error) {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, "", err
	}
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

// closed reports whether the peer closed the connection without sending
// more.
func closed(br *bufio.Reader) bool {
	_, err := br.ReadByte()
	return err == io.EOF
}

const getA = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"

func TestServeTable(t *testing.T) {
	s := &Server{Handler: echo, Limits: testLimits}
	addr := startServer(t, s)
	for _, tc := range requestCases {
		c := dial(t, addr)
		br := bufio.NewReader(c)
		io.WriteString(c, tc.in)
		resp, _, err := readAnswer(br)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		if resp.Close != tc.closes {
			t.Errorf("%s: Connection: close is %v, want %v", tc.name, resp.Close, tc.closes)
		}
		if tc.closes {
			if !closed(br) {
				t.Errorf("%s: connection not closed", tc.name)
			}
		} else if io.WriteString(c, getA); true {
			if resp, _, err := readAnswer(br); err != nil || resp.StatusCode != 200 {
				t.Errorf("%s: next request: %v", tc.name, err)
			}
		}
		c.Close()
	}
}

// pipeConn is the server's end of a net.Pipe, counting its writes.
type pipeConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *pipeConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// servePipe serves one in-memory connection; the test gets the client's
// end.
func servePipe(t *testing.T, s *Server, prefix []byte) (net.Conn, *pipeConn, <-chan struct{}) {
	client, server := net.Pipe()
	pc := &pipeConn{Conn: server}
	done := make(chan struct{})
	go func() {
		s.ServeConn(pc, prefix)
		close(done)
	}()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() {
		client.Close()
		<-done
	})
	return client, pc, done
}

func TestPipelinedAnswersInOrderInOneWrite(t *testing.T) {
	var reqs strings.Builder
	for i := range 10 {
		fmt.Fprintf(&reqs, "POST /%d HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n%d", i, i)
	}
	client, pc, _ := servePipe(t, &Server{Handler: echo}, nil)
	go io.WriteString(client, reqs.String())
	br := bufio.NewReader(client)
	for i := range 10 {
		resp, body, err := readAnswer(br)
		if err != nil || resp.StatusCode != 200 || body != fmt.Sprintf("POST /%d %d", i, i) {
			t.Fatalf("answer %d: %v %q", i, err, body)
		}
	}
	if n := pc.writes.Load(); n != 1 {
		t.Errorf("%d writes for 10 pipelined answers, want 1", n)
	}
}

func TestPrefixServedFirst(t *testing.T) {
	client, _, _ := servePipe(t, &Server{Handler: echo}, []byte("POST /p HTTP/1.1\r\nHost: a\r\nContent-"))
	go io.WriteString(client, "Length: 2\r\n\r\nhi")
	if _, body, err := readAnswer(bufio.NewReader(client)); err != nil || body != "POST /p hi" {
		t.Fatalf("%v %q", err, body)
	}
}

func TestRequestByteByByte(t *testing.T) {
	client, _, _ := servePipe(t, &Server{Handler: echo}, nil)
	in := requestCases[0].in
	go func() {
		for i := range len(in) {
			client.Write([]byte{in[i]}) // net.Pipe: one server read per byte
		}
	}()
	if resp, body, err := readAnswer(bufio.NewReader(client)); err != nil || resp.StatusCode != 200 || body != "POST / abc" {
		t.Fatalf("%v %q", err, body)
	}
}

func TestLargeBodyInSeveralReads(t *testing.T) {
	client, _, _ := servePipe(t, &Server{Handler: echo}, nil)
	body := strings.Repeat("x", 40000)
	go func() {
		io.WriteString(client, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 40000\r\n\r\n")
		for i := 0; i < len(body); i += 1000 {
			io.WriteString(client, body[i:i+1000])
		}
		io.WriteString(client, getA)
	}()
	br := bufio.NewReader(client)
	if _, got, err := readAnswer(br); err != nil || got != "POST / "+body {
		t.Fatalf("%v, %d bytes", err, len(got))
	}
	if _, got, err := readAnswer(br); err != nil || got != "GET /next " {
		t.Fatalf("%v %q", err, got)
	}
}

func TestExpectContinue(t *testing.T) {
	addr := startServer(t, &Server{Handler: echo})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "POST /c HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("%q, %v", line, err)
	}
	if line, _ := br.ReadString('\n'); line != "\r\n" {
		t.Fatalf("after 100 Continue: %q", line)
	}
	io.WriteString(c, "hello")
	if resp, body, err := readAnswer(br); err != nil || resp.StatusCode != 200 || body != "POST /c hello" {
		t.Fatalf("%v %q", err, body)
	}

	// Body already sent, or HTTP/1.0: no interim answer.
	for _, in := range []string{
		"POST /c HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
		"POST /c HTTP/1.0\r\nConnection: keep-alive\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
	} {
		io.WriteString(c, in)
		if resp, body, err := readAnswer(br); err != nil || resp.StatusCode != 200 || body != "POST /c hi" {
			t.Fatalf("%q: %v %q", in, err, body)
		}
	}
}

func TestKeepAliveWithNetHTTPClient(t *testing.T) {
	s := &Server{Handler: echo}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	done := make(chan error, 1)
	go func() { done <- s.Serve(cl) }()
	defer func() { s.Close(); <-done }()

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	for i := range 20 {
		body := fmt.Sprint("packet ", i)
		resp, err := client.Post("http://"+ln.Addr().String()+"/ilp", "application/octet-stream", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != "POST /ilp "+body || resp.ContentLength != int64(len(got)) ||
			resp.Header.Get("Date") == "" || resp.Header.Get("Content-Type") != "text/plain" {
			t.Fatalf("%d: %d %q %v", i, resp.StatusCode, got, resp.Header)
		}
	}
	if n := cl.accepted.Load(); n != 1 {
		t.Errorf("%d connections for 20 requests, want 1", n)
	}
}

// countingListener counts the connections accepted.
type countingListener struct {
	net.Listener
	accepted atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

func TestSlowlorisCutWhileOthersServed(t *testing.T) {
	addr := startServer(t, &Server{Handler: echo, ReadHeaderTimeout: 300 * time.Millisecond})
	slow := dial(t, addr)
	cut := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		slow.Write([]byte("POST / HTTP/1.1\r\nHost: a\r\n"))
		for i := 0; i < 200; i++ { // 10 s of dripping at most
			if _, err := slow.Write([]byte("X: y\r\n")); err != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		cut <- time.Since(start)
	}()
	// Meanwhile, another client is served.
	c := dial(t, addr)
	br := bufio.NewReader(c)
	for range 5 {
		io.WriteString(c, getA)
		if _, _, err := readAnswer(br); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := slow.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("slowloris got %d bytes, %v", n, err)
	}
	if d := <-cut; d >= 9*time.Second {
		t.Fatalf("slowloris dripped for %v", d)
	}
}

func TestBodyTimeout(t *testing.T) {
	addr := startServer(t, &Server{Handler: echo, BodyTimeout: 200 * time.Millisecond})
	c := dial(t, addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("got %d bytes, %v; want the connection closed", n, err)
	}
}

func TestIdleTimeout(t *testing.T) {
	addr := startServer(t, &Server{Handler: echo, IdleTimeout: 200 * time.Millisecond})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, getA)
	if _, _, err := readAnswer(br); err != nil {
		t.Fatal(err)
	}
	if !closed(br) {
		t.Fatal("idle connection not closed")
	}
}

func TestWriteTimeout(t *testing.T) {
	client, _, done := servePipe(t, &Server{Handler: echo, WriteTimeout: 100 * time.Millisecond}, nil)
	io.WriteString(client, getA) // and never read the answer
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("connection not closed at the write timeout")
	}
}

func TestShutdownLetsInFlightFinish(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	s := &Server{Handler: HandlerFunc(func(w *ResponseWriter, r *Request) {
		if string(r.Target) == "/slow" {
			close(entered)
			<-release
		}
		echo(w, r)
	})}
	addr := startServer(t, s)

	idle := dial(t, addr)
	idleBr := bufio.NewReader(idle)
	io.WriteString(idle, getA)
	if _, _, err := readAnswer(idleBr); err != nil {
		t.Fatal(err)
	}
	busy := dial(t, addr)
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-entered

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	if !closed(idleBr) {
		t.Fatal("idle connection not closed by Shutdown")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still accepting after Shutdown")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	br := bufio.NewReader(busy)
	resp, body, err := readAnswer(br)
	if err != nil || resp.StatusCode != 200 || body != "GET /slow " || !resp.Close {
		t.Fatalf("in-flight request: %v %q close=%v", err, body, resp != nil && resp.Close)
	}
	if !closed(br) {
		t.Fatal("connection not closed after its answer")
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

// TestShutdownHandsConnectionsOff: with Handoff set, Shutdown gives an
// idle connection to it at once, and a busy one after its answer, which
// says nothing of closing; the next requests on both are answered by the
// server Handoff passes them to, and neither client sees a close.
func TestShutdownHandsConnectionsOff(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	named := func(name string) HandlerFunc {
		return func(w *ResponseWriter, r *Request) {
			if string(r.Target) == "/slow" {
				close(entered)
				<-release
			}
			w.WriteString(name)
		}
	}
	newer := &Server{Handler: named("newer")}
	t.Cleanup(func() { newer.Close() })
	older := &Server{Handler: named("older"), Handoff: func(nc net.Conn, next []byte) { go newer.ServeConn(nc, next) }}
	addr := startServer(t, older)

	idle := dial(t, addr)
	idleBr := bufio.NewReader(idle)
	io.WriteString(idle, getA)
	if _, body, err := readAnswer(idleBr); err != nil || body != "older" {
		t.Fatalf("before Shutdown: %q, %v", body, err)
	}
	busy := dial(t, addr)
	busyBr := bufio.NewReader(busy)
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-entered

	shut := make(chan error, 1)
	go func() { shut <- older.Shutdown(context.Background()) }()
	time.Sleep(20 * time.Millisecond) // the idle one is handed off meanwhile
	io.WriteString(idle, getA)
	if _, body, err := readAnswer(idleBr); err != nil || body != "newer" {
		t.Fatalf("idle connection after Shutdown: %q, %v; want the newer server's answer", body, err)
	}
	close(release)
	resp, body, err := readAnswer(busyBr)
	if err != nil || body != "older" || resp.Close {
		t.Fatalf("in-flight request: %q, %v, close=%v; want the older server's answer, the connection kept", body, err, resp != nil && resp.Close)
	}
	io.WriteString(busy, getA+getA) // pipelined
	for range 2 {
		if _, body, err := readAnswer(busyBr); err != nil || body != "newer" {
			t.Fatalf("busy connection after its answer: %q, %v; want the newer server's answer", body, err)
		}
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

func TestShutdownDeadlineClosesTheRest(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	s := &Server{Handler: HandlerFunc(func(w *ResponseWriter, r *Request) {
		close(entered)
		<-release
	})}
	addr := startServer(t, s)
	c := dial(t, addr)
	io.WriteString(c, getA)
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("got %d bytes, %v", n, err)
	}
}

func TestHandlerFields(t *testing.T) {
	client, _, _ := servePipe(t, &Server{Handler: HandlerFunc(func(w *ResponseWriter, r *Request) {
		w.SetStatus(http.StatusUnauthorized)
		w.AddField("WWW-Authenticate", `Bearer realm="ilp"`)
		w.AddFieldBytes("Request-Id", r.Header("Request-Id"))
		if w.AddField("X-Bad", "a\r\nInjected: 1") || w.AddField("Content-Length", "1") || w.AddField("Bad Name", "x") {
			t.Error("invalid field added")
		}
		w.WriteString("no")
	})}, nil)
	go io.WriteString(client, "HEAD / HTTP/1.1\r\nHost: a\r\nRequest-Id: 42\r\n\r\n"+
		"GET / HTTP/1.1\r\nHost: a\r\nRequest-Id: 43\r\n\r\n")
	br := bufio.NewReader(client)
	head, err := http.ReadResponse(br, &http.Request{Method: "HEAD"})
	if err != nil || head.StatusCode != 401 || head.ContentLength != 2 || head.Header.Get("Request-Id") != "42" {
		t.Fatalf("HEAD: %v %+v", err, head)
	}
	resp, body, err := readAnswer(br)
	if err != nil || resp.StatusCode != 401 || body != "no" || resp.Header.Get("Www-Authenticate") != `Bearer realm="ilp"` ||
		resp.Header.Get("Injected") != "" || resp.Header.Get("X-Bad") != "" {
		t.Fatalf("%v %q %v", err, body, resp.Header)
	}
}

// TestRemoteAddr checks that every request on a connection has the
// client's address, as net/http formats it.
func TestRemoteAddr(t *testing.T) {
	got := make(chan string, 2)
	addr := startServer(t, &Server{Handler: HandlerFunc(func(w *ResponseWriter, r *Request) {
		got <- r.RemoteAddr()
		w.WriteString("ok")
	})})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	for range 2 {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		if _, _, err := readAnswer(br); err != nil {
			t.Fatal(err)
		}
		if remote := <-got; remote != c.LocalAddr().String() {
			t.Fatalf("RemoteAddr %q, want the client's %q", remote, c.LocalAddr())
		}
	}
}

func TestHandlerCloses(t *testing.T) {
	client, _, done := servePipe(t, &Server{Handler: echo}, nil)
	go io.WriteString(client, "GET / HTTP/1.1\r\nHost: a\r\nX-Close: 1\r\n\r\n")
	br := bufio.NewReader(client)
	if resp, _, err := readAnswer(br); err != nil || !resp.Close {
		t.Fatalf("%v %v", err, resp)
	}
	<-done
}

func TestRequestAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's pools drop items")
	}
	in := []byte(ilpRequest)
	var r Request
	lim := Limits{}.withDefaults()
	if n := testing.AllocsPerRun(100, func() {
		if _, err := r.ParseHead(in, lim); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ParseHead: %v allocations", n)
	}

	// A whole keep-alive round trip, server and client: the server's
	// buffers come from its pools, the client reads into its own.
	addr := startServer(t, &Server{Handler: ilpAnswer})
	c := dial(t, addr)
	answer := make([]byte, 4096)
	roundTrip := func() {
		if _, err := c.Write(in); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(answer); err != nil || !bytes.HasPrefix(answer[:n], []byte("HTTP/1.1 200 OK\r\n")) {
			t.Fatalf("%v %q", err, answer[:n])
		}
	}
	for range 10 {
		roundTrip()
	}
	if n := testing.AllocsPerRun(200, roundTrip); n != 0 {
		t.Errorf("round trip: %v allocations", n)
	}
}

// ilpRequest is a typical peer's request: a 79-byte Prepare.
var ilpRequest = "POST / HTTP/1.1\r\nHost: edge.example\r\nAuthorization: Bearer " + strings.Repeat("t", 43) +
	"\r\nContent-Type: application/octet-stream\r\nContent-Length: 79\r\n\r\n" + strings.Repeat("\x0c", 79)

// ilpAnswer answers as the edge does: an octet-stream body.
var ilpAnswer = HandlerFunc(func(w *ResponseWriter, r *Request) {
	w.SetContentType("application/octet-stream")
	w.Write(r.Body[:40])
})

func TestIdleConnectionsAreSmall(t *testing.T) {
	// Heap and stacks for each idle keep-alive connection, both ends of
	// it in this process, after one request.
	addr := startServer(t, &Server{Handler: ilpAnswer})
	const n = 500
	conns := make([]net.Conn, 0, n)
	before := memInUse()
	answer := make([]byte, 4096)
	for range n {
		c := dial(t, addr)
		c.Write([]byte(ilpRequest))
		if _, err := c.Read(answer); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	per := (memInUse() - before) / n
	t.Logf("%d bytes per idle connection", per)
	if per > 10<<10 {
		t.Errorf("%d bytes per idle connection, want at most 10 KiB", per)
	}
	for _, c := range conns {
		c.Close()
	}
}

// memInUse returns the heap and stack bytes in use after a collection.
func memInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// TestHTTP2PrefaceHandedOver: with HTTP2 set, a connection that starts
// with HTTP/2's preface goes to it with the bytes read; one that sends it
// after an HTTP/1.1 request gets 505.
func TestHTTP2PrefaceHandedOver(t *testing.T) {
	const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	got := make(chan string, 1)
	s := &Server{Handler: echo, HTTP2: func(nc net.Conn, prefix []byte) {
		nc.Close()
		got <- string(prefix)
	}}
	addr := startServer(t, s)
	c := dial(t, addr)
	io.WriteString(c, preface+"frames")
	select {
	case p := <-got:
		if !strings.HasPrefix(p, preface) {
			t.Fatalf("HTTP2 got %q, want the preface first", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the connection was not handed to HTTP2")
	}

	c = dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, getA+preface)
	if _, _, err := readAnswer(br); err != nil {
		t.Fatal(err)
	}
	if resp, _, err := readAnswer(br); err != nil || resp.StatusCode != 505 {
		t.Fatalf("the preface after a request: %v %v, want 505", resp, err)
	}
}

// TestRefusedTold checks that the server tells Refused of a request it
// refuses itself, before the answer goes out, and of none it serves.
func TestRefusedTold(t *testing.T) {
	type refusal struct {
		status int
		reason string
	}
	told := make(chan refusal, 2)
	s := &Server{Handler: echo, Refused: func(remote net.Addr, status int, reason string) {
		if remote == nil {
			t.Error("Refused without the client's address")
		}
		told <- refusal{status, reason}
	}}
	c := dial(t, startServer(t, s))
	c.Write([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok" +
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"))
	br := bufio.NewReader(c)
	for _, want := range []int{200, 400} {
		if resp, _, err := readAnswer(br); err != nil || resp.StatusCode != want {
			t.Fatalf("answer %v, %v; want %d", resp, err, want)
		}
	}
	if r := <-told; r.status != 400 || !strings.Contains(r.reason, "Content-Length") {
		t.Errorf("Refused told %d %q, want 400 and the repeated Content-Length", r.status, r.reason)
	}
	if len(told) != 0 {
		t.Errorf("Refused told of %d more", len(told))
	}
}
