package integration

// Faults around asynchronous (RFC 35 draft 3) exchanges, end to end: the
// peer's callback endpoint answering 503 for a while, down past the
// Prepares' expiry, or answering 400; a real ilp-connector SIGKILLed
// while it holds Prepares; a route update sent asynchronously to a fleet
// of real ilp-connectors. Each test counts what reached the callback per
// Request-Id and wants every accepted Prepare's reply exactly once: none
// lost, none delivered twice.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestAsyncCallbackUnavailableForAWhile: the peer's callback endpoint
// answers 503 to every POST for a second after 20 Prepares were
// accepted, then 200. The edge retries each reply (with back-off) through
// the outage, and each is taken exactly once: one 200 per Request-Id, no
// POST after it, every 503 counted as a 5xx attempt, every reply as
// delivered.
func TestAsyncCallbackUnavailableForAWhile(t *testing.T) {
	const peer, n = "faults-503", 20
	conn, _ := fulfillingConnector(t)
	var down atomic.Bool
	down.Store(true)
	cb := startFaultyCallback(t, "", func(string, int) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	startInProcess(t, faultsSite(peer, cb.url, hostport(conn)))

	// Expiring in 5 s: the outage and the back-off after it (at most
	// 1.6 s between two attempts by then) end well before.
	ids := sendAsync(t, n, "g.f503.r%d.x", time.Now().Add(5*time.Second), cb.url)
	waitUntil(t, 2*time.Second, "a 503 to each reply", func() bool { return cb.tally(ids).missing == 0 })
	time.Sleep(time.Second)
	down.Store(false)
	back := time.Now()
	eventually(3*time.Second, func() bool { c := cb.tally(ids); return c.taken+c.twice == n })
	took := time.Since(back)
	time.Sleep(500 * time.Millisecond) // for a reply delivered twice to show
	c := cb.tally(ids)
	m := asyncReplies(t, peer)
	t.Logf("%d replies, callback answering 503 for ~1 s: %d POSTs (%d answered 503, %d answered 200), %d to %d per reply; "+
		"%d taken once, %d lost, %d taken twice, %d POSTs after a 200, %d stray; last 200 within %v of the outage's end; metrics: %v",
		n, c.posts, c.byStatus[503], c.byStatus[200], c.fewest, c.most,
		c.taken, n-c.taken-c.twice, c.twice, c.afterTaken, c.stray, took.Round(time.Millisecond), m)
	if c.taken != n || c.twice != 0 || c.afterTaken != 0 || c.stray != 0 {
		t.Errorf("want each of %d replies taken exactly once, and no POST after", n)
	}
	if c.fewest < 2 {
		t.Errorf("a reply was POSTed %d times, want a 503 then a retry at least", c.fewest)
	}
	if m["delivered"] != n || m["refused"] != 0 || m["abandoned"] != 0 ||
		m["attempts 5xx"] != float64(c.byStatus[503]) || m["attempts 2xx"] != n {
		t.Errorf("metrics %v: want %d delivered, %d 5xx attempts and %d 2xx, nothing refused or abandoned", m, n, c.byStatus[503], n)
	}
}

// TestAsyncCallbackDownPastExpiry: the peer's callback endpoint is down
// from the 202 until after the Prepares expire: either nothing listens
// (every POST refused at the dial, and retried), or a server takes each
// POST and never answers. Each reply is abandoned by the Prepare's
// expiry, counted in caddy_ilp_async_replies_total{outcome="abandoned"}
// and logged by the edge; once the endpoint is back, nothing more comes.
func TestAsyncCallbackDownPastExpiry(t *testing.T) {
	t.Run("nothing listening", func(t *testing.T) {
		const peer, n = "faults-down-refused", 10
		conn, _ := fulfillingConnector(t)
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		url := "http://" + addr + "/cb/"
		_, logPath := startInProcess(t, faultsSite(peer, url, hostport(conn)))

		expires := time.Now().Add(3 * time.Second)
		ids := sendAsync(t, n, "g.fdown.r%d.x", expires, url)
		first, last := watchOutcome(t, peer, "abandoned", n, time.Until(expires)+2*time.Second)
		m := asyncReplies(t, peer)
		lines := replyLogLines(t, logPath, peer, "abandoned", ids)

		// The endpoint comes back on the same address: a reply the edge
		// had not really given up on would arrive now.
		cb := startFaultyCallback(t, addr, func(string, int) int { return http.StatusOK })
		time.Sleep(1500 * time.Millisecond)
		c := cb.tally(ids)
		t.Logf("%d replies, nothing listening: %v attempts refused at the dial (%.1f per reply); abandoned from %s to %s "+
			"relative to the expiry; %d log lines; %d POSTs once the endpoint was back; metrics: %v",
			n, m["attempts error"], m["attempts error"]/n, since(expires, first),
			since(expires, last), len(lines), c.posts, m)
		if m["abandoned"] != n || m["delivered"] != 0 || m["refused"] != 0 {
			t.Errorf("metrics %v: want %d abandoned and nothing else", m, n)
		}
		if m["attempts error"] < 2*n {
			t.Errorf("%v attempts for %d replies: want each retried", m["attempts error"], n)
		}
		// The last retry starts 250 ms before the expiry (the sender's
		// lastAttempt), whatever the back-off draws: the edge gives up
		// after it, not seconds earlier.
		if first.Before(expires.Add(-500*time.Millisecond)) || last.IsZero() || last.After(expires.Add(time.Second)) {
			t.Errorf("abandoned from %s to %s relative to the expiry: want within 500 ms before it, after the last retry",
				since(expires, first), since(expires, last))
		}
		if len(lines) == 0 {
			t.Error("no log line for the abandoned replies")
		}
		if c.posts != 0 {
			t.Errorf("%d POSTs after the replies were abandoned", c.posts)
		}
	})

	t.Run("never answers", func(t *testing.T) {
		const peer, n = "faults-down-hung", 10
		conn, _ := fulfillingConnector(t)
		var back atomic.Bool
		cb := startFaultyCallback(t, "", func(string, int) int {
			if back.Load() {
				return http.StatusOK
			}
			return 0 // held: no answer
		})
		_, logPath := startInProcess(t, faultsSite(peer, cb.url, hostport(conn)))

		expires := time.Now().Add(3 * time.Second)
		ids := sendAsync(t, n, "g.fhung.r%d.x", expires, cb.url)
		first, last := watchOutcome(t, peer, "abandoned", n, time.Until(expires)+2*time.Second)
		// Each POST ends when the edge lets go of it, which the server
		// sees a moment later.
		eventually(time.Second, func() bool { return cb.tally(ids).held == 0 })
		c := cb.tally(ids)
		back.Store(true)
		time.Sleep(1500 * time.Millisecond)
		after := cb.tally(ids).posts - c.posts
		m := asyncReplies(t, peer)
		lines := replyLogLines(t, logPath, peer, "abandoned", ids)
		t.Logf("%d replies, callback never answering: %d POSTs (%d to %d per reply), let go from %s to %s and abandoned "+
			"from %s to %s relative to the expiry; %d log lines; %d POSTs once the endpoint answered; metrics: %v",
			n, c.posts, c.fewest, c.most, since(expires, c.firstEnd), since(expires, c.lastEnd),
			since(expires, first), since(expires, last), len(lines), after, m)
		if m["abandoned"] != n || m["delivered"] != 0 || m["refused"] != 0 || m["attempts timeout"] != n {
			t.Errorf("metrics %v: want %d abandoned after one timed-out attempt each, nothing else", m, n)
		}
		// The one POST lasts until the Prepare's expiry: the edge gives up
		// then, not before, and at once.
		if c.fewest != 1 || c.most != 1 || c.missing != 0 || c.stray != 0 || c.held != 0 {
			t.Errorf("want exactly one POST per reply, each let go by the edge (%d held)", c.held)
		}
		if first.Before(expires.Add(-100*time.Millisecond)) || last.IsZero() || last.After(expires.Add(time.Second)) {
			t.Errorf("abandoned from %s to %s relative to the expiry: want at the expiry", since(expires, first), since(expires, last))
		}
		if len(lines) == 0 {
			t.Error("no log line for the abandoned replies")
		}
		if after != 0 {
			t.Errorf("%d POSTs after the replies were abandoned", after)
		}
	})
}

// TestAsyncCallbackRefuses: the peer's callback endpoint answers 400 to
// every reply (as a draft 3 sender answers one for an id it does not
// know). The edge stops at once: one POST per reply, each counted as
// refused, and logged.
func TestAsyncCallbackRefuses(t *testing.T) {
	const peer, n = "faults-400", 10
	conn, _ := fulfillingConnector(t)
	cb := startFaultyCallback(t, "", func(string, int) int { return http.StatusBadRequest })
	_, logPath := startInProcess(t, faultsSite(peer, cb.url, hostport(conn)))

	ids := sendAsync(t, n, "g.f400.r%d.x", time.Now().Add(3*time.Second), cb.url)
	watchOutcome(t, peer, "refused", n, 3*time.Second)
	// A retry would come within the back-off's first 50 ms; half a
	// second more is plenty for any.
	time.Sleep(500 * time.Millisecond)
	c := cb.tally(ids)
	m := asyncReplies(t, peer)
	lines := replyLogLines(t, logPath, peer, "refused", ids)
	t.Logf("%d replies, callback answering 400: %d POSTs (%d to %d per reply), %d without a POST, %d stray; %d log lines; metrics: %v",
		n, c.posts, c.fewest, c.most, c.missing, c.stray, len(lines), m)
	if c.posts != n || c.fewest != 1 || c.most != 1 || c.byStatus[400] != n || c.stray != 0 {
		t.Errorf("want exactly one POST per reply")
	}
	if m["refused"] != n || m["delivered"] != 0 || m["abandoned"] != 0 || m["attempts 4xx"] != n {
		t.Errorf("metrics %v: want %d refused after one 4xx attempt each, nothing else", m, n)
	}
	if len(lines) == 0 {
		t.Error("no log line for the refused replies")
	}
}

// TestAsyncConnectorKilledHoldingPrepares: 10 asynchronous Prepares go
// through the edge to a real ilp-connector 23 (js/connector.js), which
// forwards each to a backend that never answers them; while it holds
// them all, the connector is SIGKILLed. Each Prepare gets exactly one
// reply by callback, a Reject, as soon as the connection breaks (before
// its expiry), and no second one after its expiry.
func TestAsyncConnectorKilledHoldingPrepares(t *testing.T) {
	needNode(t)
	const peer, n = "faults-kill", 10
	backend := startBackend(t, "held", freePort(t)) // stalls g.stall.*
	port := freePort(t)
	connector := start(t, "node", "js/connector.js", "--port", fmt.Sprint(port), "--token", connToken,
		"--up-port", fmt.Sprint(backend.port), "--up-token", connToken, "--route-prefix", "g.stall")
	connector.waitReady(t)
	waitListening(t, connector, port)
	cb := startCallback(t)
	startInProcess(t, faultsSite(peer, cb.URL+"/cb/", fmt.Sprintf("127.0.0.1:%d", port)))

	// ilp-connector gives up (R00) a second before the Prepare expires,
	// its minimum message window: the kill comes long before.
	expires := time.Now().Add(3 * time.Second)
	ids := sendAsync(t, n, "g.stall.k%d.x", expires, cb.URL+"/cb/")
	// The backend logs each Prepare the connector forwarded to it: then
	// the connector holds them all, waiting for the backend's reply.
	held := 0
	waitUntil(t, 3*time.Second, "the connector holds every Prepare", func() bool {
		held += len(backend.received())
		return held >= n
	})
	connector.stop() // SIGKILL
	killed := time.Now()
	eventually(time.Until(expires), func() bool {
		cb.mu.Lock()
		defer cb.mu.Unlock()
		return countAnswered(cb.replies, ids) == n
	})
	answered := time.Since(killed)
	early := countAnswered(cb.waitReplies(t, 0, 0), ids) // before the expiry
	// Past the expiry, for a late second reply (an R00, say).
	time.Sleep(time.Until(expires) + 500*time.Millisecond)
	replies := cb.waitReplies(t, 0, 0)

	answers := map[string]int{}
	twice := 0
	for _, id := range ids {
		rs := replies[id]
		if len(rs) > 1 {
			twice++
		}
		for _, r := range rs {
			answers[r]++
		}
	}
	m := asyncReplies(t, peer)
	held += len(backend.received())
	t.Logf("%d Prepares held by a connector SIGKILLed (%d reached its backend): replies by callback %v, all within %v of the kill "+
		"(polled every 20 ms) (%v before the expiry); %d Request-Ids answered, %d answered twice, %d replies for unknown ids; metrics: %v",
		n, held, answers, answered.Round(time.Millisecond), expires.Sub(killed.Add(answered)).Round(time.Millisecond),
		countAnswered(replies, ids), twice, len(replies)-countAnswered(replies, ids), m)
	if countAnswered(replies, ids) != n || twice != 0 || len(replies) != n {
		t.Errorf("want each of %d Prepares answered exactly once", n)
	}
	if early != n {
		t.Errorf("%d of %d Prepares answered before their expiry, want all: the connection broke long before", early, n)
	}
	for a := range answers {
		// The edge's Reject table: the connection broke after the
		// Prepare was sent (T00). Nobody could fulfill: the backend
		// holds every Prepare it gets.
		if !strings.HasPrefix(a, "T") && a != "R00" {
			t.Errorf("reply %s: want a T-family Reject (or R00)", a)
		}
	}
	if held != n {
		t.Errorf("the backend got %d Prepares, want each of %d once", held, n)
	}
	if m["delivered"] != n {
		t.Errorf("metrics %v: want %d delivered", m, n)
	}
}

// TestAsyncRouteUpdateFansOut: a peer speaking draft 3 sends its route
// update (peer.route.update, encoded as ilp-protocol-ccp does) with a
// Request-Id and a Callback-Url. The edge fans it out to each of three
// real ilp-connector 23 instances (routing_protocol fanout, the default),
// each learns the peer's route (its admin API's /routing) at the peer's
// epoch, and the peer gets exactly one Fulfill by callback. The same
// Prepare sent again with the same Request-Id (a sender that missed the
// 202) gets 202 and reaches no connector again.
func TestAsyncRouteUpdateFansOut(t *testing.T) {
	needNode(t)
	const peer, prefix = "faults-ccp", "test.asyncpeer.a"
	// The peer's own server, where each instance sends its route
	// control directly (and would send its routes): it takes them all.
	var toPeer sync.Map
	peerServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if p, err := ilpdest.ReadPrepare(body); err == nil {
			n, _ := toPeer.LoadOrStore(string(p.Destination), new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
		}
		w.Write(ilpdest.AppendCCPFulfill(nil))
	}))
	t.Cleanup(peerServer.Close)
	instances := startPeeredInstances(t, 3, peerServer.URL+"/")
	cb := startCallback(t)
	ups := make([]string, len(instances))
	for i, in := range instances {
		ups[i] = in.peerAddr
	}
	startInProcess(t, faultsSite(peer, cb.URL+"/cb/", strings.Join(ups, " ")))

	tableID := uuid.New()
	update := ilpdest.RouteUpdate{
		CurrentEpochIndex: 1, FromEpochIndex: 0, ToEpochIndex: 1, HoldDownTime: 45000,
		Speaker:   "test.asyncpeer",
		NewRoutes: []ilpdest.Route{{Prefix: prefix, Path: []string{"test.asyncpeer"}, Auth: [32]byte{1, 2, 3}}},
	}
	copy(update.RoutingTableID[:], tableID[:])
	body := ilpdest.AppendPrepare(nil, ilpdest.Prepare{
		ExpiresAt: time.Now().Add(5 * time.Second), ExecutionCondition: ilpdest.PeerProtocolCondition,
		Destination: []byte(ilpdest.PeerRouteUpdate), Data: ilpdest.AppendRouteUpdate(nil, update),
	})
	id := uuid.NewString()
	client := testClient(t, 5*time.Second)
	if status := postAsync(t, client, id, cb.URL+"/cb/", body); status != http.StatusAccepted {
		t.Fatalf("the route update: HTTP %d, want 202", status)
	}
	sent := time.Now()
	eventually(5*time.Second, func() bool {
		for _, in := range instances {
			if !knows(t, in.admin, prefix) {
				return false
			}
		}
		return true
	})
	learnt := time.Since(sent)
	eventually(3*time.Second, func() bool { return len(cb.waitReplies(t, 0, 0)[id]) > 0 })
	if status := postAsync(t, client, id, cb.URL+"/cb/", body); status != http.StatusAccepted {
		t.Fatalf("the route update sent again: HTTP %d, want 202", status)
	}
	time.Sleep(500 * time.Millisecond) // for a second fan-out or reply to show
	replies := cb.waitReplies(t, 1, 0)

	metrics := scrape(t, "http://localhost:2999/metrics")
	var fanned []string
	for i, in := range instances {
		s := routing(t, in.admin)
		accepted := metrics[fmt.Sprintf(`caddy_ilp_route_updates_total{result="accepted",upstream=%q}`, in.peerAddr)]
		recv := s.Peers["peer"].Receive
		if recv == nil {
			t.Fatalf("instance %d: no receiver for the account peer in /routing", i)
		}
		_, route := s.LocalRoutingTable[prefix]
		fanned = append(fanned, fmt.Sprintf("instance %d: %v update(s) accepted, route %v, table epoch %d", i, accepted, route, recv.Epoch))
		if !route {
			t.Errorf("instance %d has no route to %s", i, prefix)
		}
		if accepted != 1 {
			t.Errorf("instance %d accepted %v route updates from the edge, want 1", i, accepted)
		}
		if recv.RoutingTableID != tableID.String() || recv.Epoch != 1 {
			t.Errorf("instance %d holds the peer's table %+v, want %s at epoch 1", i, *recv, tableID)
		}
	}
	replay := metrics[fmt.Sprintf(`caddy_ilp_async_prepares_total{peer=%q,result="replay"}`, peer)]
	direct := map[string]int32{}
	toPeer.Range(func(k, v any) bool { direct[k.(string)] = v.(*atomic.Int32).Load(); return true })
	t.Logf("an asynchronous route update, every instance learnt it (waited %v): %s; callbacks %v; the same Request-Id again: %v replay(s) (202, not forwarded); "+
		"the instances' own CCP Prepares to the peer, by destination: %v",
		learnt.Round(time.Millisecond), strings.Join(fanned, "; "), replies, replay, direct)
	if rs := replies[id]; len(replies) != 1 || len(rs) != 1 || rs[0] != "fulfill" {
		t.Errorf("callbacks %v: want one Fulfill for %s", replies, id)
	}
	if replay != 1 {
		t.Errorf("%v replays counted, want 1", replay)
	}
}

