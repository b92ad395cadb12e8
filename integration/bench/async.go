package main

import (
	"context"
	"fmt"
	"log"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/ilp-edge/caddy-ilp/integration/internal/ilpclient"
)

// idAsync selects, with -only, the asynchronous exchanges (RFC 35 draft
// 3) against synchronous ones through the same edge. It is no contender:
// h2load cannot send its load (see goLoad).
const idAsync = "async"

// benchCallbackToken is the edge's credential toward the peer's callback
// (callback_token), a test value on loopback.
const benchCallbackToken = "bench-callback-token"

// asyncConns is the connections of the Go client, as in 79-h1.
const asyncConns = 32

// callbackWait bounds the wait for the replies after a run's last 202:
// on loopback they come within milliseconds; one missing after this is
// counted missing. callbackDuplicateWait is how long the receiver then
// listens for a second reply: the edge retries after 50 ms at the
// earliest.
const (
	callbackWait          = 10 * time.Second
	callbackDuplicateWait = 200 * time.Millisecond
)

// asyncResults is the asynchronous comparison over all rounds: the peak
// of each kind through the edge, then both kinds of exchange at half of
// the lower one, which is half of saturating load for both.
type asyncResults struct {
	rate      int           // packets/s offered in the fixed-rate runs: half the lower median peak
	peak      []exchangeRun // synchronous, each connection sending as soon as its answer came
	asyncPeak []exchangeRun // asynchronous, each connection sending as soon as its reply came by callback
	sync      []exchangeRun // synchronous at rate
	async     []exchangeRun // asynchronous at rate: the 202's latency, the CPU to the last reply
}

// exchangeRun is one run's figures and its callback accounting (a
// synchronous run must get no callback).
type exchangeRun struct {
	sample
	callbacks callbackTally
}

func samples(rs []exchangeRun) []sample {
	var ss []sample
	for _, r := range rs {
		ss = append(ss, r.sample)
	}
	return ss
}

// failures counts lost packets and broken exactly-once over all runs.
func (a *asyncResults) failures() int64 {
	var n int64
	for _, rs := range [][]exchangeRun{a.peak, a.asyncPeak, a.sync, a.async} {
		for _, r := range rs {
			n += r.failures + r.callbacks.failures()
		}
	}
	return n
}

// empty reports whether a run answered nothing, which fails it too.
func (a *asyncResults) empty() bool {
	for _, rs := range [][]exchangeRun{a.peak, a.asyncPeak, a.sync, a.async} {
		for _, r := range rs {
			if r.packets == 0 {
				return true
			}
		}
	}
	return false
}

// measureAsync runs the comparison: o.rounds interleaved pairs of a
// synchronous and an asynchronous run at their peak, then o.rounds
// interleaved pairs at half the lower median peak, all through the front
// door. Half the lower peak: at half the synchronous peak the
// asynchronous exchange, which costs more, would be near its own, and
// its latency would measure a saturated machine.
// The front door rather than a Caddy site: both serve ilp_edge +
// ilp_proxy here, but the front door is the deployment the performance
// targets are set for, and its lean serving path leaves what the
// asynchronous exchange adds (the callback POST) standing out rather than
// hidden under Caddy's HTTP server.
func (b *bench) measureAsync(ctx context.Context, o options) (*asyncResults, error) {
	a := &asyncResults{}
	run := func(round int, rate int, async bool) (exchangeRun, error) {
		s, t, err := b.measureExchange(ctx, o, rate, async, "")
		if err != nil {
			return exchangeRun{}, fmt.Errorf("round %d, %s: %w", round, exchangeName(rate, async), err)
		}
		log.Printf("round %d  %-22s %-28s %8.0f pkt/s %7.1f µs/pkt  fail %d  callbacks: %v",
			round, idAsync, exchangeName(rate, async), s.pps, s.proxyCPU, s.failures, t)
		return exchangeRun{s, t}, nil
	}
	for round := 1; round <= o.rounds; round++ {
		for _, async := range []bool{false, true} {
			s, err := run(round, 0, async)
			if err != nil {
				return nil, err
			}
			if async {
				a.asyncPeak = append(a.asyncPeak, s)
			} else {
				a.peak = append(a.peak, s)
			}
		}
	}
	a.rate = max(1, int(min(summarize(samples(a.peak)).pps, summarize(samples(a.asyncPeak)).pps)/2))
	for round := 1; round <= o.rounds; round++ {
		for _, async := range []bool{false, true} {
			s, err := run(round, a.rate, async)
			if err != nil {
				return nil, err
			}
			if async {
				a.async = append(a.async, s)
			} else {
				a.sync = append(a.sync, s)
			}
		}
	}
	if o.keepProfile != "" {
		// Not in the report: for whoever works on the asynchronous path,
		// the edge's CPU profile of each kind at the same rate.
		if err := os.MkdirAll(o.keepProfile, 0o755); err != nil {
			return nil, err
		}
		for _, async := range []bool{false, true} {
			kind := "sync"
			if async {
				kind = "async"
			}
			path := filepath.Join(o.keepProfile, idAsync+"-"+kind+".pprof")
			if _, _, err := b.measureExchange(ctx, o, a.rate, async, path); err != nil {
				return nil, fmt.Errorf("profile, %s: %w", exchangeName(a.rate, async), err)
			}
			log.Printf("CPU profile kept: go tool pprof -http : %s", path)
		}
	}
	return a, nil
}

