package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// routingStatus is what an ilp-connector's admin API answers on
// GET /routing: its own table's id, the routes it would use, and each
// peer account's CCP state.
type routingStatus struct {
	RoutingTableID    string                     `json:"routingTableId"`
	LocalRoutingTable map[string]json.RawMessage `json:"localRoutingTable"`
	Peers             map[string]struct {
		Receive *struct {
			RoutingTableID string `json:"routingTableId"`
			Epoch          uint32 `json:"epoch"`
		} `json:"receive"`
	} `json:"peers"`
}

func routing(t *testing.T, adminPort int) routingStatus {
	t.Helper()
	res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/routing", adminPort))
	if err != nil {
		t.Fatalf("admin API on %d: %v", adminPort, err)
	}
	defer res.Body.Close()
	var s routingStatus
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		t.Fatalf("admin API on %d: /routing: %v", adminPort, err)
	}
	return s
}

// knows reports whether the connector whose admin API is on adminPort
// has a route to prefix.
func knows(t *testing.T, adminPort int, prefix string) bool {
	_, ok := routing(t, adminPort).LocalRoutingTable[prefix]
	return ok
}

// waitUntil polls cond every 100 ms until it holds or within is up, and
// reports how long it took.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// addLate adds the child account "late" to the peer through its admin
// API, its plugin a client of the ilp-plugin-http server on port: the
// peer's configured route to test.late takes effect, which it announces
// in its next route update.
func (f *ccpFleet) addLate(t *testing.T, port int) {
	t.Helper()
	addPeerAccount(t, f.peerAdmin, "late", fmt.Sprintf("http://127.0.0.1:%d/", port), connToken)
}

// addPeerAccount adds the child account id to the peer (peer.js) through
// its admin API on peerAdmin, sending to url with token: the route the
// peer has configured for the account takes effect.
func addPeerAccount(t *testing.T, peerAdmin int, id, url, token string) {
	t.Helper()
	body := fmt.Sprintf(`{"id": %q, "options": {"relation": "child", "assetCode": "XRP", "assetScale": 9,
		"plugin": "ilp-plugin-http", "options": {
			"incoming": {"port": {"port": 0, "host": "127.0.0.1"}, "staticToken": "unused"},
			"outgoing": {"url": %q, "staticToken": %q}}}}`, id, url, token)
	res, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/addAccount", peerAdmin), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("peer's admin API: addAccount %s: %s", id, res.Status)
	}
}

// streamReceiver starts a STREAM receiver (stream.js) at address with
// n receiving addresses, and returns its port and the addresses with
// their shared secrets.
func streamReceiver(t *testing.T, address string, n int) (p *process, port int, dests, secrets []string) {
	t.Helper()
	p = start(t, "node", "js/stream.js", "receive", "--port", "0", "--token", connToken,
		"--address", address, "--addresses", fmt.Sprint(n))
	var ready string
	select {
	case ready = <-p.ready:
	case <-time.After(20 * time.Second):
		t.Fatal("the STREAM receiver did not start")
	}
	p.mu.Lock()
	lines := slices.Clone(p.lines)
	p.mu.Unlock()
	for _, l := range lines { // ADDRESS <dest> <secret> lines, then READY <port> <dest> <secret>
		if f := strings.Fields(l); len(f) >= 3 && (f[0] == "ADDRESS" || f[0] == "READY") {
			dests, secrets = append(dests, f[len(f)-2]), append(secrets, f[len(f)-1])
		}
	}
	fmt.Sscan(strings.Fields(ready)[1], &port)
	if len(dests) != n {
		t.Fatalf("the STREAM receiver gave %d addresses, want %d", len(dests), n)
	}
	return p, port, dests, secrets
}

// streamTotal is the last total the STREAM receiver p said it received.
func streamTotal(p *process) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	total := "0"
	for _, l := range p.lines {
		if v, ok := strings.CutPrefix(l, "RECEIVED "); ok {
			total = v
		}
	}
	return total
}

// TestRouteUpdatesCatchUpAfterAPartition: instance 1 is cut off from the
// edge (not from the peer) while the peer's table gains test.late, where
// a STREAM receiver is. The two others learn the route; instance 1, which
// the edge could not deliver the update to, does not. Once it is
// reachable again the edge sends it the peer's whole table at the peer's
// next update (a heartbeat, every second), and it learns the route, which
// it would otherwise never do (ilp-connector ignores the later updates as
// a gap, and asks the peer for nothing). Then three STREAM payments, each
// to a receiving address ranked first on another instance, pay exactly.
func TestRouteUpdatesCatchUpAfterAPartition(t *testing.T) {
	needNode(t)
	f := startCCPFleet(t, "fanout", true)
	client := testClient(t, 10*time.Second)
	if paid, missing := payAll(t, client, receiversPerUpstream(f.alice, 2, "test.peer.recv.r%d.x", 4), 15*time.Second); paid != 6 {
		t.Fatalf("before the partition: %d of 6 paid; not paid: %v", paid, missing)
	}
	recv, recvPort, dests, secrets := streamReceiver(t, "test.late", 30)

	f.cut.cut()
	f.addLate(t, recvPort)
	for _, i := range []int{0, 2} {
		took := waitUntil(t, 10*time.Second, fmt.Sprintf("instance %d learns test.late", i),
			func() bool { return knows(t, f.admin[i], "test.late") })
		t.Logf("instance %d learnt test.late %v after the peer added it", i, took.Round(time.Millisecond))
	}
	time.Sleep(2 * time.Second) // two more of the peer's updates, which miss instance 1 too
	if knows(t, f.admin[1], "test.late") {
		t.Fatal("instance 1 learnt test.late while cut off from the edge")
	}

	f.cut.heal(t)
	took := waitUntil(t, 15*time.Second, "instance 1 learns test.late once reachable",
		func() bool { return knows(t, f.admin[1], "test.late") })
	t.Logf("instance 1 learnt test.late %v after the partition healed", took.Round(time.Millisecond))
	if !knows(t, f.admin[1], "test.peer") {
		t.Error("instance 1 lost the route to test.peer, which the whole table holds too")
	}

	// One STREAM connection through each instance: alice's door ranks the
	// whole address (prefix_segments 4 of its 3 segments).
	payThroughEachInstance(t, f.alice, recv, dests, secrets)
}

