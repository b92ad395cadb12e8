package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// workload is one kind of traffic: a Prepare and how it is sent.
type workload struct {
	id      string // for -workloads
	name    string // shown in the report
	body    []byte // the Prepare
	h2      bool   // HTTP/2 instead of HTTP/1.1: h2c with prior knowledge, or h2 by ALPN with tls
	tls     bool   // over TLS, to the contenders that serve it
	conns   int
	streams int // concurrent streams per connection (HTTP/2)
	rate    int // packets/s offered in all; 0: as fast as answers come
	// goClient sends the load from the harness' own Go client (runGoRow)
	// instead of h2load, over HTTP/1.1: what h2load cannot send.
	goClient bool
	// newConn, with goClient, opens a connection for every Prepare
	// (Connection: close); conns is then the senders, so the bound on
	// exchanges in flight, not connections kept.
	newConn bool
}

// loadResult is what one h2load run, or the Go client's (runGoRow), reports.
type loadResult struct {
	rate      float64 // requests per second, as h2load computes it
	started   int64   // requests sent
	done      int64   // requests completed
	ok        int64   // 2xx responses
	failed    int64   // requests h2load counts as failed, errored or timed out
	dataBytes int64   // response body bytes
	p50, p99  time.Duration
	tls       string // protocol, cipher and key exchange; empty without TLS
	alpn      string // the application protocol
	// From the Go client only (runGoRow): checked says every answer's
	// body was checked one by one, so wrongAnswers has nothing to
	// estimate; conns is the connections it opened in the measured run,
	// resumed how many of them resumed a TLS session; failure is the
	// first failure, for the log.
	checked        bool
	conns, resumed int64
	failure        string
}

// runH2load loads url with wl: first for warmup (unmeasured), then, after
// calling onMeasure, for duration. The two are separate h2load runs because
// h2load's own warm-up still counts its bytes in the report, and the body
// sizes are how answers are checked. The per-request log of the measured
// run, for latency percentiles, is written in dir.
func runH2load(ctx context.Context, url string, wl workload, headers []string, warmup, duration time.Duration, dir string, onMeasure func()) (loadResult, error) {
	bodyPath := filepath.Join(dir, "body.bin")
	logPath := filepath.Join(dir, "h2load-requests.log")
	if err := os.WriteFile(bodyPath, wl.body, 0o600); err != nil {
		return loadResult{}, err
	}
	args := []string{"-t", "1", "-c", strconv.Itoa(wl.conns), "-d", bodyPath}
	if wl.rate > 0 {
		args = append(args, "--rps", strconv.Itoa(max(1, wl.rate/wl.conns)))
	}
	if wl.h2 {
		args = append(args, "-m", strconv.Itoa(wl.streams))
	} else {
		args = append(args, "--h1")
	}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	if _, err := h2load(ctx, append(args, "-D", milliseconds(warmup), url)...); err != nil {
		return loadResult{}, err
	}
	onMeasure()
	out, err := h2load(ctx, append(args, "-D", milliseconds(duration), "--log-file", logPath, url)...)
	if err != nil {
		return loadResult{}, err
	}
	r, err := parseH2load(out)
	if err != nil {
		return r, fmt.Errorf("%w\n%s", err, out)
	}
	// Without h2 in the server's ALPN, h2load would fall back to HTTP/1.1
	// over TLS and measure something else; with --h1, the server must
	// choose http/1.1 by ALPN, as it does for a peer's HTTPS client.
	if want := wantALPN(wl); wl.tls && r.alpn != want {
		return r, fmt.Errorf("h2load negotiated %q over TLS, want %s\n%s", r.alpn, want, out)
	}
	r.p50, r.p99, err = latencyPercentiles(logPath)
	return r, err
}

// h2load runs h2load, bounded in time, and returns what it printed.
func h2load(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "h2load", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("h2load %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func milliseconds(d time.Duration) string {
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms" // h2load takes no fractions
}

var (
	reFinished = regexp.MustCompile(`finished in [0-9.]+m?s, ([0-9.]+) req/s`)
	reRequests = regexp.MustCompile(`requests: \d+ total, (\d+) started, (\d+) done, \d+ succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	reStatus   = regexp.MustCompile(`status codes: (\d+) 2xx`)
	reTraffic  = regexp.MustCompile(`traffic: .*, [0-9.]+[KMG]?B \((\d+)\) data`)
	reTLS      = regexp.MustCompile(`TLS Protocol: (.+)\nCipher: (.+)\n(?:Server Temp Key: (.+)\n)?`)
	reALPN     = regexp.MustCompile(`Application protocol: (\S+)`)
)

// parseH2load reads the summary h2load prints.
func parseH2load(out string) (loadResult, error) {
	var r loadResult
	m := reFinished.FindStringSubmatch(out)
	n := reRequests.FindStringSubmatch(out)
	s := reStatus.FindStringSubmatch(out)
	t := reTraffic.FindStringSubmatch(out)
	if m == nil || n == nil || s == nil || t == nil {
		return r, fmt.Errorf("h2load output not understood")
	}
	r.rate, _ = strconv.ParseFloat(m[1], 64)
	r.started, r.done = atoi(n[1]), atoi(n[2])
	r.failed = atoi(n[3]) + atoi(n[4]) + atoi(n[5])
	r.ok = atoi(s[1])
	r.dataBytes = atoi(t[1])
	if m := reTLS.FindStringSubmatch(out); m != nil {
		r.tls = strings.Join(slices.DeleteFunc(m[1:], func(s string) bool { return s == "" }), ", ")
	}
	if m := reALPN.FindStringSubmatch(out); m != nil {
		r.alpn = m[1]
	}
	return r, nil
}

func atoi(s string) int64 {
	v, _ := strconv.ParseInt(s, 10, 64)
	return v
}

// latencyPercentiles reads h2load's per-request log (start µs, status,
// µs to the end of the response) and returns the median and 99th
// percentile of the last column.
func latencyPercentiles(path string) (p50, p99 time.Duration, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var us []int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) < 3 {
			continue
		}
		if v, err := strconv.ParseInt(fields[2], 10, 64); err == nil {
			us = append(us, v)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if len(us) == 0 {
		return 0, 0, fmt.Errorf("%s: no requests logged", path)
	}
	p50, p99 = latencies(us)
	return p50, p99, nil
}

// latencies sorts us, request times in µs, and returns their median and
// 99th percentile: for h2load's log and the harness' own Go client alike.
func latencies(us []int64) (p50, p99 time.Duration) {
	slices.Sort(us)
	return time.Duration(percentile(us, 50)) * time.Microsecond,
		time.Duration(percentile(us, 99)) * time.Microsecond
}

// percentile returns the nearest-rank p-th percentile of sorted values.
func percentile[T int64 | float64](sorted []T, p float64) T {
	i := int(math.Ceil(float64(len(sorted))*p/100)) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
