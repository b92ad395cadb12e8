package main

import (
	"fmt"
	"math"
	"strings"
)

// connectionsNote says, under a Go client row's table, how many
// connections the client opened in each contender's measured run and,
// over TLS, how many resumed a session: one per packet on a new
// connection each, none when kept connections were kept. Empty for
// h2load's rows.
func connectionsNote(cs []contender, wl workload, results map[string][]sample) string {
	if !wl.goClient {
		return ""
	}
	var parts []string
	for _, c := range cs {
		ss := results[c.id+"/"+wl.name]
		if len(ss) == 0 {
			continue
		}
		var conns, resumed, packets []float64
		for _, s := range ss {
			conns = append(conns, float64(s.conns))
			resumed = append(resumed, float64(s.resumed))
			packets = append(packets, float64(s.packets))
		}
		part := fmt.Sprintf("%s: %.0f for %.0f packets", c.label, median(conns), median(packets))
		if wl.tls {
			part += ", " + resumedShare(int64(median(conns)), int64(median(resumed)))
		}
		parts = append(parts, part)
	}
	if len(parts) == 0 {
		return ""
	}
	what := "Connections the Go client opened in the measured run (medians over rounds)"
	if !wl.newConn {
		what += "; the peers' connections were opened in the warm-up, so none is expected"
	}
	return fmt.Sprintf("%s: %s.\n\n", what, strings.Join(parts, "; "))
}

// cheaperOf returns the lower of nginx's and HAProxy's CPU per packet
// and whose it is; NaN (a contender that did not run) is none.
func cheaperOf(nginx, haproxy float64) (float64, string) {
	switch {
	case math.IsNaN(haproxy) || (!math.IsNaN(nginx) && nginx <= haproxy):
		if math.IsNaN(nginx) {
			return math.NaN(), ""
		}
		return nginx, "nginx"
	}
	return haproxy, "HAProxy"
}

// cheaperSection compares, on every workload the front door ran with
// nginx or HAProxy, the front door's CPU per packet with the cheaper of
// the two: issue 35's one figure per row. sums is by contender id + "/"
// + workload name.
func cheaperSection(wls []workload, sums map[string]summary) string {
	var rows strings.Builder
	for _, wl := range wls {
		front, ok := sums[idFront+"/"+wl.name]
		if !ok {
			continue
		}
		nginx, okN := sums[idNginx+"/"+wl.name]
		haproxy, okH := sums[idHAProxy+"/"+wl.name]
		if !okN && !okH {
			continue
		}
		cpu := func(s summary, ok bool) float64 {
			if !ok {
				return math.NaN()
			}
			return s.proxyCPU
		}
		cheaper, whose := cheaperOf(cpu(nginx, okN), cpu(haproxy, okH))
		cell := func(s summary, ok bool, f func(summary) string) string {
			if !ok {
				return "—"
			}
			return f(s)
		}
		latency := func(s summary) string { return fmt.Sprintf("%.2f / %.2f", s.p50, s.p99) }
		other := func(s summary) string { return fmt.Sprintf("%.1f", s.proxyCPU) }
		rss := func(s summary) string { return fmt.Sprintf("%.0f", s.peakMB) }
		switches := func(s summary) string { return fmt.Sprintf("%.2f", s.proxySwitches) }
		fmt.Fprintf(&rows, "| %s | %.1f | %s | %s | **%.2f×** (%s) | %s | %s | %s | %s / %s / %s | %s / %s / %s | %d |\n",
			wl.name, front.proxyCPU, cell(nginx, okN, other), cell(haproxy, okH, other), front.proxyCPU/cheaper, whose,
			latency(front), cell(nginx, okN, latency), cell(haproxy, okH, latency),
			switches(front), cell(nginx, okN, switches), cell(haproxy, okH, switches),
			rss(front), cell(nginx, okN, rss), cell(haproxy, okH, rss),
			front.failures+nginx.failures+haproxy.failures)
	}
	if rows.Len() == 0 {
		return ""
	}
	return "## The front door against the cheaper of nginx and HAProxy\n\n" +
		"On every workload the `ilp` app's front door ran with nginx or HAProxy: proxy CPU per packet of each (medians), and the " +
		"front door's divided by the cheaper one's (below 1: the front door is cheaper); p50 / p99 latency in ms, context " +
		"switches per packet and peak RSS in MB (front door / nginx / HAProxy), and the three's failures over all rounds.\n\n" +
		"| workload | front door µs/packet | nginx | HAProxy | front door ÷ the cheaper | front door p50 / p99 | nginx | HAProxy | context switches /packet | peak RSS MB | failures |\n" +
		"|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n" + rows.String() + "\n"
}
