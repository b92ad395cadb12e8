package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// summary is one contender's figures on one workload over all rounds.
type summary struct {
	pps, proxyCPU, proxySys, proxySwitches, stubCPU, p50, p99, peakMB float64 // medians
	cpuMin, cpuMax                                                    float64
	failures                                                          int64 // total
}

func summarize(ss []sample) summary {
	med := func(f func(sample) float64) float64 {
		var v []float64
		for _, s := range ss {
			v = append(v, f(s))
		}
		return median(v)
	}
	sum := summary{
		pps:           med(func(s sample) float64 { return s.pps }),
		proxyCPU:      med(func(s sample) float64 { return s.proxyCPU }),
		proxySys:      med(func(s sample) float64 { return s.proxySys }),
		proxySwitches: med(func(s sample) float64 { return s.proxySwitches }),
		stubCPU:       med(func(s sample) float64 { return s.stubCPU }),
		p50:           med(func(s sample) float64 { return ms(s.p50) }),
		p99:           med(func(s sample) float64 { return ms(s.p99) }),
		peakMB:        med(func(s sample) float64 { return s.peakMB }),
		cpuMin:        math.Inf(1), cpuMax: math.Inf(-1),
	}
	for _, s := range ss {
		sum.failures += s.failures
		sum.cpuMin = math.Min(sum.cpuMin, s.proxyCPU)
		sum.cpuMax = math.Max(sum.cpuMax, s.proxyCPU)
	}
	return sum
}

// median is the median of v's numbers (NaN is none), NaN if it has none.
func median(v []float64) float64 {
	v = slices.DeleteFunc(slices.Clone(v), math.IsNaN)
	if len(v) == 0 {
		return math.NaN()
	}
	slices.Sort(v)
	return percentile(v, 50)
}

