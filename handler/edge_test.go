package handler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// countingReader records whether the handler read the body.
type countingReader struct {
	r    io.Reader
	read int
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.read += n
	return n, err
}

func TestAuthRefused(t *testing.T) {
	e, _ := testEdge(t, nil)
	now := time.Now().Unix()
	for name, auth := range map[string]string{
		"no credentials":         "",
		"unknown token":          "Bearer nope",
		"empty bearer":           "Bearer ",
		"bad JWT signature":      "Bearer " + ilptest.SignJWT("HS256", "wrong-secret", ilptest.PluginClaims(30*time.Second)),
		"expired JWT":            "Bearer " + ilptest.SignJWT("HS256", bobJWT, map[string]any{"iat": now - 60, "exp": now - 10}),
		"JWT not yet valid":      "Bearer " + ilptest.SignJWT("HS256", bobJWT, map[string]any{"exp": now + 60, "nbf": now + 30}),
		"JWT without exp":        "Bearer " + ilptest.SignJWT("HS256", bobJWT, map[string]any{"iat": now}),
		"alg none":               "Bearer " + noneJWT(),
		"RS256 header, HMAC sig": "Bearer " + strings.Replace(ilptest.SignJWT("HS256", bobJWT, ilptest.PluginClaims(time.Minute)), "eyJhbGciOiJIUzI1NiIs", "eyJhbGciOiJSUzI1NiIs", 1),
		"token with other case":  "Bearer " + strings.ToUpper(aliceToken),
		"basic auth":             "Basic " + aliceToken,
	} {
		t.Run(name, func(t *testing.T) {
			body := &countingReader{r: bytes.NewReader(prepareBytes("g.a.b", time.Minute))}
			r := newRequest(http.MethodPost, nil)
			r.Body = io.NopCloser(body)
			if auth != "" {
				r.Header.Set("Authorization", auth)
			}
			be := &backend{}
			w, err := serve(t, e, r, be)
			wantStatus(t, err, http.StatusUnauthorized)
			if got := w.Header().Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("WWW-Authenticate %q", got)
			}
			if body.read != 0 || be.calls != 0 {
				t.Errorf("read %d body bytes, backend called %d times", body.read, be.calls)
			}
		})
	}
}

func noneJWT() string {
	enc := func(s string) string { return strings.TrimRight(base64URL(s), "=") }
	return enc(`{"alg":"none","typ":"JWT"}`) + "." + enc(`{"exp":9999999999}`) + "."
}

func TestAuthAccepted(t *testing.T) {
	e, _ := testEdge(t, nil)
	for name, c := range map[string]struct{ auth, peer string }{
		"bearer token":            {"Bearer " + aliceToken, "alice"},
		"bearer, lower-case":      {"bearer " + aliceToken, "alice"},
		"bearer, upper-case":      {"BEARER " + aliceToken, "alice"},
		"raw legacy token":        {carolRaw, "carol"},
		"HS256 as plugin-http":    {"Bearer " + ilptest.SignJWT("HS256", bobJWT, ilptest.PluginClaims(30*time.Second)), "bob"},
		"HS384":                   {"Bearer " + ilptest.SignJWT("HS384", bobJWT, ilptest.PluginClaims(30*time.Second)), "bob"},
		"HS512":                   {"Bearer " + ilptest.SignJWT("HS512", bobJWT, ilptest.PluginClaims(30*time.Second)), "bob"},
		"raw JWT":                 {ilptest.SignJWT("HS256", bobJWT, ilptest.PluginClaims(30*time.Second)), "bob"},
		"JWT expired within skew": {"Bearer " + ilptest.SignJWT("HS256", bobJWT, map[string]any{"exp": time.Now().Unix()}), "bob"},
	} {
		t.Run(name, func(t *testing.T) {
			r := newRequest(http.MethodPost, prepareBytes("g.a.b", time.Minute), "Authorization", c.auth)
			be := &backend{}
			w, err := serve(t, e, r, be)
			if err != nil || w.Code != 200 || be.calls != 1 {
				t.Fatalf("err %v, status %d, backend calls %d", err, w.Code, be.calls)
			}
			if got := caddyhttp.GetVar(r.Context(), VarPeer); got != c.peer {
				t.Errorf("peer %v, want %s", got, c.peer)
			}
		})
	}
}

