package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// goLoad is load from the harness' own Go client, for what h2load cannot
// send: a fresh Request-Id (UUIDv4) on every asynchronous Prepare, where
// h2load repeats fixed headers. The synchronous side of the comparison is
// sent by the same client, so that both pay the same client on the same
// cores. Like h2load's -c, each connection is a sender of its own, over
// HTTP/1.1.
type goLoad struct {
	url      string
	body     []byte
	headers  []string // "Name: value", as for h2load
	conns    int
	rate     int           // packets/s offered in all; 0: each connection sends as soon as its answer came (for an asynchronous Prepare, its reply by callback)
	duration time.Duration // how long Prepares are sent; those in flight at the end are awaited
	limit    int64         // at most this many Prepares in all; 0: only the duration bounds them
	// fulfillSize is the Fulfill a synchronous answer must carry.
	fulfillSize int
	// async, when not nil, makes every Prepare asynchronous: a fresh
	// Request-Id and the Callback-Url; a 202 with no body is wanted, and
	// its id is handed to async.accept.
	async *callbackReceiver
	// newConn opens a connection for every Prepare: net/http then sends
	// it with Connection: close and closes the connection after the
	// answer.
	newConn bool
	// tls is the client's TLS configuration for an https url, shared by
	// every connection (and so its session cache).
	tls *tls.Config
	// counter, when not nil, counts the connections opened and their
	// TLS handshakes.
	counter *connCounter
	// clients, when not nil, are the connections' HTTP clients, one
	// each (keptClients), so that a run reuses the connections the one
	// before opened; otherwise each connection's client is made for the
	// run and closed after it.
	clients []*http.Client
}

// goLoadResult is what one goLoad run counted.
type goLoadResult struct {
	sent     int64         // Prepares sent
	ok       int64         // answered as wanted: 200 with the Fulfill, or 202 with no body
	failed   int64         // transport errors, other statuses, other bodies
	elapsed  time.Duration // from the first send to the last answer
	p50, p99 time.Duration // of the wanted answers, from the send to the answer's end
	failure  string        // the first failure, for the log
}

// pps is the wanted answers per second.
func (r goLoadResult) pps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok) / r.elapsed.Seconds()
}

// goLoadTimeout bounds one exchange with the edge, as h1Client does.
const goLoadTimeout = 5 * time.Second

// runGoLoad sends l and waits for every answer. ctx ends it early.
func runGoLoad(ctx context.Context, l goLoad) goLoadResult {
	sending, stop := context.WithTimeout(ctx, l.duration)
	defer stop()
	var sent atomic.Int64
	workers := make([]goWorker, l.conns)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() { workers[i].run(ctx, sending, l, i, &sent) })
	}
	wg.Wait()
	r := goLoadResult{elapsed: time.Since(start)}
	var us []int64
	for _, w := range workers {
		r.ok += int64(len(w.us))
		r.failed += w.failed
		us = append(us, w.us...)
		if r.failure == "" {
			r.failure = w.failure
		}
	}
	r.sent = r.ok + r.failed // every Prepare sent was answered or failed
	if len(us) > 0 {
		r.p50, r.p99 = latencies(us)
	}
	return r
}

// goWorker is one connection's sender and what it counted.
type goWorker struct {
	us      []int64 // time of each wanted answer, µs
	failed  int64
	failure string
}

// run sends Prepares until sending ends (or the limit is reached), at
// its share of l.rate, over one connection of its own. Each exchange is
// bounded by ctx and goLoadTimeout, not by sending: the answers to
// Prepares in flight at the end are awaited, not counted as failures.
func (w *goWorker) run(ctx, sending context.Context, l goLoad, i int, sent *atomic.Int64) {
	var client *http.Client
	if l.clients != nil {
		client = l.clients[i]
	} else {
		client = &http.Client{Transport: l.transport(), Timeout: goLoadTimeout}
		defer client.CloseIdleConnections()
	}
	var interval time.Duration
	next := time.Now()
	if l.rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(l.conns) / float64(l.rate))
		// The connections take turns, as h2load's --rps ones drift into doing.
		next = next.Add(interval * time.Duration(i) / time.Duration(l.conns))
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if interval > 0 {
			if wait := time.Until(next); wait > 0 {
				timer.Reset(wait)
				select {
				case <-sending.Done():
					return
				case <-timer.C:
				}
			}
			// A slot missed (the answer came late) is skipped, not made
			// up in a burst: the rate offered is at most the rate asked.
			next = next.Add(interval)
			if now := time.Now(); next.Before(now) {
				next = now
			}
		}
		if sending.Err() != nil || (l.limit > 0 && sent.Add(1) > l.limit) {
			return
		}
		if err := w.exchange(ctx, client, l); err != nil {
			w.failed++
			if w.failure == "" {
				w.failure = err.Error()
			}
		}
	}
}

// transport is one connection's: at most one connection open at a time,
// as h2load's -c, and none kept with newConn.
func (l goLoad) transport() *http.Transport {
	t := &http.Transport{Proxy: nil, MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true,
		DisableKeepAlives: l.newConn, TLSClientConfig: l.tls}
	if l.counter != nil {
		t.DialContext = l.counter.dial
		if l.tls != nil {
			t.DialTLSContext = l.counter.dialTLS(l.tls)
		}
	}
	return t
}

// exchange sends one Prepare and checks its answer.
func (w *goWorker) exchange(ctx context.Context, client *http.Client, l goLoad) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url, bytes.NewReader(l.body))
	if err != nil {
		return err
	}
	for _, h := range l.headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	var id string
	var replied <-chan struct{}
	if l.async != nil {
		id = uuid.NewString() // version 4, from crypto/rand
		req.Header.Set("Request-Id", id)
		req.Header.Set("Callback-Url", l.async.url)
		if l.rate == 0 {
			// As fast as exchanges complete: the next Prepare after this
			// one's reply, not its 202, or the senders would outrun the
			// edge's bound on replies in flight and measure its 429s.
			replied = l.async.expect(id)
		}
	}
	began := time.Now()
	res, err := client.Do(req)
	if err != nil {
		// An asynchronous Prepare may still have been accepted: its reply
		// then counts as unexpected too, a second failure for one packet.
		return err
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	took := time.Since(began)
	if err != nil {
		return err
	}
	if l.async != nil {
		if res.StatusCode != http.StatusAccepted {
			return fmt.Errorf("asynchronous Prepare: %s %q, want 202", res.Status, body)
		}
		// Accepted: the edge owes the id a reply, whatever the body.
		l.async.accept(id)
		if len(body) != 0 {
			return fmt.Errorf("202 with a %d-byte body", len(body))
		}
		if replied != nil {
			select {
			case <-replied:
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(goLoadTimeout):
				return fmt.Errorf("no reply by callback within %v of the 202", goLoadTimeout)
			}
		}
	} else {
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("Prepare: %s %q, want 200", res.Status, body)
		}
		if err := expectFulfill(body, l.fulfillSize); err != nil {
			return err
		}
	}
	w.us = append(w.us, took.Microseconds())
	return nil
}

// goLoadLimit bounds a run's Prepares: what the rate asked sends in the
// duration, with room for the connections' first sends, or, without a
// rate, what no loopback edge here answers in that time.
func goLoadLimit(rate int, d time.Duration, conns int) int64 {
	if rate == 0 {
		return int64(200_000 * d.Seconds())
	}
	return int64(float64(rate)*d.Seconds()) + int64(conns)
}