// faultsSite is an edge on 127.0.0.1:9080 whose one peer (hostileToken)
// may name callbacks under cbPrefix, in front of ilp_proxy to upstreams
// (ilp-connector's token toward them).
func faultsSite(peer, cbPrefix, upstreams string) string {
	return fmt.Sprintf(`
	http://127.0.0.1:9080 {
		ilp_edge {
			address test.edge
			peer %s {
				token %s
				upstream_token %s
				callback_url_prefix %s
			}
		}
		ilp_proxy %s
	}`, peer, hostileToken, connToken, cbPrefix, upstreams)
}

// sendAsync sends n asynchronous Prepares as faultsSite's peer, the i-th
// to fmt.Sprintf(format, i), all expiring at expires, each with a fresh
// Request-Id and callbackURL, and wants 202 for each. It returns the ids.
func sendAsync(t *testing.T, n int, format string, expires time.Time, callbackURL string) []string {
	t.Helper()
	client := testClient(t, 5*time.Second)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
		body := ilptest.NewPrepare(ilpdest.Prepare{Amount: 100, Destination: []byte(fmt.Sprintf(format, i)),
			ExpiresAt: expires, Data: []byte("hello")})
		if status := postAsync(t, client, ids[i], callbackURL, body); status != http.StatusAccepted {
			t.Fatalf("Prepare %d: HTTP %d, want 202", i, status)
		}
	}
	return ids
}