func TestJWTCache(t *testing.T) {
	e, _ := testEdge(t, nil)
	tok := ilptest.SignJWT("HS256", bobJWT, ilptest.PluginClaims(30*time.Second))
	for i := 0; i < 2; i++ {
		r := newRequest(http.MethodPost, prepareBytes("g.a.b", time.Minute), "Authorization", "Bearer "+tok)
		if _, err := serve(t, e, r, &backend{}); err != nil {
			t.Fatal(err)
		}
	}
	if p := e.auth.jwtCache.get(tok, time.Now()); p == nil || p.name != "bob" {
		t.Fatalf("verified token not cached: %v", p)
	}
	// Past its exp (plus leeway) the cached token no longer counts.
	if p := e.auth.jwtCache.get(tok, time.Now().Add(time.Minute)); p != nil {
		t.Fatalf("expired token served from cache")
	}
}

func TestJWTWithoutExpAllowed(t *testing.T) {
	e, _ := testEdge(t, func(e *Edge) { e.JWTAllowMissingExp = true })
	tok := ilptest.SignJWT("HS256", bobJWT, map[string]any{"iat": time.Now().Unix()})
	r := newRequest(http.MethodPost, prepareBytes("g.a.b", time.Minute), "Authorization", "Bearer "+tok)
	if w, err := serve(t, e, r, &backend{}); err != nil || w.Code != 200 {
		t.Fatalf("err %v status %d", err, w.Code)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	e, _ := testEdge(t, nil)
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodHead} {
		r := newRequest(m, nil, "Authorization", "Bearer "+aliceToken)
		w, err := serve(t, e, r, &backend{})
		wantStatus(t, err, http.StatusMethodNotAllowed)
		if w.Header().Get("Allow") != "POST" {
			t.Errorf("%s: Allow %q", m, w.Header().Get("Allow"))
		}
	}
}

func TestBodyTooLarge(t *testing.T) {
	e, _ := testEdge(t, func(e *Edge) { e.MaxPacketSize = 1000 })
	big := make([]byte, 5000)
	// Announced length over the limit: refused without reading.
	body := &countingReader{r: bytes.NewReader(big)}
	r := newRequest(http.MethodPost, nil, "Authorization", "Bearer "+aliceToken)
	r.Body, r.ContentLength = io.NopCloser(body), int64(len(big))
	_, err := serve(t, e, r, &backend{})
	wantStatus(t, err, http.StatusRequestEntityTooLarge)
	if body.read != 0 {
		t.Errorf("read %d bytes of a body announced too large", body.read)
	}
	// Unknown length (HTTP/2 clients send none): read up to limit+1 only.
	body = &countingReader{r: bytes.NewReader(big)}
	r = newRequest(http.MethodPost, nil, "Authorization", "Bearer "+aliceToken)
	r.Body, r.ContentLength = io.NopCloser(body), -1
	_, err = serve(t, e, r, &backend{})
	wantStatus(t, err, http.StatusRequestEntityTooLarge)
	if body.read > 1001 {
		t.Errorf("read %d bytes past a 1000-byte limit", body.read)
	}
	// Exactly the limit is fine.
	pkt := ilpdest.AppendPrepare(nil, ilpdest.Prepare{ExpiresAt: time.Now().Add(time.Minute),
		ExecutionCondition: ilptest.Condition(), Destination: []byte("g.a"), Data: make([]byte, 1000-68)})
	if len(pkt) != 1000 {
		t.Fatalf("test packet is %d bytes", len(pkt))
	}
	r = newRequest(http.MethodPost, pkt, "Authorization", "Bearer "+aliceToken)
	r.ContentLength = -1
	be := &backend{}
	if w, err := serve(t, e, r, be); err != nil || w.Code != 200 || !bytes.Equal(be.body, pkt) {
		t.Fatalf("1000-byte packet: err %v status %d", err, w.Code)
	}
}

