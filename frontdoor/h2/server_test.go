package h2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// blocking is a handler that answers its body once released, and says
// when each request has started.
func blocking() (Handler, chan struct{}, chan struct{}) {
	release := make(chan struct{})
	started := make(chan struct{}, 100)
	return HandlerFunc(func(w *ResponseWriter, r *Request) {
		started <- struct{}{}
		<-release
		w.Write(r.Body)
	}), release, started
}

func TestShutdownGoAwayThenInFlightFinish(t *testing.T) {
	h, release, started := blocking()
	s := &Server{Handler: h}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	c := dial(t, ln.Addr().String())
	c.handshake()
	for id := uint32(1); id <= 5; id += 2 {
		c.request(id, "in flight")
		<-started
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()

	answers := map[uint32]*answer{}
	ev := c.next(answers)
	if ev.goAway == nil || ev.goAway.ErrCode != http2.ErrCodeNo || ev.goAway.LastStreamID != 5 {
		t.Fatalf("%+v, want GOAWAY NO_ERROR last stream 5", ev)
	}
	c.request(7, "too late") // above the GOAWAY's last stream
	if ev := c.next(answers); ev.id != 7 || !ev.answer.reset || ev.answer.rst != http2.ErrCodeRefusedStream {
		t.Fatalf("stream 7: %+v, want REFUSED_STREAM", ev)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still accepting")
	}
	close(release)
	for range 3 {
		if ev := c.next(answers); ev.answer == nil || ev.answer.body != "in flight" {
			t.Fatalf("%+v", ev)
		}
	}
	if ev := c.next(answers); !ev.eof {
		t.Fatalf("%+v, want the connection closed", ev)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
}

func TestShutdownIdleConnection(t *testing.T) {
	s := &Server{Handler: echo}
	addr := startServer(t, s)
	c := dial(t, addr)
	c.handshake()
	c.request(1, "x")
	c.expectAnswer(1)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	g := c.expectGoAway(http2.ErrCodeNo)
	if g.LastStreamID != 1 {
		t.Fatalf("last stream %d", g.LastStreamID)
	}
}

func TestShutdownDeadline(t *testing.T) {
	h, release, started := blocking()
	defer close(release)
	s := &Server{Handler: h}
	c := dial(t, startServer(t, s))
	c.handshake()
	c.request(1, "stuck")
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	c.expectEOF() // closed by the Close that follows the deadline
}

func TestShutdownWithGoClient(t *testing.T) {
	h, release, started := blocking()
	s := &Server{Handler: h}
	addr := startServer(t, s)
	var dials atomic.Int32
	client := h2cClient(&dials)
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	bodies := make([]string, 10)
	for i := range bodies {
		wg.Go(func() {
			resp, err := client.Post("http://"+addr+"/ilp", "application/octet-stream", bytes.NewReader([]byte("packet")))
			if err != nil {
				bodies[i] = err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			bodies[i] = string(b)
		})
	}
	for range bodies {
		<-started
	}
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	time.Sleep(20 * time.Millisecond) // the GOAWAY on its way; not needed for the outcome
	close(release)
	wg.Wait()
	for i, b := range bodies {
		if b != "packet" {
			t.Errorf("request %d: %q", i, b)
		}
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

func TestCloseDropsAnswers(t *testing.T) {
	h, release, started := blocking()
	s := &Server{Handler: h}
	c := dial(t, startServer(t, s))
	c.handshake()
	c.request(1, "x")
	<-started
	s.Close()
	c.expectEOF()
	close(release) // the handler returns; its answer goes nowhere
}

func TestShutdownBeforePreface(t *testing.T) {
	s := &Server{Handler: echo}
	c := dial(t, startServer(t, s))
	io.WriteString(c.nc, http2.ClientPreface[:5])
	time.Sleep(20 * time.Millisecond) // the connection accepted; not needed for the outcome
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.expectEOF()
}
