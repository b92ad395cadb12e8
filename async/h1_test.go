package async

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDeliverReusesConnectionsForABurst: replies to one callback, more
// in flight at once than net/http's Transport kept idle (64), come back
// in a second burst over the connections of the first: the pool keeps
// as many idle as the sender was made for.
func TestDeliverReusesConnectionsForABurst(t *testing.T) {
	const burst = 100
	var arrived sync.WaitGroup
	var mu sync.Mutex // for release and conns
	release := make(chan struct{})
	var conns int
	cb := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		wait := release // this round's
		mu.Unlock()
		io.Copy(io.Discard, r.Body)
		arrived.Done()
		<-wait // every reply of the burst in flight at once
	}))
	cb.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	cb.Start()
	defer cb.Close()

	s := NewSender(burst)
	defer s.CloseIdle()
	for round := range 2 {
		arrived.Add(burst)
		mu.Lock()
		release = make(chan struct{})
		mu.Unlock()
		var done sync.WaitGroup
		for range burst {
			done.Go(func() {
				if got := s.Deliver(t.Context(), reply(cb.URL+"/cb", 10*time.Second)); got.Outcome != Delivered {
					t.Errorf("round %d: %+v", round, got)
				}
			})
		}
		arrived.Wait()
		close(release)
		done.Wait()
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != burst {
		t.Errorf("%d connections for two bursts of %d replies, want %d: the second burst's reused", conns, burst, burst)
	}
}

// TestDeliverSkipsAClosedIdleConnection: a callback that closed the
// connection kept idle (a restart, its own idle timeout) gets the next
// reply at the first attempt, on a new connection: the closed one is
// found before a POST is written into it.
func TestDeliverSkipsAClosedIdleConnection(t *testing.T) {
	cb := startCallback(t, 200)
	s := NewSender(testIdle)
	defer s.CloseIdle()
	if got := s.Deliver(t.Context(), reply(cb.URL+"/cb", 10*time.Second)); got.Outcome != Delivered {
		t.Fatalf("%+v", got)
	}
	cb.CloseClientConnections()
	time.Sleep(50 * time.Millisecond) // for the FIN to arrive
	if got := s.Deliver(t.Context(), reply(cb.URL+"/cb", 10*time.Second)); got != (Delivery{Outcome: Delivered, Status: 200, Attempts: 1}) {
		t.Fatalf("after the callback closed its connections: %+v, want delivered at the first attempt", got)
	}
	if n := cb.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// rawCallback serves each connection with answer, which writes what the
// callback answers after a request's head and body were read, and says
// whether to go on with the connection.
func rawCallback(t *testing.T, answer func(w *bufio.Writer, req *http.Request, n int) bool) (url string, conns func() int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var accepted, requests int
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted++
			mu.Unlock()
			go func() {
				defer c.Close()
				br, bw := bufio.NewReader(c), bufio.NewWriter(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					mu.Lock()
					requests++
					n := requests
					mu.Unlock()
					more := answer(bw, req, n)
					bw.Flush()
					if !more {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String(), func() int {
		mu.Lock()
		defer mu.Unlock()
		return accepted
	}
}

// TestDeliverKeepsOnlyReusableConnections: an answer with Connection:
// close, one with a body longer than is read to keep its connection, or
// one whose body runs to the close, each leaves its connection closed,
// and the next reply dials another; an interim 103 is skipped for the
// answer after it; a whole answer keeps its connection.
func TestDeliverKeepsOnlyReusableConnections(t *testing.T) {
	for _, c := range []struct {
		name   string
		answer string
		closes bool // the callback closes the connection after it
		conns  int  // the edge's, for three replies
	}{
		{"kept", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false, 1},
		{"interim answer first", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, 1},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false, 1},
		{"Connection: close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false, 3},
		{"body too long to drain", "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + strings.Repeat("x", 5000), false, 3},
		{"body to the close", "HTTP/1.1 200 OK\r\n\r\nok", true, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			url, conns := rawCallback(t, func(w *bufio.Writer, _ *http.Request, _ int) bool {
				w.WriteString(c.answer)
				return !c.closes
			})
			s := NewSender(testIdle)
			defer s.CloseIdle()
			for i := range 3 {
				if got := s.Deliver(t.Context(), reply(url+"/cb", 10*time.Second)); got != (Delivery{Outcome: Delivered, Status: 200, Attempts: 1}) {
					t.Fatalf("reply %d: %+v", i, got)
				}
			}
			if n := conns(); n != c.conns {
				t.Errorf("%d connections for 3 replies, want %d", n, c.conns)
			}
		})
	}
}

// TestDeliverWritesTheRequest: the POST as a callback reads it: the
// path and query as in the URL, Host, the framing, the reply's fields,
// the body.
func TestDeliverWritesTheRequest(t *testing.T) {
	got := make(chan string, 1)
	url, _ := rawCallback(t, func(w *bufio.Writer, req *http.Request, _ int) bool {
		got <- fmt.Sprintf("%s %s %s host=%s len=%d type=%q id=%q auth=%q te=%q",
			req.Method, req.RequestURI, req.Proto, req.Host, req.ContentLength, req.Header.Get("Content-Type"),
			req.Header.Get("Request-Id"), req.Header.Get("Authorization"), req.TransferEncoding)
		w.WriteString("HTTP/1.1 204 No Content\r\n\r\n")
		return true
	})
	s := NewSender(testIdle)
	defer s.CloseIdle()
	if d := s.Deliver(t.Context(), reply(url+"/cb/node-3?key=a%20b", 10*time.Second)); d.Outcome != Delivered {
		t.Fatalf("%+v", d)
	}
	host := strings.TrimPrefix(url, "http://")
	want := "POST /cb/node-3?key=a%20b HTTP/1.1 host=" + host + ` len=5 type="application/octet-stream" ` +
		`id="1b4e28ba-2fa1-41d2-883f-0016d3cca427" auth="Bearer to-alice" te=[]`
	if g := <-got; g != want {
		t.Errorf("the callback read\n%s\nwant\n%s", g, want)
	}
}

// TestDeliverRefusesToSplitTheRequest: a credential that is not a header
// value (a secret read from a file, newline and all) is never written: no
// POST reaches the callback, and the reply is abandoned with the reason.
func TestDeliverRefusesToSplitTheRequest(t *testing.T) {
	cb := startCallback(t, 200)
	r := reply(cb.URL+"/cb", 300*time.Millisecond)
	r.Authorization = func() string { return "Bearer to-alice\r\nX-Injected: 1" }
	got := NewSender(testIdle).Deliver(t.Context(), r)
	if got.Outcome != Abandoned || got.Err == nil || !strings.Contains(got.Err.Error(), "credential") {
		t.Errorf("%+v, want abandoned for the credential", got)
	}
	if n := cb.posts(); n != 0 {
		t.Errorf("%d POSTs reached the callback", n)
	}
}

// TestDeliverStopsAPOSTWhenCancelled: the edge's shutdown (its context)
// ends a POST the callback holds, rather than its attempt's timeout.
func TestDeliverStopsAPOSTWhenCancelled(t *testing.T) {
	silent := startCallback(t, 0)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		for silent.posts() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	got := NewSender(testIdle).Deliver(ctx, reply(silent.URL, time.Hour))
	if got.Outcome != Abandoned || !errors.Is(got.Err, context.Canceled) {
		t.Errorf("%+v, want abandoned, cancelled", got)
	}
}