func TestInvalidPacketGetsF01(t *testing.T) {
	e, _ := testEdge(t, nil)
	good := prepareBytes("g.a.b", time.Minute)
	bad := func(f func([]byte)) []byte { b := bytes.Clone(good); f(b); return b }
	for name, body := range map[string][]byte{
		"empty":          nil,
		"fulfill":        ilpdest.AppendFulfill(nil, ilptest.Fulfillment, nil),
		"text":           []byte("hello"),
		"truncated":      good[:len(good)-2],
		"non-canonical":  append([]byte{12, 0x81}, good[2:]...),
		"bad address":    prepareBytes("g", time.Minute),
		"bad timestamp":  bad(func(b []byte) { b[2+8+4] = '1'; b[2+8+5] = '3' }), // month 13
		"letter in date": bad(func(b []byte) { b[2+8] = 'x' }),
	} {
		t.Run(name, func(t *testing.T) {
			be := &backend{}
			w, err := serve(t, e, newRequest(http.MethodPost, body, "Authorization", "Bearer "+aliceToken), be)
			wantReject(t, w, err, "F01")
			if be.calls != 0 {
				t.Fatal("invalid packet forwarded")
			}
		})
	}
}

func TestDestinationHeaderModes(t *testing.T) {
	body := prepareBytes("g.body.dest.x", time.Minute)
	for _, c := range []struct {
		mode, header, want string
		reject             bool
	}{
		{DestinationTrust, "", "g.body.dest.x", false},
		{DestinationTrust, "g.header.dest", "g.header.dest", false},
		{DestinationTrust, "not an address", "g.body.dest.x", false},
		{DestinationVerify, "g.body.dest.x", "g.body.dest.x", false},
		{DestinationVerify, "", "g.body.dest.x", false},
		{DestinationVerify, "g.header.dest", "", true},
		{DestinationIgnore, "g.header.dest", "g.body.dest.x", false},
	} {
		e, _ := testEdge(t, func(e *Edge) { e.DestinationHeader = c.mode })
		r := newRequest(http.MethodPost, body, "Authorization", "Bearer "+aliceToken)
		if c.header != "" {
			r.Header.Set("ILP-Destination", c.header)
		}
		be := &backend{}
		w, err := serve(t, e, r, be)
		if c.reject {
			wantReject(t, w, err, "F01")
			continue
		}
		if err != nil || be.calls != 1 {
			t.Fatalf("%s/%q: err %v", c.mode, c.header, err)
		}
		if got := caddyhttp.GetVar(r.Context(), VarDestination); got == nil || got.(interface{ String() string }).String() != c.want {
			t.Errorf("%s/%q: destination %v, want %s", c.mode, c.header, got, c.want)
		}
	}
}

func TestExpiryGetsR02(t *testing.T) {
	e, _ := testEdge(t, func(e *Edge) { e.MinExpiryWindow = caddy.Duration(2 * time.Second) })
	for name, ttl := range map[string]time.Duration{"expired": -time.Second, "inside min window": time.Second} {
		be := &backend{}
		w, err := serve(t, e, newRequest(http.MethodPost, prepareBytes("g.a.b", ttl), "Authorization", "Bearer "+aliceToken), be)
		t.Run(name, func(t *testing.T) { wantReject(t, w, err, "R02") })
		if be.calls != 0 {
			t.Errorf("%s: forwarded", name)
		}
	}
}

