package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ilp-edge/caddy-ilp/async"
)

// callbackReceiver is the asynchronous peer's callback endpoint (RFC 35
// draft 3): a Go HTTP/1.1 server on loopback that takes each reply the
// edge POSTs with 200, and keeps what the runs are judged by: how many
// replies came for each Request-Id, and how many TCP connections the edge
// opened to deliver them. Every Prepare the edge accepted (202) must get
// exactly one reply: a missing, duplicated or unexpected one fails the
// run as a lost packet does.
type callbackReceiver struct {
	url  string // what the edge's callback_url is, and Callback-Url says
	auth string // the Authorization the edge must send (its callback_token)
	// fulfillSize is the size of the stub's Fulfill, the only reply a
	// benchmark packet can get.
	fulfillSize int
	srv         *http.Server
	conns       atomic.Int64 // TCP connections accepted
	closed      atomic.Int64 // of them, closed before the receiver

	mu        sync.Mutex
	replies   map[async.RequestID]int           // replies received, well-formed or not, per Request-Id
	accepted  map[async.RequestID]bool          // the Prepares the edge answered 202
	waiting   map[async.RequestID]chan struct{} // closed at the id's first reply (expect)
	answered  int                               // accepted ids with at least one reply
	malformed int64                             // replies refused: see serveHTTP
}

// callbackTally is a receiver's accounting at one moment.
type callbackTally struct {
	accepted   int64 // Prepares answered 202
	replies    int64 // callbacks received
	missing    int64 // accepted Prepares without a reply
	duplicates int64 // replies beyond the first for a Request-Id
	unexpected int64 // replies for a Request-Id never accepted
	malformed  int64 // replies without the edge's credential, Request-Id, content type or the Fulfill
	conns      int64 // TCP connections the edge opened to the receiver
	// closed is how many of them were closed while the receiver ran: by
	// the edge, which keeps every connection a burst of replies needed,
	// so any is churn (or a reply whose answer it could not read).
	closed int64
}

// failures is what breaks exactly once: each counts as a lost packet.
func (t callbackTally) failures() int64 {
	return t.missing + t.duplicates + t.unexpected + t.malformed
}

func (t callbackTally) add(u callbackTally) callbackTally {
	return callbackTally{
		accepted: t.accepted + u.accepted, replies: t.replies + u.replies, missing: t.missing + u.missing,
		duplicates: t.duplicates + u.duplicates, unexpected: t.unexpected + u.unexpected,
		malformed: t.malformed + u.malformed, conns: t.conns + u.conns, closed: t.closed + u.closed,
	}
}

// startCallbackReceiver listens on addr (a loopback host:port) and serves
// replies under /callback.
func startCallbackReceiver(addr, auth string, fulfillSize int) (*callbackReceiver, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := &callbackReceiver{
		url: "http://" + addr + "/callback", auth: auth, fulfillSize: fulfillSize,
		replies: map[async.RequestID]int{}, accepted: map[async.RequestID]bool{},
		waiting: map[async.RequestID]chan struct{}{},
	}
	r.srv = &http.Server{
		Handler:           http.HandlerFunc(r.serveHTTP),
		ReadHeaderTimeout: 5 * time.Second,
		// Count connections, not requests: how well the edge's sender
		// keeps its connections is one of the figures.
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				r.conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				r.closed.Add(1)
			}
		},
	}
	go r.srv.Serve(ln)
	return r, nil
}

// serveHTTP takes one reply. It answers 200 to a well-formed one; one
// without the edge's credential, a valid Request-Id, the content type or
// the stub's Fulfill as its body is counted malformed and answered 400,
// which the edge does not retry, so a broken reply shows once.
func (r *callbackReceiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 64<<10))
	id, idErr := async.ParseRequestID(req.Header.Get("Request-Id"))
	bad := err != nil || idErr != nil || req.Method != http.MethodPost || req.URL.Path != "/callback" ||
		req.Header.Get("Authorization") != r.auth || req.Header.Get("Content-Type") != "application/octet-stream" ||
		expectFulfill(body, r.fulfillSize) != nil
	r.mu.Lock()
	if idErr == nil {
		r.replies[id]++
		if r.replies[id] == 1 && r.accepted[id] {
			r.answered++
		}
		if ch, ok := r.waiting[id]; ok {
			close(ch)
			delete(r.waiting, id)
		}
	}
	if bad {
		r.malformed++
	}
	r.mu.Unlock()
	if bad {
		w.WriteHeader(http.StatusBadRequest)
	}
}

// accept records that the edge answered the Prepare with Request-Id id
// 202: it owes that id one reply. The reply may have come already (the
// edge starts the exchange as it answers), which is why the tally is
// taken only at the end.
func (r *callbackReceiver) accept(id string) {
	rid, err := async.ParseRequestID(id)
	if err != nil {
		panic(err) // the harness made it
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.accepted[rid] {
		r.accepted[rid] = true
		if r.replies[rid] > 0 {
			r.answered++
		}
	}
}

// expect returns a channel closed when the first reply for id comes, for
// a sender that waits for it: called before the Prepare is sent, so that
// a reply faster than the 202 is not missed.
func (r *callbackReceiver) expect(id string) <-chan struct{} {
	rid, err := async.ParseRequestID(id)
	if err != nil {
		panic(err) // the harness made it
	}
	ch := make(chan struct{})
	r.mu.Lock()
	r.waiting[rid] = ch
	r.mu.Unlock()
	return ch
}

// waitAll waits until every accepted Prepare has a reply, for at most
// timeout, and reports whether they all came.
func (r *callbackReceiver) waitAll(ctx context.Context, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		r.mu.Lock()
		done := r.answered == len(r.accepted)
		r.mu.Unlock()
		if done {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tally counts what the receiver holds now.
func (r *callbackReceiver) tally() callbackTally {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := callbackTally{accepted: int64(len(r.accepted)), malformed: r.malformed, conns: r.conns.Load(), closed: r.closed.Load()}
	for id, n := range r.replies {
		t.replies += int64(n)
		switch {
		case !r.accepted[id]:
			t.unexpected += int64(n)
		case n > 1:
			t.duplicates += int64(n - 1)
		}
	}
	for id := range r.accepted {
		if r.replies[id] == 0 {
			t.missing++
		}
	}
	return t
}

func (r *callbackReceiver) close() { r.srv.Close() }

func (t callbackTally) String() string {
	return fmt.Sprintf("%d accepted, %d replies (%d missing, %d duplicated, %d unexpected, %d malformed) over %d connections (%d closed)",
		t.accepted, t.replies, t.missing, t.duplicates, t.unexpected, t.malformed, t.conns, t.closed)
}
