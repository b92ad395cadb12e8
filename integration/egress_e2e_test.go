package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestEgressCarriesTheFleetsPayments runs a STREAM payment both ways
// through one edge: in through ilp_edge + ilp_proxy to three real
// ilp-connector 23 instances, and out again through ilp_egress, which
// every instance's account toward the receiver points at
// (`outgoing.url` = the egress' /peers/recv/, with the fleet's token,
// never the receiver's). The receiver is a real ilp-plugin-http server
// that takes only its own token, which the edge alone sends. The payment
// arrives to the unit, and the edge counts what it carried out.
func TestEgressCarriesTheFleetsPayments(t *testing.T) {
	needNode(t)
	const fleetToken = "fleet-outgoing-token"
	// The receiver takes connToken, which the connectors never send out:
	// they send the fleet's token to the egress, which alone holds the
	// receiver's.
	recv, recvPort, dests, secrets := streamReceiver(t, "test.receiver", 1)
	ups := startConnectorFleet(t, 9, "--route-prefix", "test.receiver",
		"--up-url", "http://127.0.0.1:9081/peers/recv/", "--up-token", fleetToken)
	startInProcessWith(t, fmt.Sprintf(`
		ilp_peers {
			peer recv {
				token unused-inbound-token
				url http://127.0.0.1:%d/
				callback_token %s
			}
		}`, recvPort, connToken), egressSites(ups, fleetToken, ""))

	packets := func() float64 {
		m := scrape(t, "http://localhost:2999/metrics")
		return m[`caddy_ilp_egress_packets_total{peer="recv",result="fulfill"}`] + m[`caddy_ilp_egress_packets_total{peer="recv",result="reject"}`]
	}
	before := packets()
	const amount = "20000"
	payThrough(t, "127.0.0.1:9080", recv, dests[0], secrets[0], amount)
	carried := packets() - before
	t.Logf("paid %s in and out through the edge; the egress carried %v packets to the receiver", amount, carried)
	if carried == 0 {
		t.Error("the egress counted no packet: the payment did not go out through it")
	}
}

// TestEgressToAnAsynchronousPeer sends Prepares in through the edge to
// three real ilp-connector 23 instances, whose account toward bob points
// at ilp_egress; bob speaks RFC 35 draft 3 only (a Go peer written from
// the RFC text, below): it answers each Prepare 202 and POSTs its Fulfill
// later to the Callback-Url, an ilp_edge route with `replies` that knows
// bob by his token. Every Prepare is fulfilled back through the
// synchronous connectors, each reply taken once, each Request-Id new.
func TestEgressToAnAsynchronousPeer(t *testing.T) {
	needNode(t)
	const fleetToken, bobIn, bobOut = "fleet-outgoing-token", "bob-token-toward-the-edge", "edge-token-toward-bob"
	bob := startDraft3Peer(t, bobIn, bobOut, draft3Options{})
	ups := startConnectorFleet(t, 9, "--route-prefix", "g.bob",
		"--up-url", "http://127.0.0.1:9081/peers/bob/", "--up-token", fleetToken)
	startInProcessWith(t, fmt.Sprintf(`
		ilp_peers {
			peer bob {
				token %s
				mode async
				url %s
				callback_url_prefix %s/callbacks/
				callback_token %s
			}
		}`, bobIn, bob.url, strings.TrimSuffix(bob.url, "/ilp"), bobOut), egressSites(ups, fleetToken, `{
			callback_url http://127.0.0.1:9082/ilp/replies
		}`)+`
	http://127.0.0.1:9082 {
		ilp_edge {
			address test.edge
			peers bob
			replies
		}
	}`)

	client := testClient(t, 10*time.Second)
	const n = 30
	answers := map[string]int{}
	for i := range n {
		body := ilptest.Prepare(fmt.Sprintf("g.bob.r%d.x", i), 10*time.Second)
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:9080/", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+aliceToken)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		reply, _ := io.ReadAll(res.Body)
		res.Body.Close()
		answers[answerOf(res, reply)]++
	}
	prepares, ids, taken := bob.counts()
	t.Logf("%d Prepares through 3 ilp-connectors to a draft 3 peer: %v; bob got %d Prepares with %d distinct Request-Ids, %d replies taken by the edge",
		n, answers, prepares, ids, taken)
	if answers["fulfill"] != n {
		t.Errorf("answers %v, want %d Fulfills", answers, n)
	}
	if prepares != n || ids != n || taken != n {
		t.Errorf("bob: %d Prepares, %d Request-Ids, %d replies taken; want %d each", prepares, ids, taken, n)
	}

	// The operator's view: the egress and its peer, nothing left waiting.
	res, err := http.Get("http://localhost:2999/ilp/egress")
	if err != nil {
		t.Fatal(err)
	}
	view, _ := io.ReadAll(res.Body)
	res.Body.Close()
	want := fmt.Sprintf(`[{"path_prefix":"/peers/","callback_url":"http://127.0.0.1:9082/ilp/replies","peers":[{"name":"bob","url":%q,"mode":"async"}]}]`, bob.url)
	if strings.TrimSpace(string(view)) != want {
		t.Errorf("GET /ilp/egress: %s, want %s", view, want)
	}
}

