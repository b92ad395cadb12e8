package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/integration/internal/haproxytest"
	"github.com/ilp-edge/caddy-ilp/internal/redistest"
)

// TestEdgeTierOneRouteControl: the peer hears one fleet routing table at
// a time, whatever happens to the edges in between. A peer that hears two
// tables in turn resets its routes from the fleet at every switch: routes
// flap, and packets it sends meanwhile find no route. The edges keep the
// record of which connector holds the peer's route control on the shared
// store, so an edge that dies takes nothing with it.
//
// With the tier up (startEdgeTier, on Redis), the peer's received table is
// read every 100 ms for the whole test, and every switch from one table to
// another counted. Once the peer receives an instance's table (its first
// route control fails, the instances not being up yet, and ilp-connector
// sends it again 30 s later):
//
//   - the instance holding the route control is killed: the peer switches
//     once, to another instance's table, within 10 s, and stays on it;
//   - an edge is SIGKILLed, 5 s of the peer's updates go to the two others,
//     and it is restarted with the same Caddyfile: no switch, and every
//     edge's `caddy ilp fleet` names the same holder, the restarted edge
//     too, which only read it from Redis;
//   - another edge is reloaded with its upstream lists in another order,
//     which ranks them the same (by address): no switch;
//   - the new holder is killed: the peer switches once more, to the last
//     instance's table, within 10 s.
//
// The peer's route control reaches one edge. Without the store, that edge
// alone knows the holder (the others' `caddy ilp fleet` name none), and
// if it is the one killed and restarted, no edge knows it any more: when
// the holder dies, no edge hands the route control on, and the peer keeps
// a dead instance's table.
//
// ilp-connector 23's CCP sender stops for good after one route update
// that fails at the HTTP level (see startCCPFleet), as one that HAProxy
// hands to a dead edge and leaves to hang does (HAProxy without
// redispatch retries the dead edge for ~3 s, and the peer gives up after
// 1 s). The tier's HAProxy is configured as docs/operations.md tells
// operators to (haproxytest.Start): `option redispatch` hands a
// connection the dead edge refuses to a live one at once, and health
// checks take the dead edge out of the rotation until it is back. The
// edge is killed between two of the peer's updates: one in flight on it
// would fail whatever the balancer does. Its next turn is two updates
// (2 s) away and the checks take it out within 1 s, so its turns
// usually go to the live edges without a redispatch; redispatch covers
// one that comes sooner (step (b) logs how many HAProxy made).
func TestEdgeTierOneRouteControl(t *testing.T) {
	needNode(t)
	r := redistest.Start(t)
	testOneRouteControl(t, r.Addr)
}

