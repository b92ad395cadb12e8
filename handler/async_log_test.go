package handler

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap/zapcore"
)

// TestAsyncPlaceholders: {http.ilp.mode} and {http.ilp.request_id} say
// how the peer gets its reply, for the access log of the request and
// for the forwarder, which sees the exchange's own request past the 202.
func TestAsyncPlaceholders(t *testing.T) {
	cb, posts := peerCallback(t, http.StatusOK)
	e := asyncEdge(t, cb.URL, nil)
	const format = "{http.ilp.mode}|{http.ilp.request_id}|{http.ilp.peer}"
	forwarded := make(chan string, 1)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		forwarded <- r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).ReplaceAll(format, "-")
		return fulfill(w, r)
	})
	body := prepareBytes("g.us.bank.alice", time.Minute)
	for _, c := range []struct {
		name string
		r    *http.Request
		want string
	}{
		{"async", asyncRequest(body, strings.ToUpper(aliceID), cb.URL+"/cb/"), "async|" + aliceID + "|alice"},
		{"sync", newRequest(http.MethodPost, body, "Authorization", "Bearer "+aliceToken), "sync|-|alice"}, // "-": empty
	} {
		if _, err := serve(t, e, c.r, next); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := c.r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).ReplaceAll(format, "-"); got != c.want {
			t.Errorf("%s: the request's placeholders %s, want %s", c.name, got, c.want)
		}
		if got := <-forwarded; got != c.want {
			t.Errorf("%s: the forwarder's placeholders %s, want %s", c.name, got, c.want)
		}
	}
	nextPost(t, posts)
}

// TestAsyncReplyLogged: each finished exchange is one line in the edge's
// log, since the access log's line went out with the 202: Debug when the
// callback took the reply, Info when it refused it, at most once a
// second per peer and result. No line shows the edge's credential or
// the callback URL's query.
func TestAsyncReplyLogged(t *testing.T) {
	for _, c := range []struct {
		status int
		level  zapcore.Level
		lines  int
		result string
	}{
		{http.StatusOK, zapcore.DebugLevel, 3, "delivered"},
		{http.StatusNotFound, zapcore.InfoLevel, 1, "refused"},
	} {
		cb, _ := peerCallback(t, c.status)
		e, logs := asyncEdgeLogs(t, cb.URL, nil)
		for i := range 3 {
			id := strings.Replace(aliceID, "1b4e", fmt.Sprintf("1b4%d", i), 1)
			r := asyncRequest(prepareBytes("g.us.bank.alice", time.Minute), id, cb.URL+"/cb/node-1?key=peer-secret")
			if w, err := serve(t, e, r, &countingBackend{}); err != nil || w.Code != http.StatusAccepted {
				t.Fatalf("HTTP %d, %v; want 202", w.Code, err)
			}
		}
		waitExchangesEnded(t, e)
		lines := logs.FilterMessage("asynchronous reply").All()
		if len(lines) != c.lines {
			t.Fatalf("%s: %d lines for 3 exchanges, want %d", c.result, len(lines), c.lines)
		}
		l := lines[0]
		f := l.ContextMap()
		if l.Level != c.level || f["peer"] != "alice" || f["result"] != c.result || f["status"] != int64(c.status) ||
			f["attempts"] != int64(1) || f["duration"].(time.Duration) <= 0 || f["callback"] != cb.URL+"/cb/node-1" ||
			!strings.HasPrefix(f["request_id"].(string), "1b4") {
			t.Errorf("%s: logged %v %v", c.result, l.Level, f)
		}
		for k, v := range f {
			if s := fmt.Sprint(v); strings.Contains(s, "peer-secret") || strings.Contains(s, "edge-to-alice") {
				t.Errorf("%s: %s shows a secret: %s", c.result, k, s)
			}
		}
	}
}

// waitExchangesEnded waits until e has no asynchronous exchange in
// flight: each has logged how it ended.
func waitExchangesEnded(t *testing.T, e *Edge) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); e.inFlight.Count() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d exchanges still in flight after 10 s", e.inFlight.Count())
		}
	}
}
