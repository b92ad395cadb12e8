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

const peerToken = "peer-connector-token-0123456789"

// ccpFleet is three real ilp-connector 23 instances behind two doors of
// one edge, and a real ilp-connector peer (peer.js, relation peer, CCP
// every second) in front of it, with a receiver behind the peer under
// test.peer.recv. The peer's packets, route updates included, come in at
// 127.0.0.1:9080; alice's payments at 127.0.0.1:9081, routed by 4-segment
// prefix so that receivers under test.peer.recv spread over the fleet.
type ccpFleet struct {
	instances []*process
	args      [][]string // each instance's command line, to restart it
	alice     []string   // alice's door's upstreams (rendezvous keys)
	peerUps   []string   // the peer's door's upstreams, instance 1's through cut
	admin     []int      // each instance's admin API port
	peer      *process
	peerArgs  []string
	peerAdmin int    // the peer's admin API port
	cut       *relay // between the edge and instance 1's peer account
	recvPort  int    // the receivers' backend
}

// startCCPFleet starts the fleet; with admin, the instances' and the
// peer's admin APIs listen too (each a port more to race for).
func startCCPFleet(t *testing.T, routing string, admin bool) *ccpFleet {
	t.Helper()
	recv := startBackend(t, "recv", freePort(t))
	peerPort := freePort(t)
	f := ccpFleet{recvPort: recv.port}
	for i := range 3 {
		port, fromPeer := freePort(t), freePort(t)
		f.args = append(f.args, []string{"js/connector.js", "--port", fmt.Sprint(port), "--token", connToken,
			"--up-port", fmt.Sprint(recv.port), "--up-token", connToken,
			"--peer-port", fmt.Sprint(fromPeer), "--peer-url", fmt.Sprintf("http://127.0.0.1:%d/", peerPort), "--peer-token", connToken})
		if admin {
			f.admin = append(f.admin, freePort(t))
			f.args[i] = append(f.args[i], "--admin-port", fmt.Sprint(f.admin[i]))
		}
		f.alice = append(f.alice, fmt.Sprintf("127.0.0.1:%d", port))
		up := fmt.Sprintf("127.0.0.1:%d", fromPeer)
		if i == 1 {
			f.cut = startRelay(t, up)
			up = f.cut.addr
		}
		f.peerUps = append(f.peerUps, up)
	}
	f.peerArgs = []string{"js/peer.js", "--port", fmt.Sprint(peerPort), "--token", connToken,
		"--edge-url", "http://127.0.0.1:9080/", "--edge-token", peerToken,
		"--recv-port", fmt.Sprint(recv.port), "--recv-token", connToken}
	if admin {
		f.peerAdmin = freePort(t)
		f.peerArgs = append(f.peerArgs, "--admin-port", fmt.Sprint(f.peerAdmin))
	}
	f.peer = start(t, "node", f.peerArgs...)
	f.peer.waitReady(t)
	waitListening(t, f.peer, peerPort)
	// The edge before the fleet. The peer sends updates only once an
	// instance asks (its route control, sent to the peer directly as it
	// starts), and ilp-connector's sender stops for good after an update
	// that fails at the HTTP level, as one to an edge not yet listening
	// does. Each instance that starts asks again, and gets the peer's
	// whole table: the last one's goes out with every instance up, so
	// that under sticky it reaches the one the key ranks first.
	startInProcess(t, fmt.Sprintf(`
	http://127.0.0.1:9080 {
		ilp_edge {
			address test.edge
			routing_protocol %s
			peer peer {
				token %s
				upstream_token %s
			}
		}
		ilp_proxy %s
	}
	http://127.0.0.1:9081 {
		ilp_edge {
			address test.edge
			peer alice {
				token %s
				upstream_token %s
			}
		}
		ilp_proxy %s {
			prefix_segments 4
		}
	}`, routing, peerToken, connToken, strings.Join(f.peerUps, " "), aliceToken, connToken, strings.Join(f.alice, " ")))
	for i := range f.args {
		f.instances = append(f.instances, f.startInstance(t, i))
	}
	return &f
}

