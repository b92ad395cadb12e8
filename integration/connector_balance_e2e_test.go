package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestKeyPeerKeepsAPeerOnOneLedger runs three real ilp-connector 23
// instances (integration/js/connector.js), each holding the peer's account
// with ilp-connector's balance middleware and a maximum balance of 2,000
// (its credit limit), behind ilp_edge + ilp_proxy. The peer sends six
// Prepares of 900 to receivers whose prefixes rank two on each connector.
// Routed by destination, every connector admits its two: 5,400 against a
// limit of 2,000, a credit limit per instance. With key peer, all six
// reach one connector, which admits two (1,800) and answers T04 to the rest.
func TestKeyPeerKeepsAPeerOnOneLedger(t *testing.T) {
	needNode(t)
	for _, c := range []struct {
		key                  string
		wantFulfill, wantT04 int
	}{{"destination", 6, 0}, {"peer", 2, 4}} {
		t.Run("key "+c.key, func(t *testing.T) {
			recv := startBackend(t, "recv", freePort(t))
			ups := startConnectorFleet(t, recv.port, "--balance-max", "2000")
			startInProcess(t, fmt.Sprintf(`
	http://127.0.0.1:9080 {
		ilp_edge {
			address test.edge
			peer alice {
				token %s
				upstream_token %s
			}
		}
		ilp_proxy %s {
			key %s
		}
	}`, aliceToken, connToken, strings.Join(ups, " "), c.key))

			client := testClient(t, 10*time.Second)
			answers := map[string]int{}
			for _, dest := range receiversPerUpstream(ups, 2, "g.recv.r%d.alice", 3) {
				body := ilptest.NewPrepare(ilpdest.Prepare{Amount: 900, Destination: []byte(dest), ExpiresAt: time.Now().Add(10 * time.Second)})
				req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:9080/", strings.NewReader(string(body)))
				req.Header.Set("Authorization", "Bearer "+aliceToken)
				res, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				reply, _ := io.ReadAll(res.Body)
				res.Body.Close()
				answers[answerOf(res, reply)]++
			}
			t.Logf("key %s: %v; the connectors admitted %d against a credit limit of 2,000", c.key, answers, 900*answers["fulfill"])
			if answers["fulfill"] != c.wantFulfill || answers["T04"] != c.wantT04 {
				t.Errorf("answers %v, want %d fulfilled and %d T04", answers, c.wantFulfill, c.wantT04)
			}
		})
	}
}

// startConnectorFleet starts three real ilp-connector instances
// (js/connector.js, with the further arguments args) whose route goes to
// the ilp-plugin-http server on upPort, and returns their host:port.
func startConnectorFleet(t *testing.T, upPort int, args ...string) []string {
	t.Helper()
	var ups []string
	for range 3 {
		port := freePort(t)
		p := start(t, "node", append([]string{"js/connector.js", "--port", fmt.Sprint(port), "--token", connToken,
			"--up-port", fmt.Sprint(upPort), "--up-token", connToken}, args...)...)
		p.waitReady(t)
		waitListening(t, p, port) // READY comes when ilp-connector has connected, maybe before the bind
		ups = append(ups, fmt.Sprintf("127.0.0.1:%d", port))
	}
	return ups
}

// receiversPerUpstream returns n destinations (format with a number) for
// each upstream, each of whose prefixes of segments ranks that upstream
// first.
func receiversPerUpstream(ups []string, n int, format string, segments int) []string {
	var out []string
	count := map[int]int{}
	for i := 0; len(out) < n*len(ups); i++ {
		dest := fmt.Sprintf(format, i)
		first := ilpdest.Rank(ilpdest.Prefix(dest, segments), ups, nil)[0]
		if count[first] < n {
			count[first]++
			out = append(out, dest)
		}
	}
	return out
}
