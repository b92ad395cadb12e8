package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/integration/internal/haproxytest"
	"github.com/ilp-edge/caddy-ilp/internal/redistest"
)

// edgeTier is startCCPFleet's fleet and peer with a tier of three edges
// in between, as operators run them: three ./cmd/caddy processes, each
// serving the peer's door (routing_protocol fanout) and alice's, with
// HAProxy (TCP, round-robin) in front of the three peer doors. The peer
// (peer.js --fresh-connections) opens a connection per packet, so that
// its route updates spread over the three edges. Every edge reaches the
// three instances' peer accounts, instance 1's through one relay (cut)
// that all three share: cutting it cuts instance 1 off from every edge.
// Alice's door of edge 0 is on 127.0.0.1:9081, where pay sends.
type edgeTier struct {
	ccpFleet                       // the instances, the peer, the relay, as startCCPFleet's
	edges     []*process           // the three ./cmd/caddy processes
	peerDoors []string             // each edge's peer door, host:port: HAProxy's backends
	edgeAdmin []string             // each edge's admin endpoint, host:port
	lb        *haproxytest.HAProxy // where the peer sends (its --edge-url)

	edgeCmds   [][]string // each edge's command line (the binary, then its arguments), to restart it
	aliceDoors []string   // each edge's door for alice, host:port (edge 0's is 127.0.0.1:9081)
}

// startEdgeTier starts the tier: the receivers' backend, the three edges
// and HAProxy, then the peer, then the three instances, with the admin
// APIs of the instances and of the peer. With redisAddr, the peer's
// ilp_edge in every edge has `redis <redisAddr>`: its state shared on
// Redis. The instances' ccp-receivers trace what they do with the peer's
// updates (DEBUG) to their stderr, their testLog.
func startEdgeTier(t *testing.T, redisAddr string) *edgeTier {
	t.Helper()
	bin, err := buildCaddy()
	if err != nil {
		t.Fatal(err)
	}
	recv := startBackend(t, "recv", freePort(t))
	peerPort := freePort(t)
	f := &edgeTier{ccpFleet: ccpFleet{recvPort: recv.port}}
	for i := range 3 { // the instances' command lines, laid out as startCCPFleet's for startInstance
		port, fromPeer := freePort(t), freePort(t)
		f.admin = append(f.admin, freePort(t))
		f.args = append(f.args, []string{"js/connector.js", "--port", fmt.Sprint(port), "--token", connToken,
			"--up-port", fmt.Sprint(recv.port), "--up-token", connToken,
			"--peer-port", fmt.Sprint(fromPeer), "--peer-url", fmt.Sprintf("http://127.0.0.1:%d/", peerPort), "--peer-token", connToken,
			"--admin-port", fmt.Sprint(f.admin[i])})
		f.alice = append(f.alice, fmt.Sprintf("127.0.0.1:%d", port))
		up := fmt.Sprintf("127.0.0.1:%d", fromPeer)
		if i == 1 {
			f.cut = startRelay(t, up)
			up = f.cut.addr
		}
		f.peerUps = append(f.peerUps, up)
	}

	// The edges, then HAProxy, before the peer and the fleet (see
	// startCCPFleet: the peer's CCP sender stops for good after an update
	// that fails at the HTTP level).
	redis := ""
	if redisAddr != "" {
		redis = "redis " + redisAddr
	}
	type ports struct{ peer, alice, admin int }
	var edgePorts []ports
	for i := range 3 {
		p := ports{freePort(t), 9081, freePort(t)}
		if i > 0 {
			p.alice = freePort(t)
		}
		edgePorts = append(edgePorts, p)
		cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
}

http://127.0.0.1:%d {
	ilp_edge {
		address test.edge
		routing_protocol fanout
		%s
		peer peer {
			token %s
			upstream_token %s
		}
	}
	ilp_proxy %s
}