// postAsync POSTs body as faultsSite's peer with the Request-Id id and
// callbackURL, and returns the HTTP status.
func postAsync(t *testing.T, client *http.Client, id, callbackURL string, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:9080/", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+hostileToken)
	req.Header.Set("Request-Id", id)
	req.Header.Set("Callback-Url", callbackURL)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// asyncReplies is the peer's caddy_ilp_async_replies_total by outcome,
// and its caddy_ilp_async_callback_attempts_total as "attempts <result>".
// Each test has a peer of its own: the counters are the process's.
func asyncReplies(t *testing.T, peer string) map[string]float64 {
	t.Helper()
	m := scrape(t, "http://localhost:2999/metrics")
	out := map[string]float64{}
	for _, o := range []string{"delivered", "refused", "abandoned"} {
		out[o] = m[fmt.Sprintf(`caddy_ilp_async_replies_total{outcome=%q,peer=%q}`, o, peer)]
	}
	for _, r := range []string{"2xx", "3xx", "4xx", "5xx", "timeout", "error"} {
		if v := m[fmt.Sprintf(`caddy_ilp_async_callback_attempts_total{peer=%q,result=%q}`, peer, r)]; v != 0 {
			out["attempts "+r] = v
		}
	}
	return out
}

// watchOutcome polls the peer's replies with outcome every 20 ms until
// there are n, for at most within, and returns when the first and the
// n-th were seen (zero when they were not: the caller's checks of the
// counts report it).
func watchOutcome(t *testing.T, peer, outcome string, n int, within time.Duration) (first, last time.Time) {
	t.Helper()
	eventually(within, func() bool {
		v := asyncReplies(t, peer)[outcome]
		if v > 0 && first.IsZero() {
			first = time.Now()
		}
		if v >= float64(n) {
			last = time.Now()
		}
		return !last.IsZero()
	})
	return first, last
}

// replyLogLines returns the edge's "asynchronous reply" log lines (JSON,
// in the log file of startInProcess) for peer with result, and fails for
// one whose Request-Id is not among ids.
func replyLogLines(t *testing.T, logPath, peer, result string, ids []string) []map[string]any {
	t.Helper()
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) != nil || l["msg"] != "asynchronous reply" || l["peer"] != peer || l["result"] != result {
			continue
		}
		if id, _ := l["request_id"].(string); !slices.Contains(ids, id) {
			t.Errorf("log line for an unknown Request-Id: %v", l)
		}
		lines = append(lines, l)
	}
	return lines
}

