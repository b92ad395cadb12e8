package main

import (
	"fmt"
	"math"
	"strings"
)

// egressSummary is one path's figures over all rounds: medians, the
// edge's CPU range, and the failures' total.
type egressSummary struct {
	summary           // the edge's figures as proxyCPU, the peer's as stubCPU
	connector, total  float64
	conns, closed     float64 // the peer's connections (from the edge, or the connector), and of them closed
	callbackConns     float64 // the peer's to the edge's replies route
	callbackClosed    float64 // of them closed
	hasEdge, hasCalls bool
}

func summarizeEgress(rs []egressRun) egressSummary {
	var conn, total, conns, closed, calls, callsClosed []float64
	s := egressSummary{summary: summarize(egressSamples(rs))}
	for _, r := range rs {
		conn = append(conn, r.connectorCPU)
		total = append(total, r.totalCPU())
		conns = append(conns, float64(r.peerConns))
		closed = append(closed, float64(r.peerClosed))
		calls = append(calls, float64(r.callbackConns))
		callsClosed = append(callsClosed, float64(r.callbackClosed))
		s.hasEdge = s.hasEdge || !math.IsNaN(r.proxyCPU)
		s.hasCalls = s.hasCalls || r.callbackConns > 0
	}
	s.connector, s.total = median(conn), median(total)
	s.conns, s.closed = median(conns), median(closed)
	s.callbackConns, s.callbackClosed = median(calls), median(callsClosed)
	return s
}

// fleetCPU is what the packet cost the fleet's side: the connector, and
// the edge if it went through one. The peer's CPU is the peer's.
func (s egressSummary) fleetCPU() float64 {
	if !s.hasEdge {
		return s.connector
	}
	return s.connector + s.proxyCPU
}

