package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
	"github.com/ilp-edge/caddy-ilp/integration/internal/haproxytest"
	"github.com/ilp-edge/caddy-ilp/internal/redistest"
)

// egressTier is two edge processes (./cmd/caddy) sharing one Redis, as
// operators run them: three real ilp-connector 23 instances send their
// Prepares for the routePrefix to the edges' egress doors through one
// HAProxy (TCP, round-robin), bound for bob, a draft 3 peer at bobURL,
// who POSTs his replies to the shared callback URL through another, so
// that a reply lands on the edge that did not send the Prepare about half
// the time. Alice's Prepares come in through either edge's door to the
// connectors.
type egressTier struct {
	edges      []*process
	aliceDoors []string // each edge's door for alice, host:port
	admins     []string // each edge's admin endpoint, host:port
	names      []string // each edge's name in its Callback-Url (GET /ilp/egress)
	repliesLB  int      // the callback URL's port: HAProxy's in front of the replies doors
}

// The credentials between the edges and bob, and of the fleet toward the
// edges' egress.
const (
	egressFleetToken = "fleet-outgoing-token"
	bobIn            = "bob-token-toward-the-edge"
	bobOut           = "edge-token-toward-bob"
)

func startEgressTier(t *testing.T, bobURL, routePrefix string, repliesLB int) *egressTier {
	t.Helper()
	needNode(t)
	bin, err := buildCaddy()
	if err != nil {
		t.Fatal(err)
	}
	r := redistest.Start(t)
	f := &egressTier{repliesLB: repliesLB}
	fleetLB := freePort(t)
	ups := startConnectorFleet(t, 9, "--route-prefix", routePrefix,
		"--up-url", fmt.Sprintf("http://127.0.0.1:%d/peers/bob/", fleetLB), "--up-token", egressFleetToken)
	u, _ := url.Parse(bobURL)
	bobOrigin := u.Scheme + "://" + u.Host

	var fleetDoors, repliesDoors []string
	for i := range 2 {
		admin, alice, fleet, replies := freePort(t), freePort(t), freePort(t), freePort(t)
		cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	ilp_peers {
		redis %s
		peer bob {
			token %s
			mode async
			url %s
			callback_url_prefix %s/callbacks/
			callback_token %s
		}
	}
}

http://127.0.0.1:%d {
	ilp_edge {
		address test.edge
		peer alice {
			token %s
			upstream_token %s
		}
	}
	ilp_proxy %s
}

http://127.0.0.1:%d {
	ilp_edge {
		address test.edge
		peer fleet {
			token %s
		}
	}
	ilp_egress {
		callback_url http://127.0.0.1:%d/ilp/replies
	}
}

