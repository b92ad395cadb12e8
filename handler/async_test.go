package handler

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/go-jose/go-jose/v4"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
	"github.com/ilp-edge/caddy-ilp/internal/redistest"
	"github.com/ilp-edge/caddy-ilp/store"
)

const aliceID = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"

// callbackPost is one reply the edge POSTed to a peer's callback URL.
type callbackPost struct {
	path, requestID, auth, contentType string
	body                               []byte
	cert                               string // over TLS, the name in the client certificate
}

// peerCallback is a peer's callback endpoint: it answers status and sends
// every POST it gets on posts.
func peerCallback(t *testing.T, status int) (*httptest.Server, chan callbackPost) {
	s, posts := newPeerCallback(status)
	s.Start()
	t.Cleanup(s.Close)
	return s, posts
}

// newPeerCallback is peerCallback's server, not started.
func newPeerCallback(status int) (*httptest.Server, chan callbackPost) {
	posts := make(chan callbackPost, 100)
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		p := callbackPost{path: r.URL.Path, requestID: r.Header.Get("Request-Id"), auth: r.Header.Get("Authorization"),
			contentType: r.Header.Get("Content-Type"), body: body}
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			p.cert = r.TLS.VerifiedChains[0][0].Subject.CommonName
		}
		posts <- p
		w.WriteHeader(status)
	}))
	return s, posts
}

// countingBackend fulfils every packet and counts them; safe to use from
// the goroutines that forward asynchronous Prepares.
type countingBackend struct{ n atomic.Int32 }

func (b *countingBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	b.n.Add(1)
	io.Copy(io.Discard, r.Body)
	return fulfill(w, r)
}

func asyncEdge(t *testing.T, callbackURL string, mod func(*Edge)) *Edge {
	e, _ := testEdge(t, func(e *Edge) {
		e.Peers[0].Prefixes = []string{callbackURL + "/cb/"}
		e.Peers[0].CallbackToken = "edge-to-alice"
		if mod != nil {
			mod(e)
		}
	})
	return e
}

func asyncRequest(body []byte, id, callback string) *http.Request {
	return newRequest(http.MethodPost, body, "Authorization", "Bearer "+aliceToken, "Request-Id", id, "Callback-Url", callback)
}

func nextPost(t *testing.T, posts chan callbackPost) callbackPost {
	t.Helper()
	select {
	case p := <-posts:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no reply POSTed to the callback within 10 s")
		return callbackPost{}
	}
}

