// Command bench measures what each ILP packet costs through caddy-ilp and
// through what an operator would otherwise deploy: nginx, HAProxy, plain
// Caddy, and no proxy at all, all in front of the same three stub
// connectors (integration/stubconnector) on loopback, loaded by h2load.
//
//	go run ./integration/bench            # full run: 3 rounds, all workloads (about 30 minutes)
//	go run ./integration/bench -quick     # one short round of 79-h1, 79-h2c, async and egress (CI)
//
// The workloads are a 79-byte and a STREAM-sized Prepare over HTTP/1.1
// (32 connections) and h2c (8 connections × 16 streams), the 79-byte one
// at a fixed rate over HTTP/1.1, and the 79-byte one over h2 on TLS
// (79-h2tls, 8 × 16): only nginx, HAProxy and the front door serve TLS,
// all with the same self-signed ECDSA P-256 certificate the harness
// makes. Then the 79-byte one as peers also send it: over HTTP/1.1 on TLS
// (79-h1tls, 32 kept connections), on a new connection per packet at a
// fixed rate, plaintext and TLS with sessions resumed (79-newconn,
// 79-newconn-tls), and from 1,000 peers on a kept connection each at a
// fixed rate in all (79-peers); the last three from the harness' own Go
// client, as h2load cannot send them.
//
// Then (-only async, or by default) asynchronous exchanges (RFC 35 draft
// 3) against synchronous ones through the same front door, from the
// harness' own Go client and to its own callback receiver (async.go):
// every accepted Prepare must get exactly one reply by callback.
//
// Then (-only egress, or by default) the fleet's way out, ilp_egress
// (egress.go): the Go client as a connector sending its Prepares straight
// to a peer, against the same through the edge to a synchronous peer and
// to a draft 3 one, at one rate; the CPU per packet of every process on
// the way, and its ratio to the direct path's.
//
// The figure that survives a noisy machine is the proxy's CPU time per
// packet (utime+stime of its whole process group from /proc, divided by
// the packets answered), so the report leads with it and with ratios
// against nginx and Caddy. Rounds are interleaved (every contender once,
// then again) and each contender starts fresh for every run.
//
// nginx, HAProxy and h2load are installed from Debian packages if missing.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

type options struct {
	quick       bool
	rounds      int
	duration    time.Duration
	warmup      time.Duration
	only        string
	workloads   string
	out         string
	profile     bool
	keepProfile string
	rate        int
	newConnRate int
	peersRate   int
	install     bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == egressPeerCommand {
		// The harness run by itself as the egress rows' peer.
		runEgressPeer(os.Args[2:])
		return
	}
	var o options
	flag.BoolVar(&o.quick, "quick", false, "one short round of 79-h1, 79-h2c, the asynchronous exchanges and the egress rows; exits non-zero on any failure (CI)")
	flag.IntVar(&o.rounds, "rounds", 3, "interleaved rounds; the report shows medians")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured load per run")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each run")
	flag.StringVar(&o.only, "only", "", "comma-separated contender ids to run (default all): "+contenderIDs())
	flag.StringVar(&o.workloads, "workloads", "", "comma-separated workloads to run (default all): "+workloadIDs())
	flag.StringVar(&o.out, "out", "integration/bench/results.md", "where to write the Markdown report")
	flag.BoolVar(&o.profile, "profile", true, "after the rounds, profile caddy-ilp under load through Caddy's admin pprof endpoint")
	flag.StringVar(&o.keepProfile, "keep-profile", "", "keep the raw CPU profiles in this directory")
	flag.IntVar(&o.rate, "rate", 7000, "packets/s offered in the fixed-rate workload (about half of caddy-ilp's peak with ilp_proxy here)")
	flag.IntVar(&o.newConnRate, "newconn-rate", 1000, "packets/s offered on a new connection each (79-newconn, 79-newconn-tls)")
	flag.IntVar(&o.peersRate, "peers-rate", 2000, "packets/s offered in all by the 1,000 peers (79-peers)")
	flag.BoolVar(&o.install, "install", true, "apt-get install nginx-light, haproxy and nghttp2-client if missing")
	flag.Parse()
	if o.quick {
		o.rounds, o.duration, o.warmup, o.profile = 1, time.Second, 500*time.Millisecond, false
		if o.workloads == "" {
			o.workloads = "79-h1,79-h2c"
		}
	}
	if (o.quick || o.only != "") && o.out == "integration/bench/results.md" {
		// results.md is the last full report: a short or partial run
		// does not replace it.
		o.out = os.TempDir() + "/caddy-ilp-bench-partial.md"
	}
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench: ")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, o)
	if err != nil {
		log.Fatal(err)
	}
	if !ok {
		log.Fatal("some runs failed packets: see the report")
	}
}