http://127.0.0.1:%d {
	ilp_edge {
		address test.edge
		peers bob
		replies
	}
}
`, admin, r.Addr, bobIn, bobURL, bobOrigin, bobOut,
			alice, aliceToken, connToken, strings.Join(ups, " "),
			fleet, egressFleetToken, repliesLB, replies)
		path := filepath.Join(t.TempDir(), "Caddyfile")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		p := start(t, bin, "run", "--config", path, "--adapter", "caddyfile")
		for _, port := range []int{alice, fleet, replies} {
			waitListening(t, p, port)
		}
		f.edges = append(f.edges, p)
		f.aliceDoors = append(f.aliceDoors, fmt.Sprintf("127.0.0.1:%d", alice))
		f.admins = append(f.admins, fmt.Sprintf("127.0.0.1:%d", admin))
		fleetDoors = append(fleetDoors, fmt.Sprintf("127.0.0.1:%d", fleet))
		repliesDoors = append(repliesDoors, fmt.Sprintf("127.0.0.1:%d", replies))
		f.names = append(f.names, egressEdgeName(t, f.admins[i]))
	}
	if f.names[0] == f.names[1] {
		t.Fatalf("both edges call themselves %q in their Callback-Url", f.names[0])
	}
	haproxytest.Start(t, fleetLB, freePort(t), fleetDoors)
	haproxytest.Start(t, repliesLB, freePort(t), repliesDoors)
	return f
}

// startEgressTierToGoPeer is startEgressTier toward a draft3Peer with
// opts, who opens a connection per callback.
func startEgressTierToGoPeer(t *testing.T, opts draft3Options) (*egressTier, *draft3Peer) {
	t.Helper()
	opts.FreshConnections = true
	bob := startDraft3Peer(t, bobIn, bobOut, opts)
	return startEgressTier(t, bob.url, "g.bob", freePort(t)), bob
}

// egressEdgeName is the edge's name in its Callback-Url, from the admin
// API's GET /ilp/egress.
func egressEdgeName(t *testing.T, admin string) string {
	t.Helper()
	res, err := http.Get("http://" + admin + "/ilp/egress")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var view []struct{ Edge string }
	if err := json.NewDecoder(res.Body).Decode(&view); err != nil || len(view) != 1 || view[0].Edge == "" {
		t.Fatalf("GET /ilp/egress: %v, %+v; want one egress naming its edge", err, view)
	}
	return view[0].Edge
}

// sendPrepares sends n Prepares for bob (expiring in ttl), at most
// parallel at a time, the i-th to doors[i%len(doors)], and returns each
// one's answer.
func sendPrepares(t *testing.T, doors []string, n, parallel int, ttl time.Duration) []string {
	t.Helper()
	client := testClient(t, ttl+5*time.Second)
	answers := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			req, _ := http.NewRequest(http.MethodPost, "http://"+doors[i%len(doors)]+"/",
				bytes.NewReader(ilptest.Prepare(fmt.Sprintf("g.bob.r%d.x", i), ttl)))
			req.Header.Set("Authorization", "Bearer "+aliceToken)
			res, err := client.Do(req)
			if err != nil {
				answers[i] = "error: " + err.Error()
				return
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			answers[i] = answerOf(res, body)
		})
	}
	wg.Wait()
	return answers
}

func tally(answers []string) map[string]int {
	m := map[string]int{}
	for _, a := range answers {
		m[a]++
	}
	return m
}

// relayed sums the edges' caddy_ilp_egress_callbacks_relayed_total of
// direction.
func (f *egressTier) relayed(t *testing.T, direction string) float64 {
	var n float64
	for _, admin := range f.admins {
		n += scrape(t, "http://"+admin+"/metrics")[`caddy_ilp_egress_callbacks_relayed_total{direction="`+direction+`"}`]
	}
	return n
}

// TestEgressAcrossTwoEdges: 200 Prepares through two edges and three
// real ilp-connectors to a draft 3 peer who sends each reply twice, each
// on a new connection through HAProxy, so that about half of them land
// on the edge that is not waiting. Every Prepare is fulfilled, every
// first reply is taken (200), relayed through Redis when it landed on the
// other edge, and every second reply is refused (400) at whichever edge
// it lands.
func TestEgressAcrossTwoEdges(t *testing.T) {
	f, bob := startEgressTierToGoPeer(t, draft3Options{Twice: true})
	const n = 200
	answers := tally(sendPrepares(t, f.aliceDoors, n, 10, 10*time.Second))
	// A Fulfill reaches alice once bob's first reply is taken; his second
	// may still be on its way.
	waitUntil(t, 5*time.Second, "bob's second replies answered", func() bool {
		calls, _ := bob.history()
		for _, s := range calls {
			if len(s) < 2 {
				return false
			}
		}
		return len(calls) == n
	})
	prepares, ids, taken := bob.counts()
	calls, edges := bob.history()
	statuses, perEdge := map[string]int{}, map[string]int{}
	for id, s := range calls {
		statuses[fmt.Sprint(s)]++
		perEdge[edges[id]]++
	}
	sent, received := f.relayed(t, "sent"), f.relayed(t, "received")
	t.Logf("%d Prepares through 2 edges and 3 ilp-connectors to a draft 3 peer: %v; bob got %d Prepares with %d Request-Ids "+
		"(%d sent by edge 0, %d by edge 1); his callbacks' statuses per reply (first, second): %v; "+
		"%v of %d first replies landed on the other edge and were relayed through Redis (%v received)",
		n, answers, prepares, ids, perEdge[f.names[0]], perEdge[f.names[1]], statuses, sent, n, received)
	if answers["fulfill"] != n {
		t.Errorf("answers %v, want %d Fulfills", answers, n)
	}
	if prepares != n || ids != n || taken != n || statuses["[200 400]"] != n {
		t.Errorf("bob: %d Prepares, %d Request-Ids, %d replies taken, statuses %v; want %d each, every reply taken once and refused the second time",
			prepares, ids, taken, statuses, n)
	}
	if perEdge[f.names[0]] == 0 || perEdge[f.names[1]] == 0 {
		t.Errorf("Prepares sent by edge: %v; the balancer should spread the connectors' requests over both", perEdge)
	}
	if sent == 0 || sent != received {
		t.Errorf("relayed %v replies, %v received; want some (HAProxy sends every second connection to the other edge), all received", sent, received)
	}
}

// TestEgressEdgeKilledWithRepliesPending: 40 Prepares go out through
// both edges to a draft 3 peer who holds each reply for 1.5 s; the edge 1
// is SIGKILLed while they wait. The connectors answer the Prepares edge
// 1 sent with a Reject of their own (its connection to them is cut);
// bob's replies for them get 503 (nobody waits for them where Redis says
// they wait) until their expiry, then 400, never 200. The Prepares edge
// 0 sent are fulfilled, their replies relayed to it when HAProxy had
// sent them to edge 1 before it was seen dead. Nothing is answered
// twice: bob's replies taken are exactly alice's Fulfills.
func TestEgressEdgeKilledWithRepliesPending(t *testing.T) {
	f, bob := startEgressTierToGoPeer(t, draft3Options{Hold: 1500 * time.Millisecond})
	const n = 40
	done := make(chan []string)
	go func() { done <- sendPrepares(t, f.aliceDoors[:1], n, n, 4*time.Second) }()
	waitUntil(t, 10*time.Second, "bob has every Prepare", func() bool { p, _, _ := bob.counts(); return p == n })
	f.edges[1].stop() // SIGKILL
	answers := tally(<-done)
	// bob goes on until half a second past each Prepare's expiry.
	time.Sleep(2 * time.Second)
	calls, edges := bob.history()
	_, _, taken := bob.counts()
	byEdge := map[string]map[string]int{}
	for id, s := range calls {
		e := map[string]string{f.names[0]: "edge 0", f.names[1]: "edge 1"}[edges[id]]
		if byEdge[e] == nil {
			byEdge[e] = map[string]int{}
		}
		last := s[len(s)-1]
		key := fmt.Sprintf("last %d", last)
		if e == "edge 1" && last == http.StatusBadRequest {
			key = fmt.Sprintf("%d×503, then 400", len(s)-1)
			for _, st := range s[:len(s)-1] {
				if st != http.StatusServiceUnavailable && st != 0 {
					key = fmt.Sprint(s)
				}
			}
		}
		byEdge[e][key]++
	}
	prepares, _, _ := bob.counts()
	t.Logf("edge 1 killed with replies pending: alice's answers %v; bob got %d Prepares; his callbacks by the edge that sent the Prepare: %v; %d replies taken",
		answers, prepares, byEdge, taken)
	if taken != answers["fulfill"] {
		t.Errorf("bob's replies taken: %d, alice's Fulfills: %d; want the same", taken, answers["fulfill"])
	}
	sentBy1 := 0
	for id, s := range calls {
		if edges[id] != f.names[1] {
			if len(s) == 0 || s[len(s)-1] != http.StatusOK {
				t.Errorf("Request-Id %s of edge 0: callbacks %v, want taken", id, s)
			}
			continue
		}
		sentBy1++
		for _, st := range s {
			if st == http.StatusOK {
				t.Errorf("Request-Id %s of the killed edge: callbacks %v, one taken", id, s)
			}
		}
	}
	if sentBy1 == 0 || sentBy1 == n {
		t.Errorf("edge 1 sent %d of %d Prepares; want some, not all", sentBy1, n)
	}
	if answers["fulfill"]+sentBy1 != n {
		t.Errorf("alice: %v; want a Fulfill for each of the %d Prepares edge 0 sent", answers, n-sentBy1)
	}
}

// TestEgressStreamPaymentToADraft3Peer pays with STREAM from alice,
// behind the fleet, to a real STREAM receiver behind bob, who speaks RFC
// 35 draft 3 only: bob is a caddy-ilp edge of his own (in this process),
// whose ilp_edge answers the edges' Prepares 202 and POSTs each reply to
// their shared callback URL through HAProxy. Every packet leaves through
// one of the two edges' ilp_egress and its reply comes back to whichever
// edge HAProxy picks. The payment arrives to the unit.
func TestEgressStreamPaymentToADraft3Peer(t *testing.T) {
	needNode(t)
	recv, recvPort, dests, secrets := streamReceiver(t, "test.receiver", 1)
	repliesLB := freePort(t)
	startInProcessWith(t, "", fmt.Sprintf(`
	http://127.0.0.1:9080 {
		ilp_edge {
			address test.bob
			peer edges {
				token %s
				mode async
				callback_url_prefix http://127.0.0.1:%d/ilp/
				callback_token %s
				upstream_token %s
			}
		}
		ilp_proxy 127.0.0.1:%d
	}`, bobOut, repliesLB, bobIn, connToken, recvPort))
	f := startEgressTier(t, "http://127.0.0.1:9080/", "test.receiver", repliesLB)

	const amount = "20000"
	payThrough(t, f.aliceDoors[0], recv, dests[0], secrets[0], amount)
	var carried [2]float64
	for i, admin := range f.admins {
		m := scrape(t, "http://"+admin+"/metrics")
		carried[i] = m[`caddy_ilp_egress_packets_total{peer="bob",result="fulfill"}`] + m[`caddy_ilp_egress_packets_total{peer="bob",result="reject"}`]
	}
	accepted := scrape(t, "http://localhost:2999/metrics")[`caddy_ilp_async_prepares_total{peer="edges",result="accepted"}`]
	t.Logf("paid %s to a receiver behind a draft 3 peer: the edges' egress carried %v and %v packets; bob accepted %v asynchronously; %v replies landed on the other edge and were relayed",
		amount, carried[0], carried[1], accepted, f.relayed(t, "sent"))
	if carried[0]+carried[1] == 0 || accepted != carried[0]+carried[1] {
		t.Errorf("bob accepted %v Prepares asynchronously, the edges sent %v; want all of them, and some", accepted, carried[0]+carried[1])
	}
}