// testOneRouteControl is TestEdgeTierOneRouteControl on the tier with
// redisAddr as its shared store, or none.
func testOneRouteControl(t *testing.T, redisAddr string) {
	began := time.Now()
	f := startEdgeTier(t, redisAddr)
	tableOf := map[string]int{} // each instance's own table id: its index
	for i, admin := range f.admin {
		tableOf[routing(t, admin).RoutingTableID] = i
	}
	w := watchPeerTable(t, f.peerAdmin, tableOf)
	t.Logf("the tier is up %v after the start", time.Since(began).Round(time.Millisecond))

	took := waitUntil(t, 45*time.Second, "the peer receives an instance's table", func() bool {
		_, ok := tableOf[w.current()]
		return ok
	})
	holder := tableOf[w.current()]
	order := ilpdest.Rank("peer", f.peerUps, nil)
	t.Logf("the peer receives instance %d's table %v after the tier was up (the peer's name ranks the instances %v)",
		holder, took.Round(time.Millisecond), order)
	f.wantOneHolder(t, f.peerUps[holder])

	// (a) The holder dies: its route control moves, once.
	mark := w.mark()
	f.instances[holder].stop()
	killed := time.Now()
	waitUntil(t, 10*time.Second, "the peer receives another instance's table", func() bool {
		i, ok := tableOf[w.current()]
		return ok && i != holder
	})
	moved := time.Since(killed)
	next := tableOf[w.current()]
	time.Sleep(3 * time.Second) // three of the peer's updates
	if n := w.switchesSince(mark); n != 1 {
		t.Fatalf("instance %d killed: the peer switched tables %d times, want once:\n%s", holder, n, w.timeline())
	}
	if got := tableOf[w.current()]; got != next {
		t.Fatalf("the peer went on from instance %d's table to %q", next, w.current())
	}
	t.Logf("(a) instance %d, the holder, killed: the peer switched once, to instance %d's table (ranked %d of 3), %v later, and stayed",
		holder, next, slices.Index(order, next)+1, moved.Round(time.Millisecond))
	f.wantOneHolder(t, f.peerUps[next])

	// (b) An edge is SIGKILLed between two of the peer's updates, and
	// restarted 5 s later.
	const e = 2
	mark = w.mark()
	f.afterItsTurn(t, e)
	f.edges[e].stop() // SIGKILL
	killed = time.Now()
	before := f.lb.Stats(t)
	time.Sleep(5 * time.Second)
	during := f.lb.Stats(t)
	updates := during.Connections - before.Connections
	if n := w.switchesSince(mark); n != 0 {
		t.Fatalf("edge %d killed: the peer switched tables %d times, want none:\n%s", e, n, w.timeline())
	}
	if updates < 3 {
		t.Fatalf("edge %d killed: the peer sent %d route updates in 5 s, want one a second: its CCP sender stopped", e, updates)
	}
	dead := during.Backends[f.peerDoors[e]]
	t.Logf("(b) edge %d SIGKILLed: no switch during the %d of the peer's connections of the next 5 s; HAProxy redispatched %d the dead edge refused, and its checks mark it %s",
		e, updates, dead.Redispatched-before.Backends[f.peerDoors[e]].Redispatched, dead.Status)

	f.restartEdge(t, e)
	restarted := time.Since(killed)
	atRestart := f.lb.Sessions(t)
	time.Sleep(3 * time.Second)
	after := f.lb.Sessions(t)
	if n := w.switchesSince(mark); n != 0 {
		t.Fatalf("edge %d restarted: the peer switched tables %d times, want none:\n%s", e, n, w.timeline())
	}
	t.Logf("(b) edge %d restarted %v after its kill (same Caddyfile): no switch in the next 3 s, in which it took %d of the peer's %d connections",
		e, restarted.Round(time.Millisecond), after[f.peerDoors[e]]-atRestart[f.peerDoors[e]], allSessions(after)-allSessions(atRestart))
	f.wantOneHolder(t, f.peerUps[next])

	// (c) A reload that changes the order of the upstreams, not their
	// ranking.
	mark = w.mark()
	f.reloadReordered(t, 0)
	time.Sleep(3 * time.Second)
	if n := w.switchesSince(mark); n != 0 {
		t.Fatalf("edge 0 reloaded: the peer switched tables %d times, want none:\n%s", n, w.timeline())
	}
	t.Log("(c) edge 0 reloaded with its upstreams in reverse order: no switch in the next 3 s")
	f.wantOneHolder(t, f.peerUps[next])

	// (d) The new holder dies too. Only the record on Redis says which
	// connector it was, and that it is the peer's route control to move:
	// the edge that got the route control the first time was restarted
	// since, and the two others never saw it.
	last := 3 - holder - next
	mark = w.mark()
	f.instances[next].stop()
	killed = time.Now()
	waitUntil(t, 10*time.Second, fmt.Sprintf("the peer receives the last instance's (%d) table", last), func() bool {
		i, ok := tableOf[w.current()]
		return ok && i == last
	})
	moved = time.Since(killed)
	time.Sleep(2 * time.Second)
	if n := w.switchesSince(mark); n != 1 {
		t.Fatalf("instance %d killed: the peer switched tables %d times, want once:\n%s", next, n, w.timeline())
	}
	t.Logf("(d) instance %d, the holder, killed: the peer switched once, to instance %d's table, %v later, and stayed",
		next, last, moved.Round(time.Millisecond))
	f.wantOneHolder(t, f.peerUps[last])

	if n := w.switchesSince(0); n != 2 {
		t.Fatalf("the peer switched tables %d times in all, want twice (one per holder killed):\n%s", n, w.timeline())
	}
	t.Logf("the peer's received table, read every 100 ms (%d reads, %d failed): 2 switches in all, one per holder killed\n%s",
		w.reads.Load(), w.failed.Load(), w.timeline())
}

// zeroTable is the routing table id ilp-connector's ccp-receiver has
// before it receives any.
const zeroTable = "00000000-0000-0000-0000-000000000000"

// peerTableWatch reads, every 100 ms, the id of the routing table the
// peer receives from the fleet, and records each change.
type peerTableWatch struct {
	start   time.Time
	tableOf map[string]int // each instance's table id: its index
	reads   atomic.Int64
	failed  atomic.Int64

	mu      sync.Mutex
	id      string // the last read, "" for none
	changes []tableChange
}