// faultyCallback is a peer's callback endpoint whose answer to each POST
// the test chooses, and which records every POST by Request-Id.
type faultyCallback struct {
	*httptest.Server
	url string // the callback URL (prefix) for the edge: the server's /cb/
	// answer is the status for id's n-th POST (from 0); 0 holds the POST
	// without an answer until the edge gives up on it (or the test ends).
	answer  func(id string, n int) int
	release chan struct{}

	mu    sync.Mutex
	posts map[string][]*callbackPost
}

type callbackPost struct {
	status   int  // 0: never answered
	ended    bool // answered, or let go by the edge
	at, end  time.Time
	contents string // what the body is: "fulfill" or a Reject's code
}

// startFaultyCallback starts a faultyCallback on addr, or on a port of
// its own for "".
func startFaultyCallback(t *testing.T, addr string, answer func(id string, n int) int) *faultyCallback {
	t.Helper()
	c := &faultyCallback{answer: answer, release: make(chan struct{}), posts: map[string][]*callbackPost{}}
	c.Server = httptest.NewUnstartedServer(http.HandlerFunc(c.serve))
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Listener.Close()
		c.Listener = ln
	}
	c.Start()
	c.url = c.URL + "/cb/"
	t.Cleanup(c.Close)
	t.Cleanup(func() { close(c.release) }) // first: Close waits for the POSTs held
	return c
}