func noPost(t *testing.T, posts chan callbackPost) {
	t.Helper()
	select {
	case p := <-posts:
		t.Fatalf("an unexpected POST to the callback: %+v", p)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestAsyncPrepareAnsweredByCallback: a Prepare with a Request-Id and a
// Callback-Url under alice's prefix gets 202 with nothing in it, goes to
// the forwarder as a synchronous one does, and its Fulfill is POSTed to
// the callback with the same Request-Id, the edge's credential for alice
// and the octet-stream type. The same id with the same packet again is
// accepted again and not forwarded again; with another packet, 409.
func TestAsyncPrepareAnsweredByCallback(t *testing.T) {
	cb, posts := peerCallback(t, http.StatusOK)
	e := asyncEdge(t, cb.URL, nil)
	be := &countingBackend{}
	body := prepareBytes("g.us.bank.alice", time.Minute)
	w, err := serve(t, e, asyncRequest(body, strings.ToUpper(aliceID), cb.URL+"/cb/node-1"), be)
	if err != nil || w.Code != http.StatusAccepted || w.Body.Len() != 0 {
		t.Fatalf("HTTP %d %q, %v; want 202 and no body", w.Code, w.Body.Bytes(), err)
	}
	p := nextPost(t, posts)
	if p.path != "/cb/node-1" || p.requestID != aliceID || p.auth != "Bearer edge-to-alice" || p.contentType != "application/octet-stream" {
		t.Errorf("the callback got %+v", p)
	}
	if _, ok := ilptest.FulfillData(p.body); !ok {
		t.Errorf("the callback got %x, want the connector's Fulfill", p.body)
	}
	if n := be.n.Load(); n != 1 {
		t.Fatalf("forwarded %d times", n)
	}

	w, err = serve(t, e, asyncRequest(body, aliceID, cb.URL+"/cb/node-1"), be)
	if err != nil || w.Code != http.StatusAccepted {
		t.Fatalf("a replay: HTTP %d, %v; want 202", w.Code, err)
	}
	noPost(t, posts)
	if n := be.n.Load(); n != 1 {
		t.Errorf("a replay was forwarded: %d packets", n)
	}
	_, err = serve(t, e, asyncRequest(prepareBytes("g.us.bank.other", time.Minute), aliceID, cb.URL+"/cb/node-1"), be)
	wantStatus(t, err, http.StatusConflict)
	if n := be.n.Load(); n != 1 {
		t.Errorf("a conflicting Prepare was forwarded: %d packets", n)
	}

	// Without Request-Id, the same peer is answered synchronously.
	plain := newRequest(http.MethodPost, body, "Authorization", "Bearer "+aliceToken)
	w, err = serve(t, e, plain, be)
	if _, ok := ilptest.FulfillData(w.Body.Bytes()); err != nil || w.Code != http.StatusOK || !ok {
		t.Errorf("a request without Request-Id from the same peer: HTTP %d %x, %v; want the synchronous Fulfill", w.Code, w.Body.Bytes(), err)
	}
}

// TestAsyncRejectsGoByCallback: once a Prepare is accepted, whatever
// becomes of it is a Reject by callback, not an HTTP error: here one
// that expired before it was read (R00 from the edge) and one refused
// by the peer's rate limit (T05).
func TestAsyncRejectsGoByCallback(t *testing.T) {
	cb, posts := peerCallback(t, http.StatusOK)
	e := asyncEdge(t, cb.URL, func(e *Edge) {
		e.Limits = &Limits{Rate: &Budget{Limit: 1, Period: caddy.Duration(time.Hour)}}
	})
	be := &countingBackend{}
	for i, want := range []string{"fulfill", "T05"} {
		id := strings.Replace(aliceID, "1b4e", "1b4"+string(rune('0'+i)), 1)
		if w, err := serve(t, e, asyncRequest(prepareBytes("g.us.bank.alice", time.Minute), id, cb.URL+"/cb/"), be); err != nil || w.Code != http.StatusAccepted {
			t.Fatalf("HTTP %d, %v", w.Code, err)
		}
		p := nextPost(t, posts)
		if got := answerOf(p.body); got != want || p.requestID != id {
			t.Errorf("Prepare %d: %s for %s, want %s", i, got, p.requestID, want)
		}
	}
	expired := ilptest.NewPrepare(ilpdest.Prepare{Amount: 1, Destination: []byte("g.us.bank.alice"), ExpiresAt: time.Now().Add(-time.Second)})
	if w, err := serve(t, e, asyncRequest(expired, "3b4e28ba-2fa1-41d2-883f-0016d3cca427", cb.URL+"/cb/"), be); err != nil || w.Code != http.StatusAccepted {
		t.Fatalf("an expired Prepare: HTTP %d, %v; want 202 (the draft: even if it will be rejected)", w.Code, err)
	}
	if got := answerOf(nextPost(t, posts).body); got != "R00" && got != "R02" {
		t.Errorf("an expired Prepare: %s by callback, want R00 or R02", got)
	}
	if n := be.n.Load(); n != 1 {
		t.Errorf("forwarded %d, want only the first", n)
	}
}

func answerOf(reply []byte) string {
	if _, ok := ilptest.FulfillData(reply); ok {
		return "fulfill"
	}
	code, err := ilpdest.ReadRejectCode(reply)
	if err != nil {
		return "unreadable"
	}
	return code.String()
}

// TestAsyncRefusedBeforeAccepting: what is not a valid asynchronous
// Prepare gets a 4xx, is not forwarded, and makes the edge POST nowhere;
// in particular a Callback-Url outside the peer's policy (SSRF).
func TestAsyncRefusedBeforeAccepting(t *testing.T) {
	cb, posts := peerCallback(t, http.StatusOK)
	other, otherPosts := peerCallback(t, http.StatusOK)
	e := asyncEdge(t, cb.URL, nil)
	be := &countingBackend{}
	body := prepareBytes("g.us.bank.alice", time.Minute)
	for name, tc := range map[string]struct {
		r      *http.Request
		status int
	}{
		"no Request-Id, Prefer respond-async": {newRequest(http.MethodPost, body, "Authorization", "Bearer "+aliceToken,
			"Prefer", "wait=5, respond-async", "Callback-Url", cb.URL+"/cb/"), http.StatusBadRequest},
		"a version 1 UUID":                 {asyncRequest(body, "1b4e28ba-2fa1-11d2-883f-0016d3cca427", cb.URL+"/cb/"), http.StatusBadRequest},
		"a callback on another host":       {asyncRequest(body, aliceID, other.URL+"/cb/"), http.StatusBadRequest},
		"a callback out of its prefix":     {asyncRequest(body, aliceID, cb.URL+"/admin"), http.StatusBadRequest},
		"a callback with dot segments":     {asyncRequest(body, aliceID, cb.URL+"/cb/../admin"), http.StatusBadRequest},
		"no callback, none out of band":    {asyncRequest(body, aliceID, ""), http.StatusBadRequest},
		"not a Prepare":                    {asyncRequest([]byte("not a packet at all"), aliceID, cb.URL+"/cb/"), http.StatusBadRequest},
		"unauthenticated, before anything": {newRequest(http.MethodPost, body, "Authorization", "Bearer nope", "Request-Id", aliceID, "Callback-Url", cb.URL+"/cb/"), http.StatusUnauthorized},
	} {
		_, err := serve(t, e, tc.r, be)
		var he caddyhttp.HandlerError
		if !errors.As(err, &he) || he.StatusCode != tc.status {
			t.Errorf("%s: %v, want HTTP %d", name, err, tc.status)
		}
	}
	noPost(t, posts)
	noPost(t, otherPosts)
	if n := be.n.Load(); n != 0 {
		t.Errorf("%d refused Prepares were forwarded", n)
	}
	if n := e.inFlight.Count(); n != 0 {
		t.Errorf("%d places in flight kept by refused Prepares", n)
	}
}

// TestAsyncInFlightIsBounded: a peer whose Prepares wait on a stalled
// connector gets 429 past its bound, before anything is accepted; each
// accepted one still gets its reply once the connector answers.
func TestAsyncInFlightIsBounded(t *testing.T) {
	cb, posts := peerCallback(t, http.StatusOK)
	e := asyncEdge(t, cb.URL, func(e *Edge) { e.AsyncMaxInFlightPerPeer = 3 })
	release := make(chan struct{})
	var mu sync.Mutex
	stalled := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		<-release
		mu.Lock()
		defer mu.Unlock()
		return fulfill(w, r)
	})
	for i := range 5 {
		id := strings.Replace(aliceID, "1b4e", "1b4"+string(rune('0'+i)), 1)
		w, err := serve(t, e, asyncRequest(prepareBytes("g.us.bank.alice", time.Minute), id, cb.URL+"/cb/"), stalled)
		if i < 3 && (err != nil || w.Code != http.StatusAccepted) {
			t.Fatalf("Prepare %d: HTTP %d, %v; want 202", i, w.Code, err)
		}
		if i >= 3 {
			wantStatus(t, err, http.StatusTooManyRequests)
			if c := w.Header().Get("Connection"); c != "" {
				t.Errorf("Prepare %d: 429 with Connection: %s; want the connection kept", i, c)
			}
		}
	}
	close(release)
	for range 3 {
		if got := answerOf(nextPost(t, posts).body); got != "fulfill" {
			t.Errorf("%s, want fulfill", got)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); e.inFlight.Count() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d still in flight after their replies", e.inFlight.Count())
		}
	}
	if w, err := serve(t, e, asyncRequest(prepareBytes("g.us.bank.alice", time.Minute), "9b4e28ba-2fa1-41d2-883f-0016d3cca427", cb.URL+"/cb/"), stalled); err != nil || w.Code != http.StatusAccepted {
		t.Errorf("after the replies: HTTP %d, %v; want 202", w.Code, err)
	}
	nextPost(t, posts)
}