type tableChange struct {
	at       time.Duration // since the watch started
	from, to string
}

// watchPeerTable starts reading the table the peer (its admin API on
// peerAdmin) receives, until the test ends.
func watchPeerTable(t *testing.T, peerAdmin int, tableOf map[string]int) *peerTableWatch {
	w := &peerTableWatch{start: time.Now(), tableOf: tableOf}
	client := &http.Client{Timeout: 2 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/routing", peerAdmin)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			id, err := receivedTable(client, url)
			w.reads.Add(1)
			if err != nil {
				w.failed.Add(1)
				continue
			}
			w.mu.Lock()
			if id != w.id {
				w.changes = append(w.changes, tableChange{time.Since(w.start), w.id, id})
				w.id = id
			}
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return w
}

// receivedTable is the id of the table the peer's account "fleet"
// received, "" for none yet.
func receivedTable(client *http.Client, url string) (string, error) {
	res, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	var s routingStatus
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		return "", err
	}
	if r := s.Peers["fleet"].Receive; r != nil && r.RoutingTableID != zeroTable {
		return r.RoutingTableID, nil
	}
	return "", nil
}

func (w *peerTableWatch) current() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.id
}

// mark is where the changes recorded so far end.
func (w *peerTableWatch) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.changes)
}

// switchesSince counts the changes from mark on from one table to
// another.
func (w *peerTableWatch) switchesSince(mark int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, c := range w.changes[mark:] {
		if c.from != "" && c.to != "" {
			n++
		}
	}
	return n
}

// timeline shows every change, each table named by its instance.
func (w *peerTableWatch) timeline() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	name := func(id string) string {
		if id == "" {
			return "none"
		}
		if i, ok := w.tableOf[id]; ok {
			return fmt.Sprintf("instance %d's table", i)
		}
		return "table " + id + " (no instance's)"
	}
	var b strings.Builder
	for _, c := range w.changes {
		fmt.Fprintf(&b, "\t+%v: %s -> %s\n", c.at.Round(100*time.Millisecond), name(c.from), name(c.to))
	}
	return b.String()
}

// wantOneHolder asks every edge, with `caddy ilp fleet`, which connector
// holds the peer's route control: each must name want.
func (f *edgeTier) wantOneHolder(t *testing.T, want string) {
	t.Helper()
	var named []string
	for i, admin := range f.edgeAdmin {
		var v fleetView
		out := caddyILP(t, nil, "", "fleet", "--admin", admin)
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("edge %d: caddy ilp fleet: %v\n%s", i, err, out)
		}
		holder := "none"
		for _, tb := range v.Tables {
			if tb.Peer == "peer" && tb.RouteControl != "" {
				holder = tb.RouteControl
			}
		}
		named = append(named, fmt.Sprintf("edge %d: %s", i, holder))
		if holder != want {
			defer t.Errorf("edge %d: caddy ilp fleet names %s as the peer's route control holder, want %s", i, holder, want)
		}
	}
	t.Logf("caddy ilp fleet, route control holder: %s", strings.Join(named, ", "))
}

// afterItsTurn waits until HAProxy hands edge e one of the peer's
// connections, and for that route update to be over: the peer's next
// connection to e is two of its updates (two seconds) away.
func (f *edgeTier) afterItsTurn(t *testing.T, e int) {
	t.Helper()
	before := f.lb.Sessions(t)[f.peerDoors[e]]
	waitUntil(t, 10*time.Second, fmt.Sprintf("HAProxy hands edge %d one of the peer's connections", e), func() bool {
		return f.lb.Sessions(t)[f.peerDoors[e]] > before
	})
	time.Sleep(400 * time.Millisecond)
}