func (f *ccpFleet) startInstance(t *testing.T, i int) *process {
	t.Helper()
	p := start(t, "node", f.args[i]...)
	p.waitReady(t)
	ports := []string{f.args[i][2], f.args[i][10]}
	if len(f.admin) > 0 {
		ports = append(ports, f.args[i][16])
	}
	for _, port := range ports {
		var n int
		fmt.Sscan(port, &n)
		waitListening(t, p, n)
	}
	return p
}

// pay sends alice's Prepare of 100 to dest and returns its answer.
func pay(t *testing.T, client *http.Client, dest string) string {
	t.Helper()
	body := ilptest.NewPrepare(ilpdest.Prepare{Amount: 100, Destination: []byte(dest), ExpiresAt: time.Now().Add(5 * time.Second)})
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:9081/", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+aliceToken)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	reply, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return answerOf(res, reply)
}

// payAll pays each of dests until all are fulfilled or the time is up,
// and returns how many were and the last answer of each that was not.
func payAll(t *testing.T, client *http.Client, dests []string, within time.Duration) (int, map[string]string) {
	t.Helper()
	missing := map[string]string{}
	for _, d := range dests {
		missing[d] = "unsent"
	}
	for deadline := time.Now().Add(within); len(missing) > 0 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		for d := range missing {
			if a := pay(t, client, d); a == "fulfill" {
				delete(missing, d)
			} else {
				missing[d] = a
			}
		}
	}
	return len(dests) - len(missing), missing
}

// TestRouteUpdatesReachEveryInstance: the fleet learns the peer's route
// to test.peer.recv only from the peer's CCP updates. Under sticky they
// reach the one instance that peer.route.update ranks first, and alice's
// payments to receivers on the other two fail (F02); under fanout every
// instance learns the route and all six pay. Then an instance is killed
// and restarted: it asks the peer for its table (ilp-connector's own
// route control, sent to the peer directly), whose full update the edge
// fans out, and payments through it succeed again.
func TestRouteUpdatesReachEveryInstance(t *testing.T) {
	needNode(t)
	for _, routing := range []string{"sticky", "fanout"} {
		t.Run(routing, func(t *testing.T) {
			f := startCCPFleet(t, routing, false)
			client := testClient(t, 10*time.Second)
			dests := receiversPerUpstream(f.alice, 2, "test.peer.recv.r%d.x", 4)
			if routing == "sticky" {
				// The peer broadcasts every second: five are plenty.
				paid, missing := payAll(t, client, dests, 5*time.Second)
				t.Logf("sticky: %d of %d paid; not paid: %v", paid, len(dests), missing)
				if paid == len(dests) {
					t.Fatalf("sticky: all %d paid, want the two other instances without the peer's routes", paid)
				}
				for d, a := range missing {
					if a != "F02" {
						t.Errorf("payment to %s: %s, want F02 (no route)", d, a)
					}
				}
				return
			}
			start := time.Now()
			paid, missing := payAll(t, client, dests, 15*time.Second)
			t.Logf("fanout: %d of %d paid within %v; not paid: %v", paid, len(dests), time.Since(start).Round(time.Millisecond), missing)
			if paid != len(dests) {
				t.Fatalf("fanout: %d of %d paid, want all", paid, len(dests))
			}

			f.instances[1].stop()
			f.instances[1] = f.startInstance(t, 1)
			restarted := time.Now()
			paid, missing = payAll(t, client, dests, 15*time.Second)
			t.Logf("after restarting an instance: %d of %d paid within %v; not paid: %v", paid, len(dests), time.Since(restarted).Round(time.Millisecond), missing)
			if paid != len(dests) {
				t.Fatalf("after a restart: %d of %d paid, want all", paid, len(dests))
			}
		})
	}
}
