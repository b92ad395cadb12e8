package main

import (
	"fmt"
	"math"
	"strings"
)

// Issue #32's targets for the asynchronous exchange against the
// synchronous one through the same edge, at the same rate.
const (
	targetAsyncCPURatio = 1.6 // edge CPU per packet, async over sync, at most
	targetAsyncP99AddMS = 1.0 // ms the 202's p99 may add to the sync answer's
)

// asyncSection renders the asynchronous comparison as the report's
// section: the three kinds of run, issue #32's targets, and the
// callbacks' accounting.
func asyncSection(a *asyncResults) string {
	var w strings.Builder
	peak, asyncPeak := summarize(samples(a.peak)), summarize(samples(a.asyncPeak))
	sync, async := summarize(samples(a.sync)), summarize(samples(a.async))
	var calls callbackTally
	for _, rs := range [][]exchangeRun{a.peak, a.asyncPeak, a.sync, a.async} {
		for _, r := range rs {
			calls = calls.add(r.callbacks)
		}
	}

	fmt.Fprintf(&w, "## Asynchronous exchanges (RFC 35 draft 3)\n\n")
	fmt.Fprintf(&w, "`ilp_edge` + `ilp_proxy` in the `ilp` app's front door, its peer in `mode auto` with a `callback_url` "+
		"and `callback_token` on the harness' callback receiver (Go, HTTP/1.1, loopback): a Prepare with a `Request-Id` is "+
		"answered 202 and its Fulfill POSTed there, one without is answered in the 200. Every row is loaded by the harness' "+
		"Go client (HTTP/1.1, %d connections, 79-byte Prepares; a fresh UUIDv4 `Request-Id` for each asynchronous one, "+
		"which h2load cannot send), so both kinds pay the same client. Edge CPU per packet runs from the start of the "+
		"measured load until the last reply reached the receiver: for an asynchronous packet, the Prepare, the 202, the "+
		"forwarding and the callback POST. Latency is the client's, from its send to the answer's end: the 202, or the "+
		"200 with the Fulfill. Medians over rounds; CPU range in brackets.\n\n", asyncConns)
	fmt.Fprintf(&w, "| exchange | packets/s offered | packets/s answered | edge CPU µs/packet | of it in the kernel | p50 ms | p99 ms | peak RSS MB | callback connections | failures |\n")
	fmt.Fprintf(&w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	row := func(label, offered string, s summary, rs []exchangeRun, conns string) {
		var broken int64
		for _, r := range rs {
			broken += r.callbacks.failures()
		}
		fmt.Fprintf(&w, "| %s | %s | %.0f | **%.1f** (%.1f–%.1f) | %.1f | %.2f | %.2f | %.0f | %s | %d |\n",
			label, offered, s.pps, s.proxyCPU, s.cpuMin, s.cpuMax, s.proxySys, s.p50, s.p99, s.peakMB, conns, s.failures+broken)
	}
	callbackConns := func(rs []exchangeRun) string {
		var conns, closed []float64
		for _, r := range rs {
			conns = append(conns, float64(r.callbacks.conns))
			closed = append(closed, float64(r.callbacks.closed))
		}
		return fmt.Sprintf("%.0f (%.0f closed)", median(conns), median(closed))
	}
	row("synchronous, as fast as answers come (its peak)", "—", peak, a.peak, "—")
	row("asynchronous, the next Prepare at each reply by callback (its peak; latency of the 202)", "—", asyncPeak,
		a.asyncPeak, callbackConns(a.asyncPeak))
	row("synchronous at half the lower peak", fmt.Sprint(a.rate), sync, a.sync, "—")
	row("asynchronous at half the lower peak: the 202, then the reply by callback", fmt.Sprint(a.rate), async, a.async,
		callbackConns(a.async))
	fmt.Fprintln(&w)

	ratio, added := async.proxyCPU/sync.proxyCPU, async.p99-sync.p99
	fmt.Fprintf(&w, "| target (issue #32), at %d packets/s | measured | |\n|---|---:|---|\n", a.rate)
	fmt.Fprintf(&w, "| edge CPU per packet: asynchronous ≤ %.1f× synchronous | **%.2f×** (%.1f against %.1f µs) | %s |\n",
		targetAsyncCPURatio, ratio, async.proxyCPU, sync.proxyCPU, verdict(ratio <= targetAsyncCPURatio, ratio))
	fmt.Fprintf(&w, "| p99 of the 202 ≤ the synchronous answer's p99 + %.0f ms | **%+.2f ms** (%.2f against %.2f ms) | %s |\n\n",
		targetAsyncP99AddMS, added, async.p99, sync.p99, verdict(added <= targetAsyncP99AddMS, added))

	fmt.Fprintf(&w, "Callbacks, all runs: %d Prepares accepted (202), %d replies received; %d missing, %d duplicated, "+
		"%d unexpected (no 202 for their `Request-Id`), %d malformed (credential, `Request-Id`, content type or Fulfill "+
		"not as sent); %d connections opened by the edge to the receiver (each for a reply that found none idle: "+
		"without churn, as many as replies were in flight at the busiest), %d of them closed before their run ended. Each of the four counts fails the run, as a "+
		"lost packet does.\n\n", calls.accepted, calls.replies, calls.missing, calls.duplicates, calls.unexpected,
		calls.malformed, calls.conns, calls.closed)
	return w.String()
}

// verdict says whether a target was met; a figure from a run that
// measured nothing is neither.
func verdict(met bool, figure float64) string {
	switch {
	case math.IsNaN(figure) || math.IsInf(figure, 0):
		return "not measured"
	case met:
		return "met"
	}
	return "not met"
}