// profile is pprof's top entries for one contender under one workload.
type profile struct {
	workload string // its name
	top      string
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// report renders the results as Markdown; async and egress are nil when
// the asynchronous exchanges or the egress rows did not run.
func (b *bench) report(o options, cs []contender, wls []workload, results map[string][]sample, async *asyncResults,
	egress *egressResults, profiles map[string]profile) string {
	var w strings.Builder
	fmt.Fprintf(&w, "# caddy-ilp benchmark\n\n")
	fmt.Fprintf(&w, "%s. %s, %d cores. %d round(s) of %v after %v warm-up; each contender started fresh for every run; "+
		"3 stub connectors (`integration/stubconnector`) on loopback; load from h2load, one thread, or where a row says so "+
		"from the harness' own Go client.\n\n",
		time.Now().UTC().Format("2006-01-02"), cpuModel(), runtime.NumCPU(), o.rounds, o.duration, o.warmup)
	fmt.Fprintf(&w, "Versions: %s.\n\n", strings.Join(versions(b.caddy), "; "))
	fmt.Fprintf(&w, "**Proxy CPU** is the proxy's utime+stime (all its processes and threads, from /proc) divided by the packets "+
		"answered: the figure that holds on a noisy machine; *of it in the kernel* is the stime part (system calls, and the loopback "+
		"TCP stack they run), the rest is the proxy's own code. *Context switches* are the times a thread of the proxy left its CPU (to wait for "+
		"the next event, or preempted), per packet: each is a trip through the kernel's scheduler, on a virtual machine "+
		"among the dearest things a proxy does. Packets/s and latency depend on the load generator and the stubs "+
		"sharing the same cores. Medians over rounds; CPU range in brackets. Failures: non-200, transport errors, and answers "+
		"that were not the stub's Fulfill.\n\n")

	sums := map[string]summary{}
	for _, wl := range wls {
		if !slices.ContainsFunc(cs, func(c contender) bool { return len(results[c.id+"/"+wl.name]) > 0 }) {
			continue // no contender ran it (-only async)
		}
		var negotiated []string // TLS parameters, by contender
		fmt.Fprintf(&w, "## %s\n\n", wl.name)
		fmt.Fprintf(&w, "| contender | packets/s | proxy CPU µs/packet | of it in the kernel | context switches /packet | stub CPU µs/packet | p50 ms | p99 ms | peak RSS MB | failures |\n")
		fmt.Fprintf(&w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, c := range cs {
			ss := results[c.id+"/"+wl.name]
			if len(ss) == 0 {
				continue
			}
			s := summarize(ss)
			sums[c.id+"/"+wl.name] = s
			cpu, sys, switches := "—", "—", "—"
			if !math.IsNaN(s.proxyCPU) {
				cpu = fmt.Sprintf("**%.1f** (%.1f–%.1f)", s.proxyCPU, s.cpuMin, s.cpuMax)
				sys = fmt.Sprintf("%.1f", s.proxySys)
				switches = fmt.Sprintf("%.2f", s.proxySwitches)
			}
			rss := "—"
			if s.peakMB > 0 {
				rss = fmt.Sprintf("%.0f", s.peakMB)
			}
			fmt.Fprintf(&w, "| %s | %.0f | %s | %s | %s | %.1f | %.2f | %.2f | %s | %d |\n",
				c.label, s.pps, cpu, sys, switches, s.stubCPU, s.p50, s.p99, rss, s.failures)
			if t := ss[len(ss)-1].tls; t != "" {
				negotiated = append(negotiated, fmt.Sprintf("%s: %s", c.label, t))
			}
		}
		fmt.Fprintln(&w)
		if len(negotiated) > 0 {
			fmt.Fprintf(&w, "TLS as the client negotiated it (the same self-signed ECDSA P-256 certificate on every server): %s.\n\n",
				strings.Join(negotiated, "; "))
		}
		w.WriteString(connectionsNote(cs, wl, results))
	}

	var ratios strings.Builder
	for _, wl := range wls {
		for _, id := range []string{idILP, idProxy, idFront} {
			ilp, ok := sums[id+"/"+wl.name]
			if !ok {
				continue
			}
			fmt.Fprintf(&ratios, "| %s | %s |", wl.name, map[string]string{idILP: "`reverse_proxy`", idProxy: "`ilp_proxy`",
				idFront: "`ilp_proxy` in the `ilp` app's front door"}[id])
			for _, other := range []string{idNginx, idHeader, idRespond} {
				o, ok := sums[other+"/"+wl.name]
				if !ok {
					fmt.Fprintf(&ratios, " — |")
					continue
				}
				fmt.Fprintf(&ratios, " %.2f×, %.2f× |", ilp.proxyCPU/o.proxyCPU, ilp.pps/o.pps)
			}
			fmt.Fprintln(&ratios)
		}
	}
	if ratios.Len() > 0 {
		fmt.Fprintf(&w, "## Ratios\n\n")
		fmt.Fprintf(&w, "caddy-ilp (`ilp_edge` with a static token, ILP-Destination header) with `reverse_proxy` + `lb_policy ilp_prefix`, "+
			"with `ilp_proxy`, or with `ilp_proxy` in the `ilp` app's front door, against the others: proxy CPU per packet (below 1: caddy-ilp is cheaper) and packets/s.\n\n")
		fmt.Fprintf(&w, "| workload | caddy-ilp with | vs nginx: CPU, pkt/s | vs Caddy `reverse_proxy`: CPU, pkt/s | vs Caddy `respond`: CPU, pkt/s |\n")
		fmt.Fprintf(&w, "|---|---|---|---|---|\n%s\n", ratios.String())
	}
	w.WriteString(cheaperSection(wls, sums))

	var floor strings.Builder
	for _, wl := range wls {
		f, ok := sums[idGoFloor+"/"+wl.name]
		if !ok {
			continue
		}
		fmt.Fprintf(&floor, "| %s | %.1f (%.1f) |", wl.name, f.proxyCPU, f.proxySys)
		for _, id := range []string{idNginx, idFront} {
			if o, ok := sums[id+"/"+wl.name]; ok {
				fmt.Fprintf(&floor, " %.2f×, %+.1f µs |", o.proxyCPU/f.proxyCPU, o.proxyCPU-f.proxyCPU)
			} else {
				fmt.Fprintf(&floor, " — |")
			}
		}
		fmt.Fprintln(&floor)
	}
	if floor.Len() > 0 {
		fmt.Fprintf(&w, "## Against Go's floor\n\n")
		fmt.Fprintf(&w, "The minimal Go forwarder (`integration/bench/gofloor`: a goroutine per connection, pooled upstream "+
			"connections, no authentication, OER parsing, deadlines or metrics) is what the kernel and Go's runtime cost per "+
			"packet before any of caddy-ilp's work. nginx and the front door against it: proxy CPU per packet as a multiple, "+
			"and the µs per packet they add.\n\n")
		fmt.Fprintf(&w, "| workload | Go's floor: CPU µs/packet (kernel) | nginx | the front door |\n|---|---:|---:|---:|\n%s\n", floor.String())
	}

	var limits strings.Builder
	for _, wl := range wls {
		base, ok := sums[idProxy+"/"+wl.name]
		if !ok {
			continue
		}
		for _, id := range []string{idLimits, idRedis} {
			if l, ok := sums[id+"/"+wl.name]; ok {
				fmt.Fprintf(&limits, "| %s | %s | %.2f× | %+.2f |\n", wl.name, map[string]string{idLimits: "in process", idRedis: "on Redis"}[id],
					l.proxyCPU/base.proxyCPU, l.p99-base.p99)
			}
		}
	}
	if limits.Len() > 0 { // only when the run had a limits contender and the one without limits
		fmt.Fprintf(&w, "## What limits cost\n\n")
		fmt.Fprintf(&w, "`ilp_edge` + `ilp_proxy` with a peer's rate and throughput limits (in process, or on Redis on loopback) "+
			"against the same without limits: proxy CPU per packet and p99 latency.\n\n")
		fmt.Fprintf(&w, "| workload | limits | CPU ratio | p99 added, ms |\n|---|---|---:|---:|\n%s\n", limits.String())
	}

	if async != nil {
		w.WriteString(asyncSection(async))
	}
	if egress != nil {
		w.WriteString(egressSection(egress))
	}

	for _, c := range cs {
		p, ok := profiles[c.id]
		if !ok {
			continue
		}
		fmt.Fprintf(&w, "## Where the CPU goes: %s\n\n", c.label)
		fmt.Fprintf(&w, "A CPU profile (`%s`, one extra run, not counted above) through Caddy's admin endpoint "+
			"(`/debug/pprof/profile`); top 10 by own time, then by cumulative time:\n\n", p.workload)
		fmt.Fprintf(&w, "```\n%s```\n\n", p.top)
	}
	return w.String()
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return runtime.GOARCH
}

// versions asks each program for its version; the first line of what it
// prints is enough.
func versions(caddy string) []string {
	var vs []string
	for _, args := range [][]string{
		{caddy, "version"}, {"nginx", "-v"}, {"haproxy", "-v"}, {"h2load", "--version"}, {"go", "version"},
	} {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		if err != nil {
			line = "not found"
		}
		name := args[0]
		if name == caddy {
			name = "caddy"
			line, _, _ = strings.Cut(line, " ")
		}
		// Most say their own name first ("nginx version: nginx/1.22.1").
		line = strings.TrimSpace(line)
		if len(line) <= len(name) || !strings.EqualFold(line[:len(name)+1], name+" ") {
			line = name + " " + line
		}
		vs = append(vs, line)
	}
	return vs
}