// run does the whole benchmark and reports whether every run answered
// every packet.
func run(ctx context.Context, o options) (bool, error) {
	cs, err := selectContenders(o.only)
	if err != nil {
		return false, err
	}
	withAsync := o.only == "" || slices.Contains(strings.Split(o.only, ","), idAsync)
	withEgress := o.only == "" || slices.Contains(strings.Split(o.only, ","), idEgress)
	if o.install {
		if err := installTools(); err != nil {
			return false, err
		}
	}
	b, err := setUp(ctx)
	if err != nil {
		return false, err
	}
	defer b.tearDown()
	wls, err := selectWorkloads(b.workloads(o), o.workloads)
	if err != nil {
		return false, err
	}
	if err := ensureFileLimit(wls); err != nil {
		return false, err
	}

	results := map[string][]sample{} // by contender id + "/" + workload name
	for round := 1; round <= o.rounds; round++ {
		for _, wl := range wls {
			for _, c := range cs {
				if !c.runs(wl) {
					continue
				}
				s, err := b.measure(ctx, c, wl, o, "")
				if err != nil {
					return false, fmt.Errorf("round %d, %s, %s: %w", round, c.id, wl.name, err)
				}
				log.Printf("round %d  %-22s %-28s %8.0f pkt/s %7.1f µs/pkt  fail %d",
					round, c.id, wl.name, s.pps, s.proxyCPU, s.failures)
				results[c.id+"/"+wl.name] = append(results[c.id+"/"+wl.name], s)
			}
		}
	}

	var async *asyncResults // nil when not selected
	if withAsync {
		if async, err = b.measureAsync(ctx, o); err != nil {
			return false, fmt.Errorf("asynchronous exchanges: %w", err)
		}
	}
	var egress *egressResults // nil when not selected
	if withEgress {
		if egress, err = b.measureEgress(ctx, o); err != nil {
			return false, fmt.Errorf("egress: %w", err)
		}
	}

	profiles := map[string]profile{} // by contender id
	if o.profile {
		for _, c := range cs {
			if c.id != idILP && c.id != idProxy && c.id != idFront {
				continue
			}
			// The first workload c runs: the TLS one may lead with -workloads.
			i := slices.IndexFunc(wls, c.runs)
			if i < 0 {
				continue
			}
			top, err := b.profile(ctx, c, wls[i], o)
			if err != nil {
				return false, fmt.Errorf("profile %s: %w", c.id, err)
			}
			profiles[c.id] = profile{workload: wls[i].name, top: top}
		}
	}

	report := b.report(o, cs, wls, results, async, egress, profiles)
	fmt.Print(report)
	if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
		return false, err
	}
	log.Printf("report written to %s", o.out)

	for _, ss := range results {
		for _, s := range ss {
			if s.failures > 0 || s.packets == 0 {
				return false, nil
			}
		}
	}
	if async != nil && (async.failures() > 0 || async.empty()) {
		return false, nil
	}
	if egress != nil && (egress.failures() > 0 || egress.empty()) {
		return false, nil
	}
	return true, nil
}

func selectContenders(only string) ([]contender, error) {
	if only == "" {
		return contenders, nil
	}
	var cs []contender
	for _, id := range strings.Split(only, ",") {
		if id == idAsync || id == idEgress { // not a contender: run's own stage
			continue
		}
		i := slices.IndexFunc(contenders, func(c contender) bool { return c.id == id })
		if i < 0 {
			return nil, fmt.Errorf("-only: no contender %q (have %s)", id, contenderIDs())
		}
		cs = append(cs, contenders[i])
	}
	return cs, nil
}

func selectWorkloads(all []workload, ids string) ([]workload, error) {
	if ids == "" {
		return all, nil
	}
	var wls []workload
	for _, id := range strings.Split(ids, ",") {
		i := slices.IndexFunc(all, func(w workload) bool { return w.id == id })
		if i < 0 {
			return nil, fmt.Errorf("-workloads: no workload %q (have %s)", id, workloadIDs())
		}
		wls = append(wls, all[i])
	}
	return wls, nil
}

func contenderIDs() string {
	var ids []string
	for _, c := range contenders {
		ids = append(ids, c.id)
	}
	return strings.Join(append(ids, idAsync, idEgress), ",")
}