func (c *faultyCallback) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id := r.Header.Get("Request-Id")
	c.mu.Lock()
	p := &callbackPost{at: time.Now(), status: c.answer(id, len(c.posts[id])),
		contents: answerOf(&http.Response{StatusCode: http.StatusOK}, body)}
	c.posts[id] = append(c.posts[id], p)
	c.mu.Unlock()
	if p.status == 0 {
		select {
		case <-r.Context().Done(): // the edge let go
		case <-c.release:
		}
	} else {
		w.WriteHeader(p.status)
	}
	c.mu.Lock()
	p.ended, p.end = true, time.Now()
	c.mu.Unlock()
}

// callbackTally is what reached a faultyCallback for a set of ids.
type callbackTally struct {
	posts             int         // POSTs for the ids
	byStatus          map[int]int // their answers (0: none)
	fewest, most      int         // POSTs per id
	missing           int         // ids without a POST
	taken, twice      int         // ids answered 2xx once, more than once
	afterTaken        int         // POSTs after an id's first 2xx
	held              int         // POSTs held now
	firstEnd, lastEnd time.Time   // when the first and last POST ended
	stray             int         // POSTs for other ids
}

func (c *faultyCallback) tally(ids []string) callbackTally {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := callbackTally{byStatus: map[int]int{}, fewest: -1}
	for _, id := range ids {
		ps := c.posts[id]
		s.posts += len(ps)
		if s.fewest < 0 || len(ps) < s.fewest {
			s.fewest = len(ps)
		}
		s.most = max(s.most, len(ps))
		if len(ps) == 0 {
			s.missing++
		}
		ok := 0
		for _, p := range ps {
			s.byStatus[p.status]++
			if ok > 0 {
				s.afterTaken++
			}
			if p.status/100 == 2 {
				ok++
			}
			if !p.ended {
				s.held++
				continue
			}
			if s.firstEnd.IsZero() || p.end.Before(s.firstEnd) {
				s.firstEnd = p.end
			}
			if p.end.After(s.lastEnd) {
				s.lastEnd = p.end
			}
		}
		switch {
		case ok == 1:
			s.taken++
		case ok > 1:
			s.twice++
		}
	}
	for id, ps := range c.posts {
		if !slices.Contains(ids, id) {
			s.stray += len(ps)
		}
	}
	return s
}

