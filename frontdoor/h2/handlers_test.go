package h2

import (
	"bytes"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// goroutineID is the number runtime.Stack gives the calling goroutine.
func goroutineID() string {
	var buf [64]byte
	s := buf[:runtime.Stack(buf[:], false)]
	s = bytes.TrimPrefix(s, []byte("goroutine "))
	return string(s[:bytes.IndexByte(s, ' ')])
}

// answersGoroutine answers with the goroutine its handler ran on, once
// release lets it; it tells started, if not nil, when it starts.
func answersGoroutine(started chan<- struct{}, release <-chan struct{}) Handler {
	return HandlerFunc(func(w *ResponseWriter, r *Request) {
		if started != nil {
			started <- struct{}{}
		}
		<-release
		w.Write([]byte(goroutineID()))
	})
}

// answers reads n streams' answers, in the order they end.
func (c *client) answers(n int) []*answer {
	c.t.Helper()
	all := map[uint32]*answer{}
	var ended []*answer
	for len(ended) < n {
		ev := c.next(all)
		if ev.answer == nil || ev.answer.reset {
			c.t.Fatalf("%+v, want an answer", ev)
		}
		ended = append(ended, ev.answer)
	}
	return ended
}

// idleCount is how many goroutines wait for a stream.
func (p *handlerPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// waitHandlersIdle waits until s keeps n goroutines waiting for a stream.
func waitHandlersIdle(t *testing.T, s *Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if idle := s.handlerPool.idleCount(); idle == n {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("%d goroutines waiting for a stream, want %d", idle, n)
		}
	}
}

func TestHandlerGoroutineReused(t *testing.T) {
	release := make(chan struct{})
	close(release)
	s := &Server{Handler: answersGoroutine(nil, release)}
	c := dial(t, startServer(t, s))
	c.handshake()
	c.request(1, "first")
	first := c.expectAnswer(1).body
	waitHandlersIdle(t, s, 1) // its goroutine is back once the answer is out
	c.request(3, "second")
	if second := c.expectAnswer(3).body; second != first {
		t.Errorf("stream 3 ran on goroutine %s, stream 1 on %s: want the same", second, first)
	}
	// The goroutines are the server's, not a connection's.
	waitHandlersIdle(t, s, 1)
	other := dial(t, c.nc.RemoteAddr().String())
	other.handshake()
	other.request(1, "another connection")
	if got := other.expectAnswer(1).body; got != first {
		t.Errorf("another connection's stream ran on goroutine %s, want %s", got, first)
	}
}

func TestHandlerGoroutinesEndWithLastConn(t *testing.T) {
	release, started := make(chan struct{}), make(chan struct{}, 4)
	addr := startServer(t, &Server{Handler: answersGoroutine(started, release)})
	c := dial(t, addr)
	c.handshake()
	for id := uint32(1); id <= 7; id += 2 {
		c.request(id, "at once")
		<-started
	}
	close(release)
	ids := map[string]bool{}
	for _, a := range c.answers(4) {
		ids[a.body] = true
	}
	if len(ids) != 4 {
		t.Fatalf("4 streams at once ran on %d goroutines, want 4", len(ids))
	}
	c.nc.Close()

	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		all := string(buf[:runtime.Stack(buf, true)])
		var left []string
		for id := range ids {
			if strings.Contains(all, "goroutine "+id+" [") {
				left = append(left, id)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("handler goroutines %v still there after the server's last connection closed:\n%s", left, all)
		}
	}
}

// TestHandlerGoroutinesBounded runs more streams at once than the server
// keeps goroutines for: those past maxIdleHandlers end with their stream.
func TestHandlerGoroutinesBounded(t *testing.T) {
	const conns, streams = 5, 128 // 640 at once
	release, started := make(chan struct{}), make(chan struct{}, conns*streams)
	s := &Server{Handler: answersGoroutine(started, release), MaxConcurrentStreams: streams}
	addr := startServer(t, s)
	cs := make([]*client, conns)
	for i := range cs {
		cs[i] = dial(t, addr)
		cs[i].handshake()
		for id := uint32(1); id < 2*streams; id += 2 {
			cs[i].request(id, strconv.Itoa(i))
		}
	}
	for range conns * streams {
		<-started // every handler on a goroutine of its own
	}
	close(release)
	for _, c := range cs {
		c.answers(streams)
	}
	// Once every goroutine that ran a handler is either parked or gone,
	// the parked ones are what the server keeps.
	buf := make([]byte, 8<<20)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		running := strings.Count(string(buf[:runtime.Stack(buf, true)]), ".(*handlerPool).serve(")
		idle := s.handlerPool.idleCount()
		if running == idle {
			if idle != maxIdleHandlers {
				t.Errorf("%d goroutines kept after %d streams at once, want %d", idle, conns*streams, maxIdleHandlers)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d handler goroutines, %d of them parked, after 5 s", running, idle)
		}
	}
}

// TestAnswersShareWrites answers 16 streams whose handlers end at once:
// their answers go out in a few writes, not one each. Goroutines are
// scheduled as they may, so the fewest writes of 5 tries is what counts
// (without the handlers' yield before writing: 10 to 16 each time).
func TestAnswersShareWrites(t *testing.T) {
	const streams, tries = 16, 5
	fewest := int64(streams)
	for range tries {
		release, started := make(chan struct{}), make(chan struct{}, streams)
		addr, cl := startCounting(t, &Server{Handler: answersGoroutine(started, release)})
		c := dial(t, addr)
		c.handshake()
		for id := uint32(1); id < 2*streams; id += 2 {
			c.request(id, "at once")
			<-started
		}
		before := cl.writes.Load()
		close(release)
		c.answers(streams)
		fewest = min(fewest, cl.writes.Load()-before)
	}
	if fewest > 4 {
		t.Errorf("%d answers ended at once took at least %d writes in %d tries, want at most 4", streams, fewest, tries)
	}
}