func TestUpstreamFailures(t *testing.T) {
	e, logs := testEdge(t, nil)
	for _, c := range []struct {
		name   string
		ttl    time.Duration
		answer func(w http.ResponseWriter, r *http.Request) error
		code   string
	}{
		{"dial refused (502)", time.Minute, func(http.ResponseWriter, *http.Request) error {
			return caddyhttp.Error(http.StatusBadGateway, reverseproxy.NewDialError(errors.New("connection refused")))
		}, "T01"},
		{"no upstream (503)", time.Minute, func(http.ResponseWriter, *http.Request) error {
			return caddyhttp.Error(http.StatusServiceUnavailable, errors.New("no upstreams available"))
		}, "T01"},
		{"slower than expiry", 150 * time.Millisecond, func(_ http.ResponseWriter, r *http.Request) error {
			<-r.Context().Done() // reverse_proxy gives up when the context does
			return caddyhttp.Error(http.StatusGatewayTimeout, r.Context().Err())
		}, "R00"},
		{"upstream 500", time.Minute, func(w http.ResponseWriter, _ *http.Request) error {
			w.WriteHeader(500)
			_, _ = w.Write([]byte("Internal Server Error"))
			return nil
		}, "T00"},
		{"upstream 401", time.Minute, func(w http.ResponseWriter, _ *http.Request) error {
			w.WriteHeader(401)
			return nil
		}, "T00"},
		{"200, not ILP", time.Minute, func(w http.ResponseWriter, _ *http.Request) error {
			_, _ = w.Write([]byte("<html>oops</html>"))
			return nil
		}, "T00"},
		{"200, empty", time.Minute, func(w http.ResponseWriter, _ *http.Request) error {
			w.WriteHeader(200)
			return nil
		}, "T00"},
		{"reply broke off", time.Minute, func(w http.ResponseWriter, _ *http.Request) error {
			_, _ = w.Write([]byte{13, 40})
			panic(http.ErrAbortHandler)
		}, "T00"},
		{"reverse_proxy: reset after the request was sent (502)", time.Minute, func(http.ResponseWriter, *http.Request) error {
			return caddyhttp.Error(http.StatusBadGateway, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET})
		}, "T00"},
		{"reverse_proxy: response header timeout (504)", time.Minute, func(http.ResponseWriter, *http.Request) error {
			return caddyhttp.Error(http.StatusGatewayTimeout, &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded})
		}, "T00"},
		{"nothing after ilp_edge answered", time.Minute, func(http.ResponseWriter, *http.Request) error {
			return nil
		}, "T00"},
		{"other error", time.Minute, func(http.ResponseWriter, *http.Request) error {
			return errors.New("boom")
		}, "T00"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, err := serve(t, e, newRequest(http.MethodPost, prepareBytes("g.a.b", c.ttl), "Authorization", "Bearer "+aliceToken), &backend{answer: c.answer})
			wantReject(t, w, err, c.code)
		})
	}
	if n := logs.FilterMessage("edge rejected packet").FilterField(zap.String("peer", "alice")).Len(); n < 5 {
		t.Errorf("%d upstream failures logged", n)
	}
	// A route without a forwarder is a config error, said once at Error.
	serve(t, e, newRequest(http.MethodPost, prepareBytes("g.a.b", time.Minute), "Authorization", "Bearer "+aliceToken), &backend{answer: func(http.ResponseWriter, *http.Request) error { return nil }})
	if n := logs.FilterLevelExact(zap.ErrorLevel).FilterMessageSnippet("no forwarder").Len(); n != 1 {
		t.Errorf("no forwarder: logged %d times at Error, want once", n)
	}
}