// egressSites is the edge of both egress tests: alice's packets in on
// :9080 to the connectors ups, and the fleet's out on :9081 through
// ilp_egress with the options block egressOptions ("" for none).
func egressSites(ups []string, fleetToken, egressOptions string) string {
	return fmt.Sprintf(`
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
		ilp_egress %s
	}`, aliceToken, connToken, strings.Join(ups, " "), fleetToken, egressOptions)
}

// TestEgressToAnIlpConnectorPeer pays with STREAM from alice, behind the
// fleet, to a receiver behind bob, a real ilp-connector 23 of its own
// (ilp-plugin-http, synchronous): the fleet's three instances send their
// packets for the receiver to the edge's egress, which sends them to bob
// with the edge's token toward him, which neither the fleet nor alice
// holds; bob routes them to the receiver. The payment arrives to the
// unit.
func TestEgressToAnIlpConnectorPeer(t *testing.T) {
	needNode(t)
	const fleetToken, bobToken = "fleet-outgoing-token", "edge-token-toward-bob"
	recv, recvPort, dests, secrets := streamReceiver(t, "test.receiver", 1)
	bobPort := freePort(t)
	bob := start(t, "node", "js/connector.js", "--port", fmt.Sprint(bobPort), "--token", bobToken,
		"--up-port", fmt.Sprint(recvPort), "--up-token", connToken, "--route-prefix", "test.receiver")
	bob.waitReady(t)
	waitListening(t, bob, bobPort)
	ups := startConnectorFleet(t, 9, "--route-prefix", "test.receiver",
		"--up-url", "http://127.0.0.1:9081/peers/bob/", "--up-token", fleetToken)
	startInProcessWith(t, fmt.Sprintf(`
		ilp_peers {
			peer bob {
				token unused-inbound-token
				url http://127.0.0.1:%d/
				callback_token %s
			}
		}`, bobPort, bobToken), egressSites(ups, fleetToken, ""))

	const amount = "20000"
	payThrough(t, "127.0.0.1:9080", recv, dests[0], secrets[0], amount)
	m := scrape(t, "http://localhost:2999/metrics")
	carried := m[`caddy_ilp_egress_packets_total{peer="bob",result="fulfill"}`] + m[`caddy_ilp_egress_packets_total{peer="bob",result="reject"}`]
	t.Logf("paid %s through the edge's egress and a real ilp-connector peer; the egress carried %v packets to it", amount, carried)
	if carried == 0 {
		t.Error("the egress counted no packet: the payment did not go out through it")
	}
}

// payThrough pays amount with STREAM from alice, through her door at
// door, to the receiver recv at destination, and waits until recv has it
// all.
func payThrough(t *testing.T, door string, recv *process, destination, secret, amount string) {
	t.Helper()
	out, err := exec.Command("node", "js/stream.js", "send", "--url", "http://"+door+"/", "--token", aliceToken,
		"--destination", destination, "--secret", secret, "--amount", amount).CombinedOutput()
	if got := strings.TrimSpace(string(out)); err != nil || got != "PAID "+amount+" "+amount {
		t.Fatalf("sender: %s (%v), want PAID %s %s", got, err, amount, amount)
	}
	waitUntil(t, 5*time.Second, "the STREAM receiver gets "+amount, func() bool { return streamTotal(recv) == amount })
}
