package async

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// callback is a peer's callback endpoint answering each POST with the
// next of statuses (then the last one again), and recording what it got.
type callback struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	got      []*http.Request
	bodies   [][]byte
	conns    atomic.Int32
}

func startCallback(t *testing.T, statuses ...int) *callback {
	c := &callback{statuses: statuses}
	c.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := make([]byte, r.ContentLength)
		r.Body.Read(body)
		c.mu.Lock()
		c.got = append(c.got, r)
		c.bodies = append(c.bodies, body)
		status := c.statuses[min(len(c.got), len(c.statuses))-1]
		c.mu.Unlock()
		if status == 0 { // silence: hang until the client gives up
			<-r.Context().Done()
			return
		}
		w.WriteHeader(status)
	}))
	c.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			c.conns.Add(1)
		}
	}
	c.Start()
	t.Cleanup(c.Close)
	return c
}

func (c *callback) posts() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

func reply(url string, within time.Duration) Reply {
	return Reply{Peer: "alice", URL: url, RequestID: "1b4e28ba-2fa1-41d2-883f-0016d3cca427", Body: []byte("reply"),
		Accepted: time.Now(), Until: time.Now().Add(within), Authorization: func() string { return "Bearer to-alice" }}
}

func TestDeliverRetriesA5xxUntilTaken(t *testing.T) {
	cb := startCallback(t, 503, 503, 500, 200)
	s := NewSender(testIdle)
	if got := s.Deliver(t.Context(), reply(cb.URL+"/cb", 10*time.Second)); got != (Delivery{Outcome: Delivered, Status: 200, Attempts: 4}) {
		t.Fatalf("%+v, want delivered with 200 at the 4th attempt", got)
	}
	if n := cb.posts(); n != 4 {
		t.Errorf("%d POSTs, want 4: three refused with 5xx, then taken", n)
	}
	r := cb.got[0]
	if r.Header.Get("Request-Id") != "1b4e28ba-2fa1-41d2-883f-0016d3cca427" || r.Header.Get("Content-Type") != "application/octet-stream" ||
		r.Header.Get("Authorization") != "Bearer to-alice" || r.URL.Path != "/cb" || string(cb.bodies[0]) != "reply" {
		t.Errorf("the POST: %s %v %q", r.URL, r.Header, cb.bodies[0])
	}
	if n := cb.conns.Load(); n != 1 {
		t.Errorf("%d connections for 4 POSTs, want 1 (kept alive)", n)
	}
}

func TestDeliverStopsAtA4xx(t *testing.T) {
	for _, status := range []int{400, 404, 302} {
		cb := startCallback(t, status, 200)
		if got := NewSender(testIdle).Deliver(t.Context(), reply(cb.URL, 10*time.Second)); got != (Delivery{Outcome: Refused, Status: status, Attempts: 1}) {
			t.Errorf("%d: %+v, want refused", status, got)
		}
		if n := cb.posts(); n != 1 {
			t.Errorf("%d: %d POSTs, want 1: the draft says stop at a 4xx; a redirect is not followed", status, n)
		}
	}
}

func TestDeliverAbandonsAtTheExpiry(t *testing.T) {
	cb := startCallback(t, 503)
	start := time.Now()
	got := NewSender(testIdle).Deliver(t.Context(), reply(cb.URL, 700*time.Millisecond))
	if got.Outcome != Abandoned || got.Status != 503 || got.Err != nil {
		t.Fatalf("%+v, want abandoned after a 503", got)
	}
	if n := cb.posts(); n < 3 || got.Attempts != n {
		t.Errorf("%d POSTs before the expiry, %d attempts; want several", n, got.Attempts)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("gave up after %v, for a Prepare that expired after 700ms", took)
	}

	silent := startCallback(t, 0)
	if got := NewSender(testIdle).Deliver(t.Context(), reply(silent.URL, 500*time.Millisecond)); got.Outcome != Abandoned || got.Status != 0 || got.Err == nil {
		t.Fatalf("a silent callback: %+v, want abandoned without an answer", got)
	}

	down := httptest.NewServer(nil)
	down.Close()
	got = NewSender(testIdle).Deliver(t.Context(), reply(down.URL+"/cb?key=peer-secret", 300*time.Millisecond))
	if got.Outcome != Abandoned || got.Status != 0 || got.Err == nil {
		t.Fatalf("a callback that is down: %+v, want abandoned without an answer", got)
	}
	// The error is for the edge's log, which must not show the query.
	if strings.Contains(got.Err.Error(), "peer-secret") || strings.Contains(got.Err.Error(), "/cb") {
		t.Errorf("the error quotes the callback URL: %v", got.Err)
	}
}

func TestDeliverStopsWhenCancelled(t *testing.T) {
	cb := startCallback(t, 503)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if got := NewSender(testIdle).Deliver(ctx, reply(cb.URL, time.Hour)); got.Outcome != Abandoned {
		t.Fatalf("%+v, want abandoned", got)
	}
}

// testIdle is the idle connections per host of the tests' senders.
const testIdle = 4