// TestForwardFailures: a forwarder's typed failure gets the code of the one
// table, and an expired packet R00 whatever the failure.
func TestForwardFailures(t *testing.T) {
	e, _ := testEdge(t, nil)
	for f, code := range map[Failure]string{
		NoUpstream: "T01", NotDelivered: "T01", Broken: "T00", TimedOut: "T00", BadReply: "T00",
	} {
		for _, expired := range []bool{false, true} {
			ttl, want := time.Minute, code
			if expired {
				ttl, want = 50*time.Millisecond, "R00"
			}
			setClock(t, time.Now)
			next := &backend{answer: func(_ http.ResponseWriter, r *http.Request) error {
				if expired { // the packet expires while its connector is tried
					setClock(t, func() time.Time { return time.Now().Add(ttl) })
				}
				return NewForwardError(f, "10.0.0.1:7768", errors.New("test failure"))
			}}
			w, err := serve(t, e, newRequest(http.MethodPost, prepareBytes("g.a.b", ttl), "Authorization", "Bearer "+aliceToken), next)
			t.Run(fmt.Sprintf("%s, expired %v", f, expired), func(t *testing.T) { wantReject(t, w, err, want) })
		}
	}
}

func TestRelaysReply(t *testing.T) {
	e, _ := testEdge(t, nil)
	for name, reply := range map[string][]byte{
		"fulfill": ilpdest.AppendFulfill(nil, ilptest.Fulfillment, []byte("data")),
		"reject":  ilpdest.AppendReject(nil, ilpdest.Reject{Code: ilpdest.CodeF02, TriggeredBy: "g.conn", Message: "no route"}),
	} {
		w, err := serve(t, e, newRequest(http.MethodPost, prepareBytes("g.a.b", time.Minute), "Authorization", "Bearer "+aliceToken),
			&backend{answer: func(w http.ResponseWriter, _ *http.Request) error {
				w.Header().Set("Content-Type", "application/ilp+octet-stream")
				w.Header().Set("X-Upstream", "1")
				// In two writes, as a proxy copying a stream might.
				_, _ = w.Write(reply[:5])
				_, _ = w.Write(reply[5:])
				return nil
			}})
		if err != nil || w.Code != 200 || !bytes.Equal(w.Body.Bytes(), reply) {
			t.Fatalf("%s: err %v status %d body %x", name, err, w.Code, w.Body.Bytes())
		}
		if w.Header().Get("Content-Type") != "application/octet-stream" {
			t.Errorf("%s: content-type %q", name, w.Header().Get("Content-Type"))
		}
	}
}

// A Fulfill that arrives as the deadline passes is still relayed: the
// connector has counted the payment.
func TestLateFulfillRelayed(t *testing.T) {
	e, _ := testEdge(t, nil)
	w, err := serve(t, e, newRequest(http.MethodPost, prepareBytes("g.a.b", 50*time.Millisecond), "Authorization", "Bearer "+aliceToken),
		&backend{answer: func(w http.ResponseWriter, r *http.Request) error {
			<-r.Context().Done()
			return fulfill(w, r)
		}})
	if typ, rerr := ilpdest.ReadResponseType(w.Body.Bytes()); err != nil || typ != ilpdest.TypeFulfill {
		t.Fatalf("err %v, reply %x (%v): want the Fulfill", err, w.Body.Bytes(), rerr)
	}
}

