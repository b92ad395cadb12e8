package integration

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// TestRouteMissFailoverPaysThroughAStaleConnector runs three real
// ilp-connector 23 instances (js/connector.js, all at test.fleet) where
// one lacks the static route to the STREAM receiver that the other two
// have: as a rafiki instance does until it restarts after a route was
// added through another instance's admin API. STREAM payments
// (ilp-protocol-stream over ilp-plugin-http) go to four receiving
// addresses, at least one of whose prefixes ranks the stale instance
// first. Without route_miss_failover those fail with its F02 "no route
// found."; with it, every payment completes to the unit through either
// forwarder, and the edge counts the stale instance's misses.
func TestRouteMissFailoverPaysThroughAStaleConnector(t *testing.T) {
	needNode(t)
	recv, recvPort, dests, secrets := streamReceiver(t, "test.receiver", 4)
	var ports []int
	var ups []string
	for range 3 {
		ports = append(ports, freePort(t))
		ups = append(ups, fmt.Sprintf("127.0.0.1:%d", ports[len(ports)-1]))
	}
	// The stale one is the first choice of the first receiving address.
	stale := ilpdest.Rank(ilpdest.Prefix(dests[0], 3), ups, nil)[0]
	staleShare := 0
	for _, d := range dests {
		if ilpdest.Rank(ilpdest.Prefix(d, 3), ups, nil)[0] == stale {
			staleShare++
		}
	}
	for i, port := range ports {
		route := "test.receiver"
		if i == stale {
			route = "test.elsewhere" // the hole: no route to the receiver
		}
		p := start(t, "node", "js/connector.js", "--port", fmt.Sprint(port), "--token", connToken,
			"--up-port", fmt.Sprint(recvPort), "--up-token", connToken, "--route-prefix", route)
		p.waitReady(t)
		waitListening(t, p, port)
	}

	paid := 0
	payEach := func(t *testing.T) (ok int, failed []string) {
		t.Helper()
		const amount = 1000
		results := make([]string, len(dests))
		var wg sync.WaitGroup
		for i := range dests {
			wg.Go(func() {
				out, err := exec.Command("node", "js/stream.js", "send", "--url", "http://127.0.0.1:9080/", "--token", aliceToken,
					"--destination", dests[i], "--secret", secrets[i], "--amount", fmt.Sprint(amount)).CombinedOutput()
				results[i], _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
				if err != nil {
					results[i] += " (" + err.Error() + ")"
				}
			})
		}
		wg.Wait()
		for i, r := range results {
			if r == fmt.Sprintf("PAID %d %d", amount, amount) {
				ok++
				paid += amount
			} else {
				failed = append(failed, fmt.Sprintf("%s: %s", dests[i], r))
			}
		}
		return ok, failed
	}
	misses := func() float64 {
		return scrape(t, "http://localhost:2999/metrics")[fmt.Sprintf(`caddy_ilp_route_misses_total{upstream=%q}`, ups[stale])]
	}
	edge := func(failover, forwarder string) {
		startInProcess(t, fmt.Sprintf(`
	http://127.0.0.1:9080 {
		ilp_edge {
			address test.edge
			%s
			peer alice {
				token %s
				upstream_token %s
			}
		}
		%s
	}`, failover, aliceToken, connToken, forwarderConfig(forwarder, ups)))
	}

	t.Run("without failover", func(t *testing.T) {
		edge("", viaILPProxy)
		ok, failed := payEach(t)
		t.Logf("%d of %d payments completed; the stale instance is the first choice of %d: %v", ok, len(dests), staleShare, failed)
		if ok != len(dests)-staleShare {
			t.Errorf("%d payments completed, want the %d whose first choice has the route", ok, len(dests)-staleShare)
		}
	})
	for _, forwarder := range []string{viaILPProxy, viaReverseProxy} {
		t.Run("with failover, "+forwarder, func(t *testing.T) {
			edge("route_miss_failover test.fleet", forwarder)
			before := misses()
			ok, failed := payEach(t)
			retried := misses() - before
			t.Logf("%d of %d payments completed; the edge sent %v route misses of the stale instance on", ok, len(dests), retried)
			if ok != len(dests) {
				t.Errorf("%d of %d payments completed: %v", ok, len(dests), failed)
			}
			if retried == 0 {
				t.Error("no route miss counted for the stale instance")
			}
		})
	}
	// Nothing was delivered twice: the receiver got what the senders
	// say was delivered, to the unit.
	want := fmt.Sprint(paid)
	waitUntil(t, 5*time.Second, "the STREAM receiver gets "+want, func() bool { return streamTotal(recv) == want })
}