func exchangeName(rate int, async bool) string {
	switch {
	case rate == 0 && async:
		return "async, peak"
	case rate == 0:
		return "sync, peak"
	case async:
		return fmt.Sprintf("async at %d/s", rate)
	}
	return fmt.Sprintf("sync at %d/s", rate)
}

// measureExchange starts a callback receiver and a fresh front door whose
// peer may be answered there (mode auto: a Prepare with a Request-Id is
// asynchronous, one without synchronous), loads it from the Go client
// with 79-byte Prepares at rate (0: as fast as answers come), and stops
// both; with profileTo, the edge's CPU profile of the measured load is
// written there. The edge's CPU is taken from the start of the measured load until
// the last reply reached the receiver, so that an asynchronous packet's
// CPU is its whole exchange: the Prepare, the 202, the forwarding and the
// callback POST.
func (b *bench) measureExchange(ctx context.Context, o options, rate int, async bool, profileTo string) (sample, callbackTally, error) {
	dir, err := os.MkdirTemp(b.dir, idAsync+"-")
	if err != nil {
		return sample{}, callbackTally{}, err
	}
	recv, err := startCallbackReceiver(fmt.Sprintf("127.0.0.1:%d", freePort()), "Bearer "+benchCallbackToken, len(b.fulfill))
	if err != nil {
		return sample{}, callbackTally{}, err
	}
	defer recv.close() // after the edge stops: it may still be delivering
	peer := fmt.Sprintf("\t\t\tcallback_url %s\n\t\t\tcallback_token %s\n", recv.url, benchCallbackToken)
	srv, err := startFrontDoorWith(b, dir, caddyProxySitePeer("http", "", peer, "")(b))
	if err != nil {
		return sample{}, callbackTally{}, err
	}
	defer srv.proc.Stop()
	wl := workload{body: b.prepares["79"]}
	headers := b.headers(contender{header: true}, wl)
	err = srv.proc.WaitReady(ctx, 20*time.Second, func() error {
		reply, err := ilpclient.Post(h1Client, srv.h1, wl.body, headers)
		if err != nil {
			return err
		}
		return expectFulfill(reply, len(b.fulfill))
	})
	if err != nil {
		return sample{}, callbackTally{}, err
	}

	load := goLoad{url: srv.h1, body: wl.body, headers: headers, conns: asyncConns, rate: rate, fulfillSize: len(b.fulfill)}
	if async {
		load.async = recv
	}
	warm := load
	warm.duration, warm.limit = o.warmup, goLoadLimit(rate, o.warmup, asyncConns)
	runGoLoad(ctx, warm) // unmeasured, but its replies are accounted for
	recv.waitAll(ctx, callbackWait)

	load.duration, load.limit = o.duration, goLoadLimit(rate, o.duration, asyncConns)
	proxy0 := b.usage(srv)
	profileErr := make(chan error, 1)
	if profileTo != "" {
		go func() { profileErr <- fetchProfile(srv.admin, o.duration, profileTo) }()
	}
	r := runGoLoad(ctx, load)
	recv.waitAll(ctx, callbackWait)
	proxy1 := b.usage(srv)
	if profileTo != "" {
		if err := <-profileErr; err != nil {
			return sample{}, callbackTally{}, err
		}
	}
	if async {
		time.Sleep(callbackDuplicateWait)
	}
	tally := recv.tally()

	s := sample{
		packets:  r.ok,
		pps:      r.pps(),
		proxyCPU: perPacket(proxy1.cpu-proxy0.cpu, r.ok),
		proxySys: perPacket(proxy1.sys-proxy0.sys, r.ok),
		stubCPU:  math.NaN(), // not reported: the stubs' share is the same for both kinds
		p50:      r.p50, p99: r.p99,
		peakMB:   float64(proxy1.peakKB) / 1024,
		failures: r.failed,
	}
	if r.failed > 0 || tally.failures() > 0 {
		log.Printf("%s, %s: %d of %d Prepares failed (first: %s); callbacks: %v",
			idAsync, exchangeName(rate, async), r.failed, r.sent, r.failure, tally)
	}
	return s, tally, nil
}
