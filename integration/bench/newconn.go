package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// newConnSenders bounds the exchanges in flight in the connection-per-
// packet rows: 32 senders, as 79-h1's connections, each opening a
// connection for its Prepare at its turn.
const newConnSenders = 32

// newConnWorkload is a Prepare on a new HTTP/1.1 connection per packet,
// plaintext or over TLS, at rate packets/s in all: what a peer sends
// whose client keeps no connection (or whose connections a NAT or a load
// balancer cuts between packets). The connection carries one Prepare
// with Connection: close, its answer, and is closed. Over TLS, every
// connection after the first resumes the session (tickets). h2load
// cannot send this load: it does open a new connection after a
// Connection: close answer, and resumes TLS sessions, but in a timed run
// (-D) it then often keeps sending past the end, and it has no fixed
// rate across connections; and its latency leaves the connection and
// handshake out. The Go client's includes them: from the dial to the
// answer's end.
func newConnWorkload(id string, body []byte, overTLS bool, rate int) workload {
	how := "plaintext"
	if overTLS {
		how = "TLS 1.3, sessions resumed"
	}
	return workload{id: id, body: body, tls: overTLS, goClient: true, newConn: true, conns: newConnSenders, rate: rate,
		name: fmt.Sprintf("%d B Prepare, a new HTTP/1.1 connection per packet (%s), %d packets/s offered, at most %d in flight (Go client)",
			len(body), how, rate, newConnSenders)}
}

// connCounter counts the connections a Go load opened and, over TLS,
// their handshakes: how many resumed a session, and what the last one
// negotiated.
type connCounter struct {
	conns, resumed atomic.Int64
	mu             sync.Mutex
	tls            string
}

// dial opens a TCP connection and counts it.
func (c *connCounter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: goLoadTimeout}
	conn, err := d.DialContext(ctx, network, addr)
	if err == nil {
		c.conns.Add(1)
	}
	return conn, err
}

// dialTLS returns a dialer for net/http's DialTLSContext that makes the
// handshake itself, with cfg, to see whether it resumed a session.
func (c *connCounter) dialTLS(cfg *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		raw, err := c.dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		conn := tls.Client(raw, cfg)
		if err := conn.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		st := conn.ConnectionState()
		if st.NegotiatedProtocol != "" && st.NegotiatedProtocol != "http/1.1" {
			conn.Close()
			return nil, fmt.Errorf("ALPN %q, want http/1.1", st.NegotiatedProtocol)
		}
		if st.DidResume {
			c.resumed.Add(1)
		}
		c.mu.Lock()
		c.tls = describeTLS(st)
		c.mu.Unlock()
		return conn, nil
	}
}

// counts returns the connections opened so far, and how many resumed.
func (c *connCounter) counts() (conns, resumed int64) {
	return c.conns.Load(), c.resumed.Load()
}

func (c *connCounter) negotiated() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tls
}

// runGoRow loads url with wl from the harness' own Go client, as
// runH2load does with h2load: for warmup (unmeasured), then, after
// calling onMeasure, for duration. Unlike h2load's warm-up, the Go
// client's is checked too: a packet lost in it is lost. Kept connections
// (manyPeers) are opened in the warm-up and kept for the measured run, so
// that it measures packets, not connections being opened.
func (b *bench) runGoRow(ctx context.Context, url string, wl workload, headers []string, warmup, duration time.Duration,
	_ string, onMeasure func()) (loadResult, error) {
	var counter connCounter
	load := goLoad{url: url, body: wl.body, headers: headers, conns: wl.conns, rate: wl.rate, fulfillSize: len(b.fulfill),
		newConn: wl.newConn, counter: &counter}
	if wl.tls {
		cfg, err := b.clientTLS(url)
		if err != nil {
			return loadResult{}, err
		}
		load.tls = cfg
	}
	if !wl.newConn {
		load.clients = keptClients(load)
		defer closeClients(load.clients)
	}
	warm := load
	warm.duration, warm.limit = warmup, goLoadLimit(wl.rate, warmup, wl.conns)
	w := runGoLoad(ctx, warm)
	conns0, resumed0 := counter.counts()
	onMeasure()
	load.duration, load.limit = duration, goLoadLimit(wl.rate, duration, wl.conns)
	r := runGoLoad(ctx, load)
	conns1, resumed1 := counter.counts()
	if ctx.Err() != nil {
		return loadResult{}, ctx.Err()
	}
	return goRowResult(w, r, conns1-conns0, resumed1-resumed0, counter.negotiated()), nil
}

// goRowResult is the Go client's warm-up w and measured run r as the
// report takes h2load's: every Prepare sent was answered with the
// Fulfill (ok, done) or failed; the warm-up's failures count too.
func goRowResult(w, r goLoadResult, conns, resumed int64, negotiated string) loadResult {
	return loadResult{
		rate:    r.pps(),
		started: r.sent,
		done:    r.ok,
		ok:      r.ok,
		failed:  w.failed + r.failed,
		p50:     r.p50,
		p99:     r.p99,
		tls:     negotiated,
		checked: true,
		conns:   conns,
		resumed: resumed,
		failure: cmp.Or(r.failure, w.failure),
	}
}
