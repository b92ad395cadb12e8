package egress

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/ilp-edge/caddy-ilp/async"
	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// Credentials of the draft 3 tests: bob's and carol's toward the edge
// (their replies by callback), the edge's toward bob.
const (
	bobIn   = "bob-in"
	carolIn = "carol-in"
)

// draft3Peer is an RFC 35 draft 3 receiver written from the draft's text:
// a Prepare POSTed with a Request-Id (a version 4 UUID) and a Callback-Url
// gets 202 Accepted, and its reply is POSTed later to the Callback-Url
// with the same Request-Id and the peer's own credential. It processes a
// Request-Id once: a replay gets 202 and no second reply.
type draft3Peer struct {
	srv *httptest.Server
	t   *testing.T

	mu        sync.Mutex
	fails     int    // answer this many Prepares 503 first
	refuse    int    // answer every Prepare this status instead of 202 (0: none)
	replies   int    // how many times to POST the reply (0: never)
	token     string // the peer's credential toward the edge's callback route
	reply     func(prepare []byte) []byte
	ids       []string      // the Request-Id of each Prepare POSTed, in order
	headers   []http.Header // and its header
	prepares  [][]byte      // and its body
	processed map[string]bool
	callbacks chan int // the callback route's answer to each reply POSTed
}

func startDraft3Peer(t *testing.T, replies int, reply func(prepare []byte) []byte) *draft3Peer {
	p := &draft3Peer{t: t, replies: replies, token: bobIn, reply: reply, processed: map[string]bool{}, callbacks: make(chan int, 16)}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *draft3Peer) serve(w http.ResponseWriter, r *http.Request) {
	prepare, _ := io.ReadAll(r.Body)
	id, callback := r.Header.Get("Request-Id"), r.Header.Get("Callback-Url")
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ids = append(p.ids, id)
	p.headers = append(p.headers, r.Header.Clone())
	p.prepares = append(p.prepares, prepare)
	if _, err := async.ParseRequestID(id); err != nil || callback == "" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if p.fails > 0 {
		p.fails--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if p.refuse != 0 {
		w.WriteHeader(p.refuse)
		return
	}
	if p.processed[id] {
		w.WriteHeader(http.StatusAccepted) // a replay: accepted, not processed again
		return
	}
	p.processed[id] = true
	w.WriteHeader(http.StatusAccepted)
	body, token := p.reply(prepare), p.token
	for range p.replies {
		go func() {
			// After the 202 has gone, as a peer's connector would answer.
			time.Sleep(20 * time.Millisecond)
			p.callbacks <- postReply(p.t, callback, id, token, body)
		}()
	}
}

// postReply POSTs a reply to the callback route as a draft 3 peer does,
// and returns the route's status.
func postReply(t *testing.T, url, id, token string, body []byte) int {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Request-Id", id)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("POST to the callback: %v", err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// lastID is the Request-Id of the last Prepare the peer got.
func (p *draft3Peer) lastID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ids[len(p.ids)-1]
}

func (p *draft3Peer) set(f func(p *draft3Peer)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

// callbackStatus waits for the callback route's answer to the peer's next
// reply.
func (p *draft3Peer) callbackStatus(t *testing.T) int {
	t.Helper()
	select {
	case s := <-p.callbacks:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("the peer POSTed no reply")
		return 0
	}
}

// repliesEdge is the edge of startRepliesRoute, to call in process.
func repliesEdge(t testing.TB) *handler.Edge {
	t.Helper()
	return provisioned(t, &handler.Edge{Address: "test.edge", Replies: true, Peers: []*handler.Peer{
		{Name: "bob", Tokens: []string{bobIn}}, {Name: "carol", Tokens: []string{carolIn}}}})
}

// startRepliesRoute serves a real ilp_edge with `replies` that knows bob
// and carol by their credentials toward it: the callback route.
func startRepliesRoute(t *testing.T) *httptest.Server {
	t.Helper()
	e := repliesEdge(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
		caddyhttp.NewTestReplacer(r)
		next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
			t.Error("the replies route called the next handler")
			return nil
		})
		if err := e.ServeHTTP(w, r, next); err != nil {
			if he, ok := errors.AsType[caddyhttp.HandlerError](err); ok {
				w.WriteHeader(he.StatusCode)
				return
			}
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// asyncSetup is an edge for the fleet, ilp_egress toward bob (mode async)
// and the callback route.
type asyncSetup struct {
	edge    *handler.Edge
	egress  *Egress
	peer    *draft3Peer
	replies *httptest.Server
}

func newAsyncSetup(t *testing.T, replies int, reply func([]byte) []byte) *asyncSetup {
	t.Helper()
	peer := startDraft3Peer(t, replies, reply)
	s := asyncSetupTo(t, peer.srv.URL+"/ilp")
	s.peer = peer
	return s
}

// asyncSetupTo is the fleet's edge, ilp_egress toward bob (mode async) at
// url, and the callback route.
func asyncSetupTo(t *testing.T, url string) *asyncSetup {
	t.Helper()
	s := &asyncSetup{edge: testEdge(t), replies: startRepliesRoute(t)}
	c := bob(url)
	c.Mode = handler.ModeAsync
	s.egress = &Egress{CallbackURL: s.replies.URL + "/ilp/replies"}
	ctx, cancel := caddy.NewContext(caddy.ActiveContext())
	t.Cleanup(cancel)
	if err := s.egress.provision(ctx, []*handler.Peer{c}); err != nil {
		t.Fatal(err)
	}
	s.egress.logger = zaptest.NewLogger(t)
	t.Cleanup(func() { s.egress.Cleanup() })
	t.Cleanup(func() {
		if n := async.Pending.Len(); n != 0 {
			t.Errorf("%d exchanges still waiting after the test", n)
		}
	})
	return s
}

func (s *asyncSetup) send(t *testing.T, ttl time.Duration) (result, []byte) {
	t.Helper()
	prepare := ilptest.Prepare("g.bob.alice", ttl)
	return send(t, s.edge, s.egress, "/peers/bob/", prepare), prepare
}

func fulfillFor([]byte) []byte { return ilptest.Fulfill([]byte("from bob by callback")) }

// TestAsyncEgressRelaysFulfill: the Prepare goes to the draft 3 peer with
// a fresh Request-Id, the callback URL, Prefer: respond-async, the content
// type and the edge's credential; the Fulfill the peer POSTs to the
// callback route reaches the connector byte for byte, and the callback
// gets 200.
func TestAsyncEgressRelaysFulfill(t *testing.T) {
	s := newAsyncSetup(t, 1, fulfillFor)
	delivered := testutil.ToFloat64(metricPackets.WithLabelValues("bob", "fulfill"))
	var ids []string
	for range 2 {
		res, prepare := s.send(t, ttl)
		if res.err != nil || res.w.Code != http.StatusOK || !bytes.Equal(res.w.Body.Bytes(), fulfillFor(nil)) {
			t.Fatalf("HTTP %d %x, %v (egress: %v); want bob's Fulfill", res.w.Code, res.w.Body.Bytes(), res.err, res.egressErr)
		}
		if st := s.peer.callbackStatus(t); st != http.StatusOK {
			t.Errorf("the callback route answered the reply %d, want 200", st)
		}
		s.peer.mu.Lock()
		h := s.peer.headers[len(s.peer.headers)-1]
		s.peer.mu.Unlock()
		if h.Get("Callback-Url") != s.replies.URL+"/ilp/replies" || h.Get("Prefer") != "respond-async" ||
			h.Get("Authorization") != "Bearer edge-to-bob" || h.Get("Content-Type") != "application/octet-stream" ||
			h.Get("Ilp-Destination") != "g.bob.alice" {
			t.Errorf("the Prepare's header: %v", h)
		}
		// A version 4 UUID in its lower-case text form.
		if id, err := async.ParseRequestID(s.peer.lastID()); err != nil || string(id) != s.peer.lastID() {
			t.Errorf("Request-Id %q: %v", s.peer.lastID(), err)
		}
		if s.peer.mu.Lock(); !bytes.Equal(s.peer.prepares[len(s.peer.prepares)-1], prepare) {
			t.Error("the peer got other bytes than the Prepare's")
		}
		s.peer.mu.Unlock()
		ids = append(ids, s.peer.lastID())
		if res.egressRequestID != s.peer.lastID() {
			t.Errorf("{http.ilp.egress_request_id} %q, want the Request-Id sent, %q", res.egressRequestID, s.peer.lastID())
		}
	}
	if ids[0] == ids[1] {
		t.Errorf("two Prepares went with one Request-Id %s", ids[0])
	}
	if got := testutil.ToFloat64(metricPackets.WithLabelValues("bob", "fulfill")) - delivered; got != 2 {
		t.Errorf("caddy_ilp_egress_packets_total{result=fulfill} went up by %v, want 2", got)
	}
}

// TestAsyncEgressRelaysReject: a Reject by callback is the peer's, relayed
// as it is.
func TestAsyncEgressRelaysReject(t *testing.T) {
	reject := ilptest.Reject("F02", "g.bob", "unreachable")
	s := newAsyncSetup(t, 1, func([]byte) []byte { return reject })
	res, _ := s.send(t, ttl)
	if res.err != nil || res.w.Code != http.StatusOK || !bytes.Equal(res.w.Body.Bytes(), reject) {
		t.Fatalf("HTTP %d %x, %v; want bob's Reject", res.w.Code, res.w.Body.Bytes(), res.err)
	}
	if st := s.peer.callbackStatus(t); st != http.StatusOK {
		t.Errorf("the callback route answered %d, want 200", st)
	}
}

// TestAsyncEgressReplyTwice: the first reply wins; the second gets 400
// and the connector got one answer.
func TestAsyncEgressReplyTwice(t *testing.T) {
	s := newAsyncSetup(t, 2, fulfillFor)
	// The waiting exchange takes its reply and returns; whichever reply
	// comes after, while it is still registered or after, is refused.
	res, _ := s.send(t, ttl)
	if res.err != nil || !bytes.Equal(res.w.Body.Bytes(), fulfillFor(nil)) {
		t.Fatalf("HTTP %d %x, %v; want bob's Fulfill", res.w.Code, res.w.Body.Bytes(), res.err)
	}
	got := []int{s.peer.callbackStatus(t), s.peer.callbackStatus(t)}
	if !(got[0] == 200 && got[1] == 400 || got[0] == 400 && got[1] == 200) {
		t.Errorf("the callback route answered the two replies %v, want one 200 and one 400", got)
	}
}

// TestAsyncEgressAlreadyAnswered: a second reply while the exchange is
// still registered is AlreadyAnswered, and only the first reaches it.
func TestAsyncEgressAlreadyAnswered(t *testing.T) {
	w := async.Pending.Register(t.Context(), nil, "bob", ilptest.Condition(), time.Now().Add(time.Minute))
	defer async.Pending.Unregister(w)
	srv := startRepliesRoute(t)
	first, second := ilptest.Fulfill([]byte("first")), ilptest.Reject("F99", "g.bob", "second")
	if st := postReply(t, srv.URL, string(w.ID()), bobIn, first); st != http.StatusOK {
		t.Fatalf("first reply: %d, want 200", st)
	}
	if st := postReply(t, srv.URL, string(w.ID()), bobIn, second); st != http.StatusBadRequest {
		t.Errorf("second reply: %d, want 400", st)
	}
	if a := <-w.Reply(); !bytes.Equal(a.Body, first) {
		t.Errorf("the exchange got %x, want the first reply", a.Body)
	}
	select {
	case a := <-w.Reply():
		t.Errorf("the exchange got a second reply %x", a.Body)
	default:
	}
}

// TestAsyncEgressCallbackRefusals: a reply for an id nobody waits for, a
// reply by another peer for bob's id (which leaves bob's exchange
// waiting for bob's), no valid Request-Id, not ILP, or without the
// peer's credential: 400 (401), and bob's exchange still gets bob's reply.
func TestAsyncEgressCallbackRefusals(t *testing.T) {
	s := newAsyncSetup(t, 0, fulfillFor) // the test POSTs bob's reply
	done := make(chan result, 1)
	go func() {
		res, _ := s.send(t, ttl)
		done <- res
	}()
	var id string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s.peer.mu.Lock()
		n := len(s.peer.ids)
		s.peer.mu.Unlock()
		if n > 0 {
			id = s.peer.lastID()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bob got no Prepare")
		}
	}
	url, fulfill := s.replies.URL+"/ilp/replies", fulfillFor(nil)
	for _, c := range []struct {
		name, id, token string
		body            []byte
		want            int
	}{
		{"unknown id", string(async.NewRequestID()), bobIn, fulfill, 400},
		{"another peer's reply for bob's id", id, carolIn, ilptest.Fulfill([]byte("carol's")), 400},
		{"no Request-Id", "", bobIn, fulfill, 400},
		{"not a version 4 UUID", "1", bobIn, fulfill, 400},
		{"not ILP", id, bobIn, []byte("hello"), 400},
		{"a Prepare", id, bobIn, ilptest.Prepare("g.x", ttl), 400},
		{"no credential", id, "wrong", fulfill, 401},
	} {
		if st := postReply(t, url, c.id, c.token, c.body); st != c.want {
			t.Errorf("%s: %d, want %d", c.name, st, c.want)
		}
	}
	if st := postReply(t, url, id, bobIn, fulfill); st != http.StatusOK {
		t.Errorf("bob's reply: %d, want 200", st)
	}
	res := <-done
	if res.err != nil || !bytes.Equal(res.w.Body.Bytes(), fulfill) {
		t.Errorf("HTTP %d %x, %v; want bob's own Fulfill", res.w.Code, res.w.Body.Bytes(), res.err)
	}
}

// TestAsyncEgressNeverReplies: no reply by the packet's expiry is R00; by
// max_hold, before it, T00.
func TestAsyncEgressNeverReplies(t *testing.T) {
	s := newAsyncSetup(t, 0, fulfillFor)
	start := time.Now()
	res, _ := s.send(t, 1500*time.Millisecond)
	res.wantReject(t, "R00")
	res.wantFailure(t, handler.TimedOut)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("R00 after %v: want it at the packet's expiry", d)
	}
	s.edge = &handler.Edge{Address: "test.edge", MaxHold: caddy.Duration(time.Second),
		Peers: []*handler.Peer{{Name: "fleet", Tokens: []string{fleetToken}}}}
	ctx, cancel := caddy.NewContext(caddy.ActiveContext())
	defer cancel()
	if err := s.edge.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	res, _ = s.send(t, ttl)
	res.wantReject(t, "T00")
	res.wantFailure(t, handler.TimedOut)
}

// TestAsyncEgressRetries5xx: a Prepare answered 503 is sent again with
// the same Request-Id, until a 202; its reply is relayed.
func TestAsyncEgressRetries5xx(t *testing.T) {
	s := newAsyncSetup(t, 1, fulfillFor)
	s.peer.set(func(p *draft3Peer) { p.fails = 2 })
	res, _ := s.send(t, ttl)
	if res.err != nil || !bytes.Equal(res.w.Body.Bytes(), fulfillFor(nil)) {
		t.Fatalf("HTTP %d %x, %v (egress: %v); want bob's Fulfill", res.w.Code, res.w.Body.Bytes(), res.err, res.egressErr)
	}
	s.peer.mu.Lock()
	ids := append([]string(nil), s.peer.ids...)
	s.peer.mu.Unlock()
	if len(ids) != 3 || ids[0] != ids[1] || ids[1] != ids[2] {
		t.Errorf("Request-Ids of the tries %v: want three, one id", ids)
	}
	s.peer.callbackStatus(t)
}

// TestAsyncEgressRetriesUnanswered: a peer that cannot be reached is tried
// again until little time is left before the deadline, then T01: nothing
// was sent.
func TestAsyncEgressRetriesUnanswered(t *testing.T) {
	s := newAsyncSetup(t, 1, fulfillFor)
	p := s.egress.peers["bob"]
	dead := ilptest.DeadAddress(t)
	var dials atomic.Int32
	p.transport.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, dead)
	}
	res, _ := s.send(t, 1500*time.Millisecond)
	res.wantReject(t, "T01")
	res.wantFailure(t, handler.NotDelivered)
	if n := dials.Load(); n < 3 {
		t.Errorf("%d dials, want the Prepare tried again until its deadline", n)
	}
}