func TestRequestTowardBackend(t *testing.T) {
	e, _ := testEdge(t, func(e *Edge) { e.ForwardHeaders = []string{"traceparent", "X-Hop"} })
	body := prepareBytes("g.us.bank.alice", time.Minute)
	for _, c := range []struct {
		auth, wantPeer, wantAuth string
	}{
		{"Bearer " + aliceToken, "alice", "Bearer alice-upstream"},
		{carolRaw, "carol", ""},
	} {
		// A peer naming the identity headers in Connection must not get a
		// forwarder to strip them; the fields it names are dropped before
		// the edge sets them, even one forward_headers lists.
		r := newRequest(http.MethodPost, body, "Authorization", c.auth,
			"ILP-Peer-Name", "mallory", "Content-Type", "application/ilp+octet-stream",
			"Connection", "ILP-Peer-Name, authorization , X-Hop", "X-Hop", "1",
			"Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			"ILP-Destination", "g.us.bank.alice", "Accept-Encoding", "gzip", "Cookie", "a=b", "Prefer", "return=minimal",
			"Idempotency-Key", "k1", "X-Idempotency-Key", "k2", "Expect", "100-continue")
		r.ContentLength = -1
		be := &backend{}
		if _, err := serve(t, e, r, be); err != nil {
			t.Fatal(err)
		}
		h := be.req.Header
		if got := h.Values("ILP-Peer-Name"); len(got) != 1 || got[0] != c.wantPeer {
			t.Errorf("ILP-Peer-Name %q, want %s", got, c.wantPeer)
		}
		if got := h.Get("Authorization"); got != c.wantAuth {
			t.Errorf("Authorization %q, want %q", got, c.wantAuth)
		}
		// Only what the edge sets, the destination it routed by, and
		// forward_headers reach the backend.
		want := map[string]bool{"Ilp-Peer-Name": true, "Content-Type": true, "Ilp-Destination": true, "Traceparent": true}
		if c.wantAuth != "" {
			want["Authorization"] = true
		}
		for name := range h {
			if !want[name] {
				t.Errorf("%s reached the backend", name)
			}
		}
		for name := range want {
			if _, ok := h[name]; !ok {
				t.Errorf("%s did not reach the backend", name)
			}
		}
		if h.Get("Content-Type") != "application/octet-stream" || be.req.ContentLength != int64(len(body)) {
			t.Errorf("content-type %q, length %d", h.Get("Content-Type"), be.req.ContentLength)
		}
		if !bytes.Equal(be.body, body) {
			t.Errorf("backend got a different body")
		}
		again, err := be.req.GetBody()
		if b, _ := io.ReadAll(again); err != nil || !bytes.Equal(b, body) {
			t.Errorf("GetBody does not replay the body")
		}
		if _, ok := be.req.Context().Deadline(); !ok {
			t.Errorf("no deadline on the request context")
		}
	}
}

// TestDestinationHeaderForwardedOnlyWhenRoutedBy: an ILP-Destination that
// disagrees with the packet (destination_header ignore) is not passed on,
// so a connector that reads it sees only what the edge routed by.
func TestDestinationHeaderForwardedOnlyWhenRoutedBy(t *testing.T) {
	e, _ := testEdge(t, func(e *Edge) { e.DestinationHeader = DestinationIgnore })
	r := newRequest(http.MethodPost, prepareBytes("g.us.bank.alice", time.Minute),
		"Authorization", "Bearer "+aliceToken, "ILP-Destination", "g.elsewhere.bob")
	be := &backend{}
	if _, err := serve(t, e, r, be); err != nil {
		t.Fatal(err)
	}
	if got := be.req.Header.Get("ILP-Destination"); got != "" {
		t.Errorf("ILP-Destination %q reached the backend, which was routed by g.us.bank.alice", got)
	}
}

