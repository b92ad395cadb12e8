package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// h2loadReport is what h2load 1.52 prints for a run stopped with requests
// in flight: 9 answers arrived after the count was taken.
const h2loadReport = `starting benchmark...
finished in 1.00s, 56370.00 req/s, 8.44MB/s
requests: 56370 total, 56402 started, 56370 done, 56368 succeeded, 1 failed, 1 errored, 0 timeout
status codes: 56368 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 8.44MB (8850090) total, 4.57MB (4792215) headers (space savings 0.00%), 2.20MB (2311457) data
                     min         max         mean         sd        +/- sd
time for request:       22us      9.15ms       556us       721us    95.63%
`

func TestParseH2load(t *testing.T) {
	r, err := parseH2load(h2loadReport)
	if err != nil {
		t.Fatal(err)
	}
	want := loadResult{rate: 56370, started: 56402, done: 56370, ok: 56368, failed: 2, dataBytes: 2311457}
	if r != want {
		t.Errorf("got %+v, want %+v", r, want)
	}
	if _, err := parseH2load("h2load: connection refused"); err == nil {
		t.Error("an error report parsed")
	}

	// Over TLS, h2load first says what it negotiated.
	r, err = parseH2load(strings.Replace(h2loadReport, "starting benchmark...\n", "starting benchmark...\n"+
		"TLS Protocol: TLSv1.3\nCipher: TLS_AES_128_GCM_SHA256\nServer Temp Key: X25519 253 bits\nApplication protocol: h2\n", 1))
	if err != nil {
		t.Fatal(err)
	}
	want.tls, want.alpn = "TLSv1.3, TLS_AES_128_GCM_SHA256, X25519 253 bits", "h2"
	if r != want {
		t.Errorf("over TLS: got %+v, want %+v", r, want)
	}
}

func TestWrongAnswers(t *testing.T) {
	const fulfill = 41
	reject := len(ilpdest.AppendReject(nil, ilpdest.Reject{Code: ilpdest.CodeT01, TriggeredBy: "g.bench.edge"}))
	for _, tc := range []struct {
		name  string
		r     loadResult
		wrong bool
	}{
		{"all fulfills", loadResult{started: 100, done: 100, ok: 100, dataBytes: 100 * fulfill}, false},
		{"fulfills still in flight at the stop", loadResult{started: 132, done: 100, ok: 100, dataBytes: 109 * fulfill}, false},
		{"one cut short by the stop", loadResult{started: 132, done: 100, ok: 100, dataBytes: 120*fulfill + 37}, false},
		{"more late answers than requests in flight", loadResult{started: 101, done: 100, ok: 100, dataBytes: 103 * fulfill}, true},
		{"ten edge rejects", loadResult{started: 100, done: 100, ok: 100, dataBytes: 90*fulfill + 10*int64(reject)}, true},
		{"one empty answer", loadResult{started: 100, done: 100, ok: 100, dataBytes: 99 * fulfill}, true},
	} {
		if got := wrongAnswers(tc.r, fulfill); (got > 0) != tc.wrong {
			t.Errorf("%s: got %d wrong answers, want wrong=%v", tc.name, got, tc.wrong)
		}
	}
}

func TestParseStat(t *testing.T) {
	// A command name may hold spaces and parentheses.
	stat := []byte("4242 (nginx: worker (x)) S 4200 4200 4200 0 -1 4194624 120 0 0 0 731 269 0 0 20 0 1 0 9 1 2 18446744073709551615")
	pgrp, utime, stime, ok := parseStat(stat)
	if !ok || pgrp != 4200 || utime != 731 || stime != 269 {
		t.Errorf("got pgrp %d, utime %d, stime %d, ok %v; want 4200, 731, 269, true", pgrp, utime, stime, ok)
	}
	if _, _, _, ok := parseStat([]byte("4242 (truncated")); ok {
		t.Error("a truncated stat parsed")
	}
}

func TestGroupUsageSeesThisProcess(t *testing.T) {
	// Burn some CPU, then this test binary's own group must show it.
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	u, err := groupUsage(syscall.Getpgrp())
	if err != nil {
		t.Fatal(err)
	}
	if u.cpu < 10*time.Millisecond || u.peakKB == 0 {
		t.Errorf("group usage %+v: want at least the 50 ms just spent and a peak RSS", u)
	}
}

// TestContextSwitchesCounted: the group's context switches grow by at
// least the sleeps a thread of this process just made (each leaves the
// CPU: a voluntary switch), and a status file's two counts are summed.
func TestContextSwitchesCounted(t *testing.T) {
	if n := parseSwitches([]byte("Name:\tcaddy\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n")); n != 127 {
		t.Errorf("parsed %d switches, want 127", n)
	}
	before, err := groupUsage(syscall.Getpgrp())
	if err != nil {
		t.Fatal(err)
	}
	const sleeps = 20
	for range sleeps {
		time.Sleep(time.Millisecond)
	}
	after, err := groupUsage(syscall.Getpgrp())
	if err != nil {
		t.Fatal(err)
	}
	if d := after.switches - before.switches; d < sleeps {
		t.Errorf("%d context switches over %d sleeps", d, sleeps)
	}
}

func TestLatencyPercentiles(t *testing.T) {
	path := t.TempDir() + "/log"
	var rows []byte
	for i := 1; i <= 200; i++ { // 1..200 µs
		rows = fmt.Appendf(rows, "1700000000000000\t200\t%d\n", i)
	}
	if err := os.WriteFile(path, rows, 0o600); err != nil {
		t.Fatal(err)
	}
	p50, p99, err := latencyPercentiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if p50 != 100*time.Microsecond || p99 != 198*time.Microsecond {
		t.Errorf("p50 %v, p99 %v; want 100µs, 198µs", p50, p99)
	}
}

func TestMakePreparesSizes(t *testing.T) {
	p := makePrepares([32]byte{})
	if n := len(p["79"]); n != 79 {
		t.Errorf("small Prepare is %d bytes, want 79", n)
	}
	if n := len(p["stream"]); n < 1000 || n > 2000 {
		t.Errorf("STREAM-sized Prepare is %d bytes, want 1–2 KB", n)
	}
	for name, body := range p {
		if _, err := ilpdest.ReadPrepare(body); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestContenderRuns checks which workloads a contender sits out: the TLS
// one unless it serves TLS, and HTTP/2 ones when it serves HTTP/1.1 only.
func TestContenderRuns(t *testing.T) {
	h1, h2c, h2tls := workload{}, workload{h2: true}, workload{h2: true, tls: true}
	for _, tc := range []struct {
		c              contender
		h1, h2c, h2tls bool
	}{
		{contender{id: "plain"}, true, true, false},
		{contender{id: "tls", tls: true}, true, true, true},
		{contender{id: "h1-only", h1Only: true}, true, false, false},
	} {
		if got := [3]bool{tc.c.runs(h1), tc.c.runs(h2c), tc.c.runs(h2tls)}; got != [3]bool{tc.h1, tc.h2c, tc.h2tls} {
			t.Errorf("%s runs h1, h2c, h2 TLS: %v, want %v", tc.c.id, got, [3]bool{tc.h1, tc.h2c, tc.h2tls})
		}
	}
}