// egressSection renders the egress comparison as the report's section:
// each path's figures, the ratios against the connector sending
// directly (the issue's "added CPU per outgoing packet vs a connector
// sending directly", sync and async), and the counts from both ends.
func egressSection(e *egressResults) string {
	var w strings.Builder
	direct, sync, async := summarizeEgress(e.direct), summarizeEgress(e.sync), summarizeEgress(e.async)

	fmt.Fprintf(&w, "## The fleet's way out: `ilp_egress`\n\n")
	fmt.Fprintf(&w, "The harness' Go client as the connector (HTTP/1.1, %d connections, 79-byte Prepares, the same request on "+
		"every path but for its URL) sends its outgoing Prepares (a) straight to a synchronous peer, as a connector does "+
		"without the edge; (b) to the edge's `/peers/<name>/`, where `ilp_edge` authenticates the fleet by its token and "+
		"`ilp_egress` sends the packet to that synchronous peer; (c) the same to a draft 3 peer (`mode async`), which "+
		"answers 202 and POSTs the Fulfill to the edge's replies route (`ilp_edge` with `replies`, a second site of the same "+
		"Caddy), which the edge relays to the waiting connector. `ilp_egress` runs in a Caddy site: the `ilp` app's front "+
		"door serves `ilp_edge` + `ilp_proxy` only. The peer is the harness' own (Go, `net/http`, loopback: the same "+
		"program on every path, counting what it gets), a process of its own, started fresh with the edge for every run. "+
		"CPU per packet is each process's utime+stime from /proc over the measured load until the last answer (and the "+
		"peer's last callback), divided by the Fulfills the connector got: the connector's is the harness' process, whose "+
		"other goroutines idle meanwhile. Latency is the connector's, from its send to the Fulfill's end. Medians over "+
		"rounds; edge CPU range in brackets.\n\n", egressConns)
	fmt.Fprintf(&w, "| path | packets/s offered | packets/s answered | connector CPU µs/packet | edge CPU µs/packet | of it in the kernel | "+
		"peer CPU µs/packet | all three µs/packet | p50 ms | p99 ms | edge peak RSS MB | connections to the peer (closed) | "+
		"peer's callback connections (closed) | failures |\n")
	fmt.Fprintf(&w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	row := func(label, offered string, s egressSummary) {
		edge, sys, rss, conns, calls := "—", "—", "—", "—", "—"
		if s.hasEdge {
			edge = fmt.Sprintf("**%.1f** (%.1f–%.1f)", s.proxyCPU, s.cpuMin, s.cpuMax)
			sys = fmt.Sprintf("%.1f", s.proxySys)
			rss = fmt.Sprintf("%.0f", s.peakMB)
			// Direct, they are the connector's own, one set per run of the client.
			conns = fmt.Sprintf("%.0f (%.0f)", s.conns, s.closed)
		}
		if s.hasCalls {
			calls = fmt.Sprintf("%.0f (%.0f)", s.callbackConns, s.callbackClosed)
		}
		fmt.Fprintf(&w, "| %s | %s | %.0f | %.1f | %s | %s | %.1f | %.1f | %.2f | %.2f | %s | %s | %s | %d |\n",
			label, offered, s.pps, s.connector, edge, sys, s.stubCPU, s.total, s.p50, s.p99, rss, conns, calls, s.failures)
	}
	row("(b) through `ilp_egress` to the synchronous peer, as fast as answers come (its peak)", "—", summarizeEgress(e.syncPeak))
	row("(c) through `ilp_egress` to the draft 3 peer, as fast as answers come (its peak)", "—", summarizeEgress(e.asyncPeak))
	offered := fmt.Sprint(e.rate)
	row("(a) direct to the synchronous peer, at half the lower peak", offered, direct)
	row("(b) through `ilp_egress` to the synchronous peer, at half the lower peak", offered, sync)
	row("(c) through `ilp_egress` to the draft 3 peer, at half the lower peak", offered, async)
	fmt.Fprintln(&w)

	fmt.Fprintf(&w, "Against the connector sending directly, at %d packets/s (the issue's \"added CPU per outgoing packet vs a "+
		"connector sending directly\"): the edge's own CPU per packet; the CPU of all three processes per packet as a "+
		"multiple of the direct path's, and what the edge adds; the fleet's side alone (the connector and the edge, "+
		"without the peer's, which is the peer's) as a multiple of the connector's; and the p99 added. The connector "+
		"here is a lean Go client: a real one (ilp-connector on node) costs several times more per packet, so against it "+
		"the multiples would be smaller and the µs added the same.\n\n", e.rate)
	fmt.Fprintf(&w, "| at %d packets/s | edge CPU µs/packet | all three, against direct | connector + edge, against the connector alone | p99 added, ms |\n", e.rate)
	fmt.Fprintf(&w, "|---|---:|---:|---:|---:|\n")
	ratio := func(label string, s egressSummary) {
		fmt.Fprintf(&w, "| %s | **%.1f** | **%.2f×** (%.1f against %.1f µs: %+.1f) | %.2f× (%.1f against %.1f µs) | %+.2f |\n",
			label, s.proxyCPU, s.total/direct.total, s.total, direct.total, s.total-direct.total,
			s.fleetCPU()/direct.fleetCPU(), s.fleetCPU(), direct.fleetCPU(), s.p99-direct.p99)
	}
	ratio("(b) synchronous peer", sync)
	ratio("(c) draft 3 peer", async)
	fmt.Fprintln(&w)

	var t egressTally
	for _, rs := range e.all() {
		for _, r := range rs {
			t = t.add(r.tally)
		}
	}
	fmt.Fprintf(&w, "Counts, all runs, warm-ups included: the connector sent %d Prepares and got %d Fulfills; the peer got %d Prepares "+
		"(%d distinct `Request-Id`s at the draft 3 peer) and the edge took %d of its replies by callback. %d lost (no "+
		"Fulfill for the connector), %d duplicated (a Prepare at the peer beyond one for each sent, a reply taken beyond one for each `Request-Id`), %d unexpected (a "+
		"Fulfill for a Prepare the peer never got, a request the peer refused, a reply the edge refused). Each of the "+
		"three fails the run, as a lost packet does.\n\n", t.sent, t.fulfilled, t.prepares, t.ids, t.replies,
		t.lost, t.duplicated, t.unexpected)
	return w.String()
}