// payThroughEachInstance pays 10,000 over one STREAM connection through
// each of alice's upstreams at once (alice's door on 127.0.0.1:9081 ranks
// the whole receiving address), to a receiving address of recv's that the
// upstream ranks first, and checks that each payment and the receiver's
// total are exact.
func payThroughEachInstance(t *testing.T, alice []string, recv *process, dests, secrets []string) {
	t.Helper()
	const amount = 10000
	var wg sync.WaitGroup
	results := make([]string, len(alice))
	for i := range alice {
		d := slices.IndexFunc(dests, func(d string) bool { return ilpdest.Rank(d, alice, nil)[0] == i })
		if d < 0 {
			t.Fatalf("none of %d receiving addresses ranks instance %d first", len(dests), i)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command("node", "js/stream.js", "send", "--url", "http://127.0.0.1:9081/", "--token", aliceToken,
				"--destination", dests[d], "--secret", secrets[d], "--amount", fmt.Sprint(amount)).CombinedOutput()
			results[i] = strings.TrimSpace(string(out))
			if err != nil {
				results[i] += " " + err.Error()
			}
		}()
	}
	wg.Wait()
	for i, r := range results {
		if want := fmt.Sprintf("PAID %d %d", amount, amount); r != want {
			t.Errorf("STREAM payment through instance %d: %s, want %s", i, r, want)
		}
	}
	want := fmt.Sprint(len(alice) * amount)
	waitUntil(t, 5*time.Second, "the STREAM receiver gets "+want, func() bool { return streamTotal(recv) == want })
	t.Logf("three STREAM payments of %d, one through each instance, all delivered: the receiver got %s", amount, want)
}

// TestRouteControlMovesWithItsConnector: the peer's route control (its
// first one fails, the edge not being up yet, and ilp-connector sends it
// again 30 s later) reaches the instance the peer's name ranks first,
// whose table the peer then receives. That instance is killed: at the
// peer's next update the edge hands its route control to the next one,
// and the peer receives that instance's table, once, and stays on it.
// That one restarts: the edge sends it the route control again, and the
// peer receives its new table.
func TestRouteControlMovesWithItsConnector(t *testing.T) {
	needNode(t)
	f := startCCPFleet(t, "fanout", true)
	order := ilpdest.Rank("peer", f.peerUps, nil)
	first, second := order[0], order[1]
	receiving := func() string {
		if r := routing(t, f.peerAdmin).Peers["fleet"].Receive; r != nil {
			return r.RoutingTableID
		}
		return ""
	}
	table := routing(t, f.admin[first]).RoutingTableID
	took := waitUntil(t, 45*time.Second, fmt.Sprintf("the peer receives instance %d's table", first),
		func() bool { return receiving() == table })
	t.Logf("the peer receives instance %d's table %v after the fleet was up", first, took.Round(time.Millisecond))

	f.instances[first].stop()
	table = routing(t, f.admin[second]).RoutingTableID
	took = waitUntil(t, 10*time.Second, fmt.Sprintf("the peer receives instance %d's table", second),
		func() bool { return receiving() == table })
	t.Logf("instance %d killed: the peer receives instance %d's table %v later", first, second, took.Round(time.Millisecond))
	for range 30 { // three of the peer's updates, and as many of the instance's
		if got := receiving(); got != table {
			t.Fatalf("the peer went on to table %s after instance %d's %s: two instances speak", got, second, table)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The speaker restarts at the same address, with a new table and no
	// memory of the peer's route control. It asks the peer for its table
	// (directly), whose update from epoch 0 makes the edge send it the
	// route control again.
	f.instances[second].stop()
	f.instances[second] = f.startInstance(t, second)
	table = routing(t, f.admin[second]).RoutingTableID
	took = waitUntil(t, 10*time.Second, fmt.Sprintf("the peer receives restarted instance %d's table", second),
		func() bool { return receiving() == table })
	t.Logf("instance %d restarted: the peer receives its new table %v after it was up", second, took.Round(time.Millisecond))
}