// TestAsyncJWTToTheCallback: with callback_jwt_secret the edge signs a
// fresh HS256 JWT, as ilp-plugin-http does, that the peer's own secret
// verifies.
func TestAsyncJWTToTheCallback(t *testing.T) {
	cb, posts := peerCallback(t, http.StatusOK)
	e := asyncEdge(t, cb.URL, func(e *Edge) {
		e.Peers[0].CallbackToken = ""
		e.Peers[0].CallbackJWTSecret = "alice-incoming-secret"
	})
	serve(t, e, asyncRequest(prepareBytes("g.us.bank.alice", time.Minute), aliceID, cb.URL+"/cb/"), &countingBackend{})
	p := nextPost(t, posts)
	token, ok := strings.CutPrefix(p.auth, "Bearer ")
	if !ok {
		t.Fatalf("Authorization %q", p.auth)
	}
	jws, err := parseJWT(token)
	if err != nil {
		t.Fatal(err)
	}
	if _, signed, err := jwtPayload(jws, hmacKey("alice-incoming-secret")); !signed || err != nil {
		t.Errorf("the JWT is not signed with alice's secret: %v", err)
	}
}

// TestCallbackJWTKeptForHalfItsLifetime: the edge's JWT toward a peer
// is signed once and sent with every request for half its lifetime, as
// ilp-plugin-http keeps its own, then signed afresh: iat now, exp a
// minute later.
func TestCallbackJWTKeptForHalfItsLifetime(t *testing.T) {
	// On a clock of the test's own: the package's clock is read by other
	// tests' exchanges still ending.
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: hmacKey("alice-incoming-secret")},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	jwt := &callbackJWT{signer: signer}
	t0 := time.Unix(1_800_000_000, 0)
	claims := func(auth string) (iat, exp int64) {
		t.Helper()
		jws, err := parseJWT(strings.TrimPrefix(auth, "Bearer "))
		if err != nil {
			t.Fatal(err)
		}
		payload, signed, err := jwtPayload(jws, hmacKey("alice-incoming-secret"))
		if !signed || err != nil {
			t.Fatalf("not signed with the peer's secret: %v", err)
		}
		var c struct{ IAT, EXP int64 }
		if err := json.Unmarshal(payload, &c); err != nil {
			t.Fatal(err)
		}
		return c.IAT, c.EXP
	}
	first := jwt.at(t0)
	if iat, exp := claims(first); iat != t0.Unix() || exp != t0.Add(time.Minute).Unix() {
		t.Errorf("iat %d, exp %d; want %d and a minute later", iat, exp, t0.Unix())
	}
	if got := jwt.at(t0.Add(29 * time.Second)); got != first {
		t.Errorf("signed again 29 s after the first, want the same token for half its lifetime")
	}
	half := t0.Add(30 * time.Second)
	renewed := jwt.at(half)
	if iat, _ := claims(renewed); renewed == first || iat != half.Unix() {
		t.Errorf("at half its lifetime: iat %d, want a token signed then (%d)", iat, half.Unix())
	}
}