// restartEdge starts edge e again with its command line, and waits until
// it serves: its admin endpoint answers and alice's door listens (which
// Caddy starts with the peer's).
func (f *edgeTier) restartEdge(t *testing.T, e int) {
	t.Helper()
	f.edges[e] = start(t, f.edgeCmds[e][0], f.edgeCmds[e][1:]...)
	var port int
	fmt.Sscan(f.aliceDoors[e][strings.LastIndexByte(f.aliceDoors[e], ':')+1:], &port)
	waitListening(t, f.edges[e], port)
	client := &http.Client{Timeout: 2 * time.Second}
	waitUntil(t, 10*time.Second, fmt.Sprintf("edge %d's admin endpoint answers", e), func() bool {
		res, err := client.Get("http://" + f.edgeAdmin[e] + "/config/")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	time.Sleep(200 * time.Millisecond) // the peer's door, started beside alice's
}

// reloadReordered loads edge e's Caddyfile again through its admin
// endpoint, with both upstream lists in reverse order.
func (f *edgeTier) reloadReordered(t *testing.T, e int) {
	t.Helper()
	b, err := os.ReadFile(f.edgeCmds[e][3]) // run --config <path>
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	for _, ups := range [][]string{f.peerUps, f.alice} {
		list := strings.Join(ups, " ")
		if !strings.Contains(cfg, list) {
			t.Fatalf("edge %d's Caddyfile has no upstream list %q", e, list)
		}
		reversed := slices.Clone(ups)
		slices.Reverse(reversed)
		cfg = strings.Replace(cfg, list, strings.Join(reversed, " "), 1)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+f.edgeAdmin[e]+"/load", strings.NewReader(cfg))
	req.Header.Set("Content-Type", "text/caddyfile")
	res, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("edge %d: POST /load: %v", e, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(res.Body)
		t.Fatalf("edge %d: POST /load: %s %s", e, res.Status, body)
	}
}

// TestEdgeTierEdgeKilledUnderPayments: an edge that dies in the middle
// of payments loses none of them: its senders go on through the other
// edges, and every payment completes. Six STREAM payments of 200,000
// each, in packets of at most 1,000, two to each instance, go through a
// second HAProxy (TCP, round-robin) in front of the three edges' doors
// for alice, to receiving addresses behind the peer (test.late). Once a
// quarter has been delivered, the edge that answered the most of alice's
// packets in the last 500 ms is SIGKILLed, and restarted 1 s later.
//
// stream.js's sender (ilp-plugin-http on node-fetch, with Node 20's
// default agent, which keeps connections alive) sends a payment's packets
// one at a time on one connection, after a first volley of five rate
// probes on as many: each payment rides one edge at a time, and six of
// them cover the three edges. The packets the killed edge held fail at
// the sender as connection errors: HAProxy redispatches the connections
// the dead edge refuses (see TestEdgeTierOneRouteControl), but those it
// had handed the edge die with it. ilp-plugin-http throws them, and
// STREAM ends the connection on a thrown error: --retry-errors makes them
// T01 Rejects, which STREAM retries, on another connection, through
// another edge.
//
// Every payment must complete to the unit (PAID 200000 200000). The
// receiver must have got at least the sum of the payments, and at most
// that plus the packets that failed at the senders: a packet the killed
// edge had already forwarded reaches the receiver, which fulfils it, and
// its Fulfill dies with the edge, so the sender sends those units again.
// No edge can give that Fulfill back after a SIGKILL: a packet in flight
// per payment is what the crash costs, paid to the receiver twice, never
// lost.
func TestEdgeTierEdgeKilledUnderPayments(t *testing.T) {
	needNode(t)
	r := redistest.Start(t)
	f := startEdgeTier(t, r.Addr)
	const payments, amount, maxPacket = 6, 200000, 1000
	recv, recvPort, addrs, addrSecrets := streamReceiver(t, "test.late", 30)
	f.addLate(t, recvPort)
	waitUntil(t, 15*time.Second, "every instance learns test.late", func() bool {
		return knows(t, f.admin[0], "test.late") && knows(t, f.admin[1], "test.late") && knows(t, f.admin[2], "test.late")
	})
	// Payment i to a receiving address alice's door ranks first on
	// instance i%3 (prefix_segments 4 of its 3 segments: the whole
	// address).
	var dests, secrets []string
	for i := range payments {
		d := slices.IndexFunc(addrs, func(d string) bool {
			return ilpdest.Rank(d, f.alice, nil)[0] == i%len(f.alice) && !slices.Contains(dests, d)
		})
		if d < 0 {
			t.Fatalf("too few of 30 receiving addresses rank instance %d first", i%len(f.alice))
		}
		dests, secrets = append(dests, addrs[d]), append(secrets, addrSecrets[d])
	}
	lb := haproxytest.Start(t, freePort(t), freePort(t), f.aliceDoors)

	type payment struct {
		out      []string
		took     time.Duration
		finished atomic.Bool
	}
	ps := make([]*payment, payments)
	ctx, cancel := context.WithTimeout(context.Background(), 70*time.Second)
	defer cancel()
	began := time.Now()
	var wg sync.WaitGroup
	for i := range ps {
		ps[i] = &payment{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := ps[i]
			out, err := exec.CommandContext(ctx, "node", "js/stream.js", "send", "--url", "http://"+lb.Addr+"/",
				"--token", aliceToken, "--destination", dests[i], "--secret", secrets[i],
				"--amount", fmt.Sprint(amount), "--max-packet", fmt.Sprint(maxPacket), "--retry-errors").CombinedOutput()
			p.took = time.Since(began)
			p.out = strings.Split(strings.TrimSpace(string(out)), "\n")
			if err != nil {
				p.out = append(p.out, err.Error())
			}
			p.finished.Store(true)
		}()
	}

	// Mid-way: a quarter delivered.
	const total = payments * amount
	received := func() int {
		var n int
		fmt.Sscan(streamTotal(recv), &n)
		return n
	}
	waitUntil(t, 40*time.Second, "a quarter of the payments delivered", func() bool { return received() >= total/4 })
	busiest, rates := f.busiestForAlice(t)
	delivered := streamTotal(recv)
	f.edges[busiest].stop() // SIGKILL
	killedAt := time.Since(began)
	inFlight := 0
	for _, p := range ps {
		if !p.finished.Load() {
			inFlight++
		}
	}
	t.Logf("edge %d SIGKILLed %v after the payments began, with %d of %d payments in flight and %s of %d delivered (alice's packets per edge in the last 500 ms: %v)",
		busiest, killedAt.Round(time.Millisecond), inFlight, payments, delivered, total, rates)
	if inFlight < payments/2 {
		t.Fatalf("only %d of %d payments were in flight at the kill: the test proves little", inFlight, payments)
	}
	time.Sleep(time.Second)
	f.restartEdge(t, busiest)
	t.Logf("edge %d restarted %v after the payments began", busiest, time.Since(began).Round(time.Millisecond))
	wg.Wait()

	var paid, failedPackets, failedAmount int
	want := fmt.Sprintf("PAID %d %d", amount, amount)
	for i, p := range ps {
		last := p.out[len(p.out)-1]
		retried, retriedAmount := 0, 0
		for _, l := range p.out {
			var n int
			if _, err := fmt.Sscanf(l, "RETRY %d", &n); err == nil {
				retried, retriedAmount = retried+1, retriedAmount+n
			}
		}
		failedPackets, failedAmount = failedPackets+retried, failedAmount+retriedAmount
		t.Logf("payment %d (instance %d): %s, done %v after the payments began; %d packet(s), %d in all, failed at the sender and were retried",
			i, ilpdest.Rank(dests[i], f.alice, nil)[0], last, p.took.Round(time.Millisecond), retried, retriedAmount)
		if last != want {
			t.Errorf("payment %d: %s, want %s; its output:\n%s", i, last, want, strings.Join(p.out, "\n"))
			continue
		}
		paid += amount
	}
	if failedPackets == 0 {
		t.Errorf("no packet failed at the senders: the kill of edge %d hit no payment", busiest)
	}
	for deadline := time.Now().Add(5 * time.Second); received() < paid && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	got := received()
	t.Logf("the receiver got %d for %d paid: %d more, of the %d in the %d packets that failed at the senders",
		got, paid, got-paid, failedAmount, failedPackets)
	if got < paid || got > paid+failedAmount {
		t.Errorf("the receiver got %d, want %d paid plus at most the %d the senders saw fail", got, paid, failedAmount)
	}
	t.Logf("alice's connections through HAProxy, per edge: %s", splitOf(lb.Sessions(t), f.aliceDoors))
}

// busiestForAlice is the edge that answered the most of alice's packets
// in 500 ms, and how many each did.
func (f *edgeTier) busiestForAlice(t *testing.T) (int, []int) {
	t.Helper()
	count := func() []float64 {
		var n []float64
		for _, admin := range f.edgeAdmin {
			var sum float64
			for series, v := range scrape(t, "http://"+admin+"/metrics") {
				if strings.HasPrefix(series, `caddy_ilp_packets_total{peer="alice"`) {
					sum += v
				}
			}
			n = append(n, sum)
		}
		return n
	}
	before := count()
	time.Sleep(500 * time.Millisecond)
	after := count()
	rates := make([]int, len(after))
	busiest := 0
	for i := range after {
		rates[i] = int(after[i] - before[i])
		if rates[i] > rates[busiest] {
			busiest = i
		}
	}
	return busiest, rates
}

// splitOf shows sessions per backend, in the order of backends.
func splitOf(sessions map[string]int, backends []string) string {
	var parts []string
	for i, b := range backends {
		parts = append(parts, fmt.Sprintf("edge %d %d", i, sessions[b]))
	}
	return strings.Join(parts, ", ")
}