// peeredInstance is an ilp-connector 23 instance (js/connector.js) whose
// account "peer" (relation peer: CCP) takes what the edge forwards from a
// peer at peerAddr, with its admin API on admin.
type peeredInstance struct {
	*process
	peerAddr string
	admin    int
}

// startPeeredInstances starts n instances that send to the peer's own
// server at peerURL directly, all at once (each takes a second or two to
// start), and waits until each listens.
func startPeeredInstances(t *testing.T, n int, peerURL string) []peeredInstance {
	t.Helper()
	instances := make([]peeredInstance, n)
	ports := make([][]int, n)
	for i := range instances {
		// The account "up" is unused: nothing needs to listen on its port.
		port, fromPeer, admin := freePort(t), freePort(t), freePort(t)
		ports[i] = []int{port, fromPeer, admin}
		instances[i] = peeredInstance{
			process: start(t, "node", "js/connector.js", "--port", fmt.Sprint(port), "--token", connToken,
				"--up-port", fmt.Sprint(freePort(t)), "--up-token", connToken,
				"--peer-port", fmt.Sprint(fromPeer), "--peer-url", peerURL, "--peer-token", connToken,
				"--admin-port", fmt.Sprint(admin)),
			peerAddr: fmt.Sprintf("127.0.0.1:%d", fromPeer),
			admin:    admin,
		}
	}
	for i, in := range instances {
		in.waitReady(t)
		for _, p := range ports[i] {
			waitListening(t, in.process, p)
		}
	}
	return instances
}

// eventually polls cond every 20 ms until it holds or within is up, and
// reports whether it held: for a wait whose failure the test reports
// with its counts.
func eventually(within time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(within); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// since is when t was relative to ref, to the millisecond, or "never"
// for a zero t.
func since(ref, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Sub(ref).Round(time.Millisecond).String()
}

// countAnswered counts the ids with at least one reply.
func countAnswered(replies map[string][]string, ids []string) int {
	n := 0
	for _, id := range ids {
		if len(replies[id]) > 0 {
			n++
		}
	}
	return n
}