// TestAsyncEgress4xx: a Prepare the peer refuses (400) is T00 at once, not
// sent again.
func TestAsyncEgress4xx(t *testing.T) {
	s := newAsyncSetup(t, 1, fulfillFor)
	s.peer.set(func(p *draft3Peer) { p.refuse = http.StatusBadRequest })
	start := time.Now()
	res, _ := s.send(t, ttl)
	res.wantReject(t, "T00")
	if d := time.Since(start); d > time.Second {
		t.Errorf("T00 after %v: want it at once", d)
	}
	s.peer.mu.Lock()
	defer s.peer.mu.Unlock()
	if len(s.peer.ids) != 1 {
		t.Errorf("the peer got %d tries, want 1", len(s.peer.ids))
	}
}

// TestAsyncEgressBadFulfillment: a Fulfill whose fulfillment does not
// hash to the Prepare's condition never reaches the connector: T00, and
// the callback is told 400.
func TestAsyncEgressBadFulfillment(t *testing.T) {
	bad := ilpdest.AppendFulfill(nil, bytes.Repeat([]byte{7}, 32), []byte("forged"))
	s := newAsyncSetup(t, 1, func([]byte) []byte { return bad })
	res, _ := s.send(t, ttl)
	res.wantReject(t, "T00")
	res.wantFailure(t, handler.BadReply)
	if st := s.peer.callbackStatus(t); st != http.StatusBadRequest {
		t.Errorf("the callback route answered the bad fulfillment %d, want 400", st)
	}
}

// TestAsyncEgressNeedsCallbackURL: a peer with mode async and a url needs
// callback_url, which must be an absolute http(s) URL.
func TestAsyncEgressNeedsCallbackURL(t *testing.T) {
	c := bob("http://bob.example/ilp")
	c.Mode = handler.ModeAsync
	for _, u := range []string{"", "/relative", "ftp://edge.example/", "https://u:p@edge.example/"} {
		g := &Egress{CallbackURL: u}
		ctx, cancel := caddy.NewContext(caddy.ActiveContext())
		if err := g.provision(ctx, []*handler.Peer{c}); err == nil {
			t.Errorf("callback_url %q: provisioned, want an error", u)
		}
		cancel()
	}
}