http://127.0.0.1:%d {
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
}
`, p.admin, p.peer, redis, peerToken, connToken, strings.Join(f.peerUps, " "),
			p.alice, aliceToken, connToken, strings.Join(f.alice, " "))
		path := filepath.Join(t.TempDir(), "Caddyfile")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		f.edgeCmds = append(f.edgeCmds, []string{bin, "run", "--config", path, "--adapter", "caddyfile"})
		f.edges = append(f.edges, start(t, bin, f.edgeCmds[i][1:]...))
		f.aliceDoors = append(f.aliceDoors, fmt.Sprintf("127.0.0.1:%d", p.alice))
		f.peerDoors = append(f.peerDoors, fmt.Sprintf("127.0.0.1:%d", p.peer))
		f.edgeAdmin = append(f.edgeAdmin, fmt.Sprintf("127.0.0.1:%d", p.admin))
	}
	// Ready: both doors accept connections and the admin endpoint, which
	// Caddy starts before the sites, answers.
	for i, p := range edgePorts {
		waitListening(t, f.edges[i], p.peer)
		waitListening(t, f.edges[i], p.alice)
		res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/config/", p.admin))
		if err != nil {
			t.Fatalf("edge %d's admin endpoint: %v", i, err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("edge %d's admin endpoint: GET /config/: %s", i, res.Status)
		}
	}
	f.lb = haproxytest.Start(t, freePort(t), freePort(t), f.peerDoors)

	f.peerAdmin = freePort(t)
	f.peerArgs = []string{"js/peer.js", "--port", fmt.Sprint(peerPort), "--token", connToken,
		"--edge-url", "http://" + f.lb.Addr + "/", "--edge-token", peerToken,
		"--recv-port", fmt.Sprint(recv.port), "--recv-token", connToken,
		"--admin-port", fmt.Sprint(f.peerAdmin), "--fresh-connections"}
	f.peer = start(t, "node", f.peerArgs...)
	f.peer.waitReady(t)
	waitListening(t, f.peer, peerPort)

	t.Setenv("DEBUG", "connector:ccp-receiver*") // the instances', started from here on
	for i := range f.args {
		f.instances = append(f.instances, f.startInstance(t, i))
	}
	return f
}

// TestEdgeTierRouteCatchUp is TestRouteUpdatesCatchUpAfterAPartition
// with a tier of three edges behind HAProxy (startEdgeTier), which share
// the peer's routing table and each connector's place in it on Redis.
// The peer's route updates spread over the three edges, one connection
// each: after two changes of the peer's table in a row (test.spread, then
// test.late, with instance 1 cut off from every edge), no edge alone has
// seen every update. Instances 0 and 2 learn test.late. Once instance 1
// is reachable again, whichever edge the peer's next update (a heartbeat,
// every second) reaches must send it the peer's whole table, which only
// the edges together know, and instance 1 learns test.late within 3 s
// (the next update, with slack). Edges that keep the table each in its
// own memory cannot: instance 1 ignores every later update as a gap in
// routing updates (ilp-connector asks the peer for nothing) and never
// learns the route. Then three STREAM payments, each through another
// instance, pay exactly.
func TestEdgeTierRouteCatchUp(t *testing.T) {
	needNode(t)
	r := redistest.Start(t)
	f := startEdgeTier(t, r.Addr)
	client := testClient(t, 10*time.Second)
	if paid, missing := payAll(t, client, receiversPerUpstream(f.alice, 2, "test.peer.recv.r%d.x", 4), 15*time.Second); paid != 6 {
		t.Fatalf("before the partition: %d of 6 paid; not paid: %v", paid, missing)
	}
	split := f.lb.Sessions(t)
	t.Logf("the peer's connections through HAProxy so far, per edge: %s", f.splitString(split))
	for i, d := range f.peerDoors {
		if split[d] == 0 {
			t.Fatalf("edge %d got none of the peer's connections: %s", i, f.splitString(split))
		}
	}
	recv, recvPort, dests, secrets := streamReceiver(t, "test.late", 30)

	// The peer's table changes twice in a row: it gains test.spread, which
	// every instance learns, then, instance 1 cut off, test.late. The two
	// updates go out a broadcast apart, which HAProxy hands to two edges:
	// one edge missed the first, the two others the second, and none has
	// seen every update of the peer's table since. (Otherwise the edge that
	// got test.late may have got the whole table before, an update from
	// epoch 0 that each instance's start makes the peer send, and replay
	// the table on its own, by the luck of the rotation.)
	addPeerAccount(t, f.peerAdmin, "spread", "http://127.0.0.1:9/", "unused") // a route, no receiver
	waitUntil(t, 10*time.Second, "every instance learns test.spread", func() bool {
		return knows(t, f.admin[0], "test.spread") && knows(t, f.admin[1], "test.spread") && knows(t, f.admin[2], "test.spread")
	})
	atSpread := f.lb.Sessions(t)
	f.cut.cut()
	f.addLate(t, recvPort)
	var atLate map[string]int
	for _, i := range []int{0, 2} {
		took := waitUntil(t, 10*time.Second, fmt.Sprintf("instance %d learns test.late", i),
			func() bool { return knows(t, f.admin[i], "test.late") })
		if atLate == nil {
			atLate = f.lb.Sessions(t)
		}
		t.Logf("instance %d learnt test.late %v after the peer added it", i, took.Round(time.Millisecond))
	}
	apart := allSessions(atLate) - allSessions(atSpread)
	t.Logf("the peer's updates adding test.spread and test.late went %d connection(s) apart; connections per edge: %s",
		apart, f.splitString(atLate))
	if apart%3 == 0 { // round-robin over three: the same edge
		t.Fatalf("the peer's updates adding test.spread and test.late went to the same edge (%d connections apart)", apart)
	}
	time.Sleep(2 * time.Second) // two more of the peer's updates, which miss instance 1 too
	if knows(t, f.admin[1], "test.late") {
		t.Fatal("instance 1 learnt test.late while cut off from every edge")
	}

	const within = 3 * time.Second
	gapsBefore := len(stderrWith(t, f.instances[1], "gap in routing updates"))
	f.cut.heal(t)
	healed := time.Now()
	for !knows(t, f.admin[1], "test.late") {
		if time.Since(healed) > within {
			gaps := stderrWith(t, f.instances[1], "gap in routing updates")[gapsBefore:]
			for _, l := range gaps[max(0, len(gaps)-3):] {
				t.Logf("instance 1: %s", l)
			}
			t.Logf("the peer's connections through HAProxy, per edge: %s", f.splitString(f.lb.Sessions(t)))
			t.Fatalf("instance 1 did not learn test.late within %v of the partition healing: it ignored %d of the peer's updates since as a gap in routing updates",
				within, len(gaps))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("instance 1 learnt test.late %v after the partition healed", time.Since(healed).Round(time.Millisecond))
	if !knows(t, f.admin[1], "test.peer") {
		t.Error("instance 1 lost the route to test.peer, which the whole table holds too")
	}

	// One STREAM connection through each instance, sent to edge 0's
	// alice door.
	payThroughEachInstance(t, f.alice, recv, dests, secrets)
	t.Logf("the peer's connections through HAProxy, per edge: %s", f.splitString(f.lb.Sessions(t)))
	f.wantOneFleet(t)
}

// fleetView is what `caddy ilp fleet` prints (GET /ilp/fleet).
type fleetView struct {
	Stores []struct {
		Edges []struct {
			Name string `json:"name"`
			Self bool   `json:"self"`
		} `json:"edges"`
	} `json:"stores"`
	Tables []struct {
		Peer         string            `json:"peer"`
		Shared       bool              `json:"shared"`
		Epoch        uint32            `json:"epoch"`
		Complete     bool              `json:"complete"`
		RouteControl string            `json:"route_control"`
		Connectors   map[string]uint32 `json:"connectors"`
	} `json:"tables"`
}

// wantOneFleet asks every edge, with `caddy ilp fleet`, what the edges
// share: each must see the three edges alive and the peer's one shared
// table, with every instance at its epoch, and the same route control
// holder: an instance, or none yet (the peer's first route control goes
// out before the instances start, and ilp-connector sends it again only
// 30 s later).
func (f *edgeTier) wantOneFleet(t *testing.T) {
	t.Helper()
	holders := map[string]bool{}
	for i, admin := range f.edgeAdmin {
		var v fleetView
		out := caddyILP(t, nil, "", "fleet", "--admin", admin)
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("edge %d: caddy ilp fleet: %v\n%s", i, err, out)
		}
		if len(v.Stores) != 1 || len(v.Stores[0].Edges) != 3 {
			t.Errorf("edge %d: caddy ilp fleet: stores %+v, want one with the three edges alive", i, v.Stores)
		}
		if len(v.Tables) != 1 || v.Tables[0].Peer != "peer" || !v.Tables[0].Shared || !v.Tables[0].Complete {
			t.Fatalf("edge %d: caddy ilp fleet: tables %+v, want the peer's shared table", i, v.Tables)
		}
		tb := v.Tables[0]
		for _, up := range f.peerUps {
			if e, ok := tb.Connectors[up]; !ok || e != tb.Epoch {
				t.Errorf("edge %d: caddy ilp fleet: %s at epoch %d (known: %v), want the table's %d", i, up, e, ok, tb.Epoch)
			}
		}
		if tb.RouteControl != "" && !slices.Contains(f.peerUps, tb.RouteControl) {
			t.Errorf("edge %d: caddy ilp fleet: route control held by %q, not an instance", i, tb.RouteControl)
		}
		holders[tb.RouteControl] = true
	}
	if len(holders) != 1 {
		t.Errorf("the edges name %d route control holders: %v, want one", len(holders), holders)
	}
	t.Logf("caddy ilp fleet on each edge: three edges alive, the peer's table shared, every instance at its epoch, route control holder %v", holders)
}

// stderrWith returns the lines p wrote on stderr (its testLog) that
// contain s: ilp-connector's traces.
func stderrWith(t *testing.T, p *process, s string) []string {
	t.Helper()
	b, err := os.ReadFile(p.cmd.Stderr.(*os.File).Name())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for l := range strings.Lines(string(b)) {
		if strings.Contains(l, s) {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

// allSessions is the sum of sessions over the edges.
func allSessions(sessions map[string]int) int {
	n := 0
	for _, v := range sessions {
		n += v
	}
	return n
}

// splitString shows sessions per edge, in the edges' order.
func (f *edgeTier) splitString(sessions map[string]int) string {
	var parts []string
	for i, d := range f.peerDoors {
		parts = append(parts, fmt.Sprintf("edge %d %d", i, sessions[d]))
	}
	return strings.Join(parts, ", ")
}
