package integration

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/internal/redistest"
)

// TestSTREAMPaysThroughLimits pays 50,000 with a real STREAM sender
// (ilp-protocol-stream 2.7.1 over ilp-plugin-http, integration/js/stream.js)
// through the edge to a STREAM receiver behind an ilp-plugin-http server,
// while the edge holds the sender to packets of 1,000 (F08), 20 packets a
// second (T05) and 15,000 a second (T04). STREAM must resize its packets
// and back off rather than fail, and the whole amount must arrive, exactly.
// Once with the budgets in process, once on a real redis-server.
func TestSTREAMPaysThroughLimits(t *testing.T) {
	needNode(t)
	t.Run("in process", func(t *testing.T) { testSTREAMPaysThroughLimits(t, "") })
	t.Run("on Redis", func(t *testing.T) {
		testSTREAMPaysThroughLimits(t, "redis "+redistest.Start(t).Addr)
	})
}

func testSTREAMPaysThroughLimits(t *testing.T, store string) {
	recv := start(t, "node", "js/stream.js", "receive", "--port", "0", "--token", connToken)
	var ready string
	select {
	case ready = <-recv.ready:
	case <-time.After(20 * time.Second):
		t.Fatal("the STREAM receiver did not start")
	}
	f := strings.Fields(ready) // READY <port> <destination> <secret>
	if len(f) != 4 {
		t.Fatalf("receiver said %q", ready)
	}
	startInProcess(t, fmt.Sprintf(`
	http://127.0.0.1:9080 {
		ilp_edge {
			address test.edge
			%s
			peer alice {
				token %s
				upstream_token %s
				max_packet_amount 1000
				rate 20 per 1s
				throughput 15000 per 1s burst 5000
			}
		}
		ilp_proxy 127.0.0.1:%s
	}`, store, hostileToken, connToken, f[1]))

	// The series are the process's, shared with other tests: count the
	// difference.
	rejects := func(code string) float64 {
		return scrape(t, "http://localhost:2999/metrics")[fmt.Sprintf(`caddy_ilp_rejects_total{code=%q,origin="edge",peer="alice"}`, code)]
	}
	before := map[string]float64{"F08": rejects("F08"), "T05": rejects("T05"), "T04": rejects("T04")}
	const amount = "50000"
	start := time.Now()
	out, err := exec.Command("node", "js/stream.js", "send", "--url", "http://127.0.0.1:9080/", "--token", hostileToken,
		"--destination", f[2], "--secret", f[3], "--amount", amount).CombinedOutput()
	if err != nil {
		t.Fatalf("sender: %v\n%s", err, out)
	}
	elapsed := time.Since(start)
	if got := strings.TrimSpace(string(out)); got != "PAID "+amount+" "+amount {
		t.Fatalf("sender: %s, want PAID %s %s", got, amount, amount)
	}
	received := ""
	for deadline := time.Now().Add(5 * time.Second); received != amount && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		recv.mu.Lock()
		for _, l := range recv.lines {
			if v, ok := strings.CutPrefix(l, "RECEIVED "); ok {
				received = v
			}
		}
		recv.mu.Unlock()
	}
	if received != amount {
		t.Errorf("the receiver got %s, want %s", received, amount)
	}
	codes := map[string]float64{}
	for _, code := range []string{"F08", "T05", "T04"} {
		if codes[code] = rejects(code) - before[code]; codes[code] == 0 {
			t.Errorf("no %s from the edge: the payment did not meet that limit", code)
		}
	}
	t.Logf("paid %s in %v; the edge answered F08 %v, T05 %v and T04 %v times", amount, elapsed.Round(time.Millisecond),
		codes["F08"], codes["T05"], codes["T04"])
}
