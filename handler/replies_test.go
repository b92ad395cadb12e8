package handler

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/ilp-edge/caddy-ilp/async"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestRepliesRoute: ilp_edge with replies takes an authenticated peer's
// reply to the exchange of that peer waiting under its Request-Id (200),
// refuses every other POST (401, 413, 400), and never calls the next
// handler, even for a Prepare with a Request-Id from an asynchronous peer.
func TestRepliesRoute(t *testing.T) {
	e, _ := testEdge(t, func(e *Edge) {
		e.Replies = true
		e.Peers[2].Mode, e.Peers[2].URL = ModeAsync, "https://carol.example/cb"
	})
	next := &backend{}
	waiting := async.Pending.Register(t.Context(), nil, "alice", ilptest.Condition(), time.Now().Add(time.Minute))
	defer async.Pending.Unregister(waiting)
	id := string(waiting.ID())
	fulfill := ilptest.Fulfill([]byte("alice's"))
	post := func(body []byte, headers ...string) error {
		_, err := serve(t, e, newRequest(http.MethodPost, body, headers...), next)
		return err
	}
	alice := func(id string) []string { return []string{"Authorization", "Bearer " + aliceToken, "Request-Id", id} }

	wantStatus(t, post(fulfill, "Request-Id", id), http.StatusUnauthorized)
	wantStatus(t, post(fulfill, alice("not-an-id")...), http.StatusBadRequest)
	wantStatus(t, post(make([]byte, DefaultMaxPacketSize+1), alice(id)...), http.StatusRequestEntityTooLarge)
	wantStatus(t, post([]byte("hello"), alice(id)...), http.StatusBadRequest)
	wantStatus(t, post(ilptest.Prepare("g.x", time.Minute), alice(id)...), http.StatusBadRequest)
	wantStatus(t, post(fulfill, alice(string(async.NewRequestID()))...), http.StatusBadRequest)
	// carol is an asynchronous peer: with a Request-Id her POST would be a
	// Prepare anywhere else. Here it is a reply, and not for her.
	wantStatus(t, post(fulfill, "Authorization", "Bearer "+carolRaw, "Request-Id", id), http.StatusBadRequest)

	w, err := serve(t, e, newRequest(http.MethodPost, fulfill, alice(id)...), next)
	if err != nil || w.Code != http.StatusOK {
		t.Fatalf("alice's reply: HTTP %d, %v; want 200", w.Code, err)
	}
	if a := <-waiting.Reply(); a.Result != async.CallbackDelivered || !bytes.Equal(a.Body, fulfill) {
		t.Errorf("the exchange got %s %x, want alice's Fulfill", a.Result, a.Body)
	}
	wantStatus(t, post(fulfill, alice(id)...), http.StatusBadRequest) // already answered
	if next.calls != 0 {
		t.Errorf("the next handler was called %d times, want never", next.calls)
	}
}

// TestRepliesCaddyfile: `replies` takes no argument.
func TestRepliesCaddyfile(t *testing.T) {
	e := new(Edge)
	if err := e.UnmarshalCaddyfile(caddyfile.NewTestDispenser("ilp_edge {\n address g.edge\n replies\n}")); err != nil || !e.Replies {
		t.Errorf("replies: %v, Replies %v", err, e.Replies)
	}
	if err := new(Edge).UnmarshalCaddyfile(caddyfile.NewTestDispenser("ilp_edge {\n address g.edge\n replies yes\n}")); err == nil {
		t.Error("replies yes: parsed, want an error")
	}
}

// TestAsyncPeerTheEdgeOnlySendsTo: a peer with mode async and a url, but
// no callback URL of its own, is one the edge only sends to: its config
// is accepted, its replies are taken, and a Prepare of its own with a
// Callback-Url is refused (400: no callback URL is allowed for it),
// never forwarded.
func TestAsyncPeerTheEdgeOnlySendsTo(t *testing.T) {
	e, _ := testEdge(t, func(e *Edge) {
		e.Replies = true
		e.Peers[2].Mode, e.Peers[2].EgressURL = ModeAsync, "https://carol.example/ilp"
	})
	waiting := async.Pending.Register(t.Context(), nil, "carol", ilptest.Condition(), time.Now().Add(time.Minute))
	defer async.Pending.Unregister(waiting)
	carol := func(id string) []string {
		return []string{"Authorization", "Bearer " + carolRaw, "Request-Id", id, "Callback-Url", "https://carol.example/cb"}
	}
	next := &backend{}
	if w, err := serve(t, e, newRequest(http.MethodPost, ilptest.Fulfill(nil), carol(string(waiting.ID()))...), next); err != nil || w.Code != http.StatusOK {
		t.Fatalf("carol's reply: HTTP %d, %v; want 200", w.Code, err)
	}

	e2, _ := testEdge(t, func(e *Edge) { e.Peers[2].Mode, e.Peers[2].EgressURL = ModeAsync, "https://carol.example/ilp" })
	_, err := serve(t, e2, newRequest(http.MethodPost, ilptest.Prepare("g.x.y", time.Minute), carol(string(async.NewRequestID()))...), next)
	wantStatus(t, err, http.StatusBadRequest)
	if next.calls != 0 {
		t.Errorf("forwarded %d packets, want none", next.calls)
	}
	d := caddyfile.NewTestDispenser("peer carol {\n token t\n mode async\n url https://carol.example/ilp\n}")
	d.Next()
	if _, err := unmarshalPeer(d); err != nil {
		t.Errorf("mode async with a url and no callback URL: %v", err)
	}
	d = caddyfile.NewTestDispenser("peer carol {\n token t\n mode async\n}")
	d.Next()
	if _, err := unmarshalPeer(d); err == nil {
		t.Error("mode async with neither a url nor a callback URL: accepted")
	}
}
