package integration

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestEgressCarriesTheFleetsPayments runs a STREAM payment both ways
// through one edge: in through ilp_edge + ilp_proxy to three real
// ilp-connector 23 instances, and out again through ilp_egress, which
// every instance's account toward the receiver points at
// (`outgoing.url` = the egress' /peers/recv/, with the fleet's token,
// never the receiver's). The receiver is a real ilp-plugin-http server
// that takes only its own token, which the edge alone holds. The payment
// arrives to the unit, and the edge counts what it carried out.
func TestEgressCarriesTheFleetsPayments(t *testing.T) {
	needNode(t)
	const recvToken, fleetToken = "receiver-incoming-token", "fleet-outgoing-token"
	recv := start(t, "node", "js/stream.js", "receive", "--port", "0", "--token", recvToken, "--address", "test.receiver")
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
	ups := startConnectorFleet(t, 9, "--route-prefix", "test.receiver",
		"--up-url", "http://127.0.0.1:9081/peers/recv/", "--up-token", fleetToken)
	startInProcessWith(t, fmt.Sprintf(`
		ilp_peers {
			peer recv {
				token unused-inbound-token
				url http://127.0.0.1:%s/
				callback_token %s
			}
		}`, f[1], recvToken), fmt.Sprintf(`
	http://127.0.0.1:9080 {
		ilp_edge {
			address test.edge
			peer alice {
				token %s
				upstream_token %s
			}
		}
		ilp_proxy %s
	}
	http://127.0.0.1:9081 {
		ilp_edge {
			address test.edge
			peer fleet {
				token %s
			}
		}
		ilp_egress
	}`, aliceToken, connToken, strings.Join(ups, " "), fleetToken))

	packets := func() float64 {
		m := scrape(t, "http://localhost:2999/metrics")
		return m[`caddy_ilp_egress_packets_total{peer="recv",result="fulfill"}`] + m[`caddy_ilp_egress_packets_total{peer="recv",result="reject"}`]
	}
	before := packets()
	const amount = "20000"
	out, err := exec.Command("node", "js/stream.js", "send", "--url", "http://127.0.0.1:9080/", "--token", aliceToken,
		"--destination", f[2], "--secret", f[3], "--amount", amount).CombinedOutput()
	if got := strings.TrimSpace(string(out)); err != nil || got != "PAID "+amount+" "+amount {
		t.Fatalf("sender: %s (%v), want PAID %s %s", got, err, amount, amount)
	}
	waitUntil(t, 5*time.Second, "the STREAM receiver gets "+amount, func() bool { return streamTotal(recv) == amount })
	carried := packets() - before
	t.Logf("paid %s in and out through the edge; the egress carried %v packets to the receiver", amount, carried)
	if carried == 0 {
		t.Error("the egress counted no packet: the payment did not go out through it")
	}
}