// TestAsyncModes: sync ignores a Request-Id; async refuses a request
// without one; a peer in mode async needs a callback policy.
func TestAsyncModes(t *testing.T) {
	cb, _ := peerCallback(t, http.StatusOK)
	syncEdge := asyncEdge(t, cb.URL, func(e *Edge) { e.Peers[0].Mode = ModeSync })
	w, err := serve(t, syncEdge, asyncRequest(prepareBytes("g.us.bank.alice", time.Minute), aliceID, cb.URL+"/cb/"), &countingBackend{})
	if _, ok := ilptest.FulfillData(w.Body.Bytes()); err != nil || !ok {
		t.Errorf("mode sync: HTTP %d %x, %v; want the Fulfill in the answer", w.Code, w.Body.Bytes(), err)
	}
	asyncOnly := asyncEdge(t, cb.URL, func(e *Edge) { e.Peers[0].Mode = ModeAsync })
	_, err = serve(t, asyncOnly, newRequest(http.MethodPost, prepareBytes("g.us.bank.alice", time.Minute), "Authorization", "Bearer "+aliceToken), &countingBackend{})
	wantStatus(t, err, http.StatusBadRequest)

	e := &Edge{Address: testAddress, Peers: []*Peer{{Name: "a", Tokens: []string{"t"}, Mode: ModeAsync}}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	if err := e.Provision(ctx); err == nil || !strings.Contains(err.Error(), "callback_url") {
		t.Errorf("mode async without callbacks: %v", err)
	}
	e.Cleanup()
}

// TestAsyncReplayThroughAnotherEdge: two edges on one shared store; a
// Prepare accepted by the first and sent again with its Request-Id
// through the second is accepted (202) and not forwarded again: the peer
// gets one reply. Each edge's own claims would not see the other's.
func TestAsyncReplayThroughAnotherEdge(t *testing.T) {
	r := redistest.Start(t)
	cb, posts := peerCallback(t, http.StatusOK)
	shared := func(e *Edge) { e.Redis = &store.Config{Address: r.Addr, KeyPrefix: t.Name() + ":"} }
	first, second := asyncEdge(t, cb.URL, shared), asyncEdge(t, cb.URL, shared)
	be := &countingBackend{}
	body := prepareBytes("g.us.bank.alice", time.Minute)
	for i, e := range []*Edge{first, second} {
		if w, err := serve(t, e, asyncRequest(body, aliceID, cb.URL+"/cb/"), be); err != nil || w.Code != http.StatusAccepted {
			t.Fatalf("edge %d: HTTP %d, %v; want 202", i, w.Code, err)
		}
	}
	nextPost(t, posts)
	noPost(t, posts)
	if n := be.n.Load(); n != 1 {
		t.Errorf("forwarded %d times through two edges, want once", n)
	}
}

// TestExchangeWorkersNeverQueue: an exchange never waits for another to
// end: with one worker busy (its job waits for the next job), the next
// job starts on another, and every job runs once.
func TestExchangeWorkersNeverQueue(t *testing.T) {
	w := newExchangeWorkers()
	second := make(chan struct{})
	var ran atomic.Int32
	var done sync.WaitGroup
	done.Add(2)
	w.run(func() { defer done.Done(); ran.Add(1); <-second })
	w.run(func() { defer done.Done(); ran.Add(1); close(second) })
	done.Wait()
	done.Add(1)
	w.run(func() { defer done.Done(); ran.Add(1) }) // on a worker waiting, or a new one
	done.Wait()
	if n := ran.Load(); n != 3 {
		t.Errorf("%d jobs ran, want 3", n)
	}
}