func TestPlaceholdersAndVars(t *testing.T) {
	e, _ := testEdge(t, nil)
	p := ilpdest.Prepare{Amount: 987654321, ExpiresAt: time.Date(2030, 1, 2, 3, 4, 5, 6e6, time.UTC),
		ExecutionCondition: ilptest.Condition(), Destination: []byte("g.us.bank.alice")}
	r := newRequest(http.MethodPost, ilpdest.AppendPrepare(nil, p), "Authorization", "Bearer "+aliceToken)
	if _, err := serve(t, e, r, &backend{}); err != nil {
		t.Fatal(err)
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	got := repl.ReplaceAll("{http.ilp.peer} {http.ilp.destination} {http.ilp.amount} {http.ilp.expires_at} {http.auth.user.id} {http.vars.ilp_destination} {http.vars.ilp_peer}", "-")
	want := "alice g.us.bank.alice 987654321 2030-01-02T03:04:05.006Z alice g.us.bank.alice alice"
	if got != want {
		t.Fatalf("placeholders:\n got %s\nwant %s", got, want)
	}
}

// TestAnswerPlaceholders: what the peer got, and from which connector,
// for the access log: a relayed Fulfill, a relayed Reject, and the edge's
// own Reject.
func TestAnswerPlaceholders(t *testing.T) {
	e, _ := testEdge(t, nil)
	const format = "{http.ilp.result}|{http.ilp.code}|{http.ilp.triggered_by}|{http.ilp.upstream}|{http.ilp.rerouted}"
	for _, c := range []struct {
		name   string
		answer func(w http.ResponseWriter, r *http.Request) error
		want   string
	}{
		{"fulfill from the second choice", func(w http.ResponseWriter, r *http.Request) error {
			PacketFrom(r).SetRoute(r, "g.us.bank", "10.0.0.2:7768", 1)
			return fulfill(w, r)
		}, "fulfill|||10.0.0.2:7768|true"},
		{"reject from a connector", func(w http.ResponseWriter, r *http.Request) error {
			PacketFrom(r).SetRoute(r, "g.us.bank", "10.0.0.1:7768", 0)
			_, err := w.Write(ilptest.Reject("F02", "g.connector.one", "no route"))
			return err
		}, "reject|F02|g.connector.one|10.0.0.1:7768|false"},
		{"the edge's reject", func(w http.ResponseWriter, r *http.Request) error {
			PacketFrom(r).SetRoute(r, "g.us.bank", "10.0.0.3:7768", 0)
			return NewForwardError(NotDelivered, "10.0.0.3:7768", errors.New("connection refused"))
		}, "edge_reject|T01|" + testAddress + "|10.0.0.3:7768|false"},
		{"no forwarder at all", nil, "edge_reject|T00|" + testAddress + "||false"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRequest(http.MethodPost, prepareBytes("g.us.bank.alice", time.Minute), "Authorization", "Bearer "+aliceToken)
			var next caddyhttp.Handler = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
			if c.answer != nil {
				next = &backend{answer: c.answer}
			}
			if _, err := serve(t, e, r, next); err != nil {
				t.Fatal(err)
			}
			repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
			if got := repl.ReplaceAll(format, ""); got != c.want {
				t.Errorf("got %s, want %s", got, c.want)
			}
		})
	}
}

func TestClientGoneGetsNoReply(t *testing.T) {
	e, _ := testEdge(t, nil)
	r := newRequest(http.MethodPost, prepareBytes("g.a.b", time.Minute), "Authorization", "Bearer "+aliceToken)
	ctx, cancel := context.WithCancel(r.Context())
	r = r.WithContext(ctx)
	_, err := serve(t, e, r, &backend{answer: func(http.ResponseWriter, *http.Request) error {
		cancel()
		return caddyhttp.Error(499, context.Canceled)
	}})
	wantStatus(t, err, 499)
}

// TestMaxHoldCapsFarExpiry: a packet that expires in the year 9999 is
// held no longer than max_hold, and gets T00 for the hold limit, not R00.
func TestMaxHoldCapsFarExpiry(t *testing.T) {
	e, _ := testEdge(t, func(e *Edge) { e.MaxHold = caddy.Duration(50 * time.Millisecond) })
	far := ilptest.NewPrepare(ilpdest.Prepare{Amount: 1, Destination: []byte("g.a.b"),
		ExpiresAt: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)})
	var deadline time.Time
	silent := &backend{answer: func(_ http.ResponseWriter, r *http.Request) error {
		deadline, _ = r.Context().Deadline()
		<-r.Context().Done() // reverse_proxy gives up when the context does
		return caddyhttp.Error(http.StatusGatewayTimeout, r.Context().Err())
	}}
	w, err := serve(t, e, newRequest(http.MethodPost, far, "Authorization", "Bearer "+aliceToken), silent)
	wantReject(t, w, err, "T00")
	if rej, _ := ilpdest.ReadReject(w.Body.Bytes()); !strings.Contains(rej.Message, "hold limit") {
		t.Errorf("message %q, want the hold limit named", rej.Message)
	}
	if deadline.IsZero() || deadline.After(time.Now().Add(time.Minute)) {
		t.Errorf("the forwarder's deadline was %v, not max_hold from now", deadline)
	}
}
