package egress

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
	"github.com/ilp-edge/caddy-ilp/internal/pkitest"
	"github.com/ilp-edge/caddy-ilp/internal/tlsclient"
)

// TestEgressRelaysFulfill: the packet's exact bytes go to the peer's url
// with the edge's token, ILP-Destination and the content type, whichever
// form of the path names the peer, and the peer's Fulfill comes back
// byte for byte, counted.
func TestEgressRelaysFulfill(t *testing.T) {
	fulfill := ilptest.Fulfill([]byte("from bob, byte for byte"))
	p := startTestPeer(t, func(w http.ResponseWriter, _ *http.Request) { w.Write(fulfill) })
	e, g := testEdge(t), testEgress(t, bob(p.srv.URL+"/ilp?account=edge"))
	for _, path := range []string{"/peers/bob/", "/peers/bob", "/peers/bob/anything/else"} {
		fulfilled := testutil.ToFloat64(metricPackets.WithLabelValues("bob", "fulfill"))
		prepare := ilptest.Prepare("g.bob.alice", ttl)
		res := send(t, e, g, path, prepare)
		if res.err != nil || res.w.Code != http.StatusOK || !bytes.Equal(res.w.Body.Bytes(), fulfill) {
			t.Fatalf("%s: HTTP %d %x, %v; want bob's Fulfill", path, res.w.Code, res.w.Body.Bytes(), res.err)
		}
		s := p.last(t)
		if s.path != "/ilp" || s.auth != "Bearer edge-to-bob" || s.dest != "g.bob.alice" ||
			s.contentType != "application/octet-stream" || !bytes.Equal(s.body, prepare) {
			t.Errorf("%s: bob got %s with Authorization %q, ILP-Destination %q, Content-Type %q, body equal: %v",
				path, s.path, s.auth, s.dest, s.contentType, bytes.Equal(s.body, prepare))
		}
		if got := testutil.ToFloat64(metricPackets.WithLabelValues("bob", "fulfill")) - fulfilled; got != 1 {
			t.Errorf("%s: caddy_ilp_egress_packets_total{result=fulfill} went up by %v, want 1", path, got)
		}
	}
	// A Reject is relayed as it is too: it is the peer's, not the edge's.
	reject := ilptest.Reject("F02", "g.bob", "unreachable")
	p.setAnswer(func(w http.ResponseWriter, _ *http.Request) { w.Write(reject) })
	if res := send(t, e, g, "/peers/bob/", ilptest.Prepare("g.bob.alice", ttl)); !bytes.Equal(res.w.Body.Bytes(), reject) {
		t.Errorf("got %x, want bob's Reject", res.w.Body.Bytes())
	}
}

// TestEgressJWT: with callback_jwt_secret the edge presents an HS256 JWT
// as ilp-plugin-http signs it (iat, exp), which the peer verifies with the
// shared secret, on every packet.
func TestEgressJWT(t *testing.T) {
	const secret = "edge-to-bob-jwt-secret"
	p := startTestPeer(t, nil)
	c := bob(p.srv.URL)
	c.CallbackToken, c.CallbackJWTSecret = "", secret
	e, g := testEdge(t), testEgress(t, c)
	for range 2 {
		res := send(t, e, g, "/peers/bob/", ilptest.Prepare("g.bob.alice", ttl))
		if res.err != nil || res.w.Code != http.StatusOK {
			t.Fatalf("HTTP %d, %v", res.w.Code, res.err)
		}
		token, ok := strings.CutPrefix(p.last(t).auth, "Bearer ")
		if !ok {
			t.Fatalf("Authorization %q: want a bearer token", p.last(t).auth)
		}
		if err := verifyHS256(token, secret, time.Now()); err != "" {
			t.Fatalf("token %q: %s", token, err)
		}
	}
}

// verifyHS256 checks token as the peer's jsonwebtoken would: HS256 under
// secret, valid at now. It returns what is wrong, or "".
func verifyHS256(token, secret string, now time.Time) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "not a compact JWS"
	}
	enc := base64.RawURLEncoding
	var header struct{ Alg string }
	var claims struct{ IAT, EXP int64 }
	h, _ := enc.DecodeString(parts[0])
	c, _ := enc.DecodeString(parts[1])
	sig, _ := enc.DecodeString(parts[2])
	if json.Unmarshal(h, &header) != nil || header.Alg != "HS256" {
		return "header is not HS256"
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, m.Sum(nil)) {
		return "signature does not match the secret"
	}
	if json.Unmarshal(c, &claims) != nil || claims.IAT > now.Unix() || claims.EXP <= now.Unix() {
		return "not valid now"
	}
	return ""
}

// TestEgressNoPeer: a path that names no peer, or a peer without a url,
// gets T01 from the edge, and nothing is sent anywhere.
func TestEgressNoPeer(t *testing.T) {
	p := startTestPeer(t, nil)
	noURL := bob("")
	noURL.Name = "carol"
	// Any dial at all fails the test: a request must never choose where
	// the edge connects.
	e, g := testEdge(t), testEgress(t, bob(p.srv.URL), noURL)
	var dials atomic.Int32
	for _, q := range g.peers {
		q.transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}
	}
	for _, path := range []string{"/peers/carol/", "/peers/dave/", "/peers/eve/", "/peers/", "/peers", "/bob/",
		"/peers/" + p.srv.Listener.Addr().String() + "/", "/peers/http:%2F%2F127.0.0.1/"} {
		res := send(t, e, g, path, ilptest.Prepare("g.bob.alice", ttl))
		res.wantReject(t, "T01")
		res.wantFailure(t, handler.NoUpstream)
	}
	if n := p.count.Load(); n != 0 || dials.Load() != 0 {
		t.Errorf("the peer got %d requests and %d dials were made, want none", n, dials.Load())
	}
}

// TestEgressFailures: the peer down, slow past the packet's expiry,
// answering 500, garbage, too much or not ILP: each gets the edge's Reject
// from the one table, with the failure that decides it.
func TestEgressFailures(t *testing.T) {
	e := testEdge(t)
	t.Run("peer down", func(t *testing.T) {
		g := testEgress(t, bob("http://"+ilptest.DeadAddress(t)+"/ilp"))
		res := send(t, e, g, "/peers/bob/", ilptest.Prepare("g.bob.alice", ttl))
		res.wantReject(t, "T01")
		res.wantFailure(t, handler.NotDelivered)
	})
	t.Run("slow past expiry", func(t *testing.T) {
		release := make(chan struct{})
		p := startTestPeer(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		defer close(release)
		g := testEgress(t, bob(p.srv.URL))
		start := time.Now()
		res := send(t, e, g, "/peers/bob/", ilptest.Prepare("g.bob.alice", 1500*time.Millisecond))
		res.wantReject(t, "R00")
		res.wantFailure(t, handler.TimedOut)
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("R00 after %v: want it at the packet's expiry", d)
		}
	})
	t.Run("redirect not followed", func(t *testing.T) {
		elsewhere := startTestPeer(t, nil)
		p := startTestPeer(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, elsewhere.srv.URL, http.StatusTemporaryRedirect)
		})
		res := send(t, e, testEgress(t, bob(p.srv.URL)), "/peers/bob/", ilptest.Prepare("g.bob.alice", ttl))
		res.wantReject(t, "T00")
		if n := elsewhere.count.Load(); n != 0 {
			t.Errorf("the redirect's target got %d packets, want none", n)
		}
	})
	for _, c := range []struct {
		name   string
		answer func(w http.ResponseWriter, r *http.Request)
		code   string
		f      handler.Failure // 0: a reply, which the edge refuses
	}{
		{"500", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			w.Write(ilptest.Fulfill(nil)) // not relayed: the status is the answer
		}, "T00", 0},
		{"not ILP", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("hello")) }, "T00", 0},
		{"too large", func(w http.ResponseWriter, _ *http.Request) { w.Write(make([]byte, handler.MaxReplySize+1)) }, "T00", handler.BadReply},
		{"not HTTP", func(w http.ResponseWriter, _ *http.Request) {
			conn, buf, _ := w.(http.Hijacker).Hijack()
			buf.WriteString("garbage\r\n\r\n")
			buf.Flush()
			conn.Close()
		}, "T00", handler.BadReply},
		{"closed mid-reply", func(w http.ResponseWriter, _ *http.Request) {
			conn, buf, _ := w.(http.Hijacker).Hijack()
			buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
			buf.Flush()
			conn.Close()
		}, "T00", handler.Broken},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := startTestPeer(t, c.answer)
			g := testEgress(t, bob(p.srv.URL))
			failed := testutil.ToFloat64(metricPackets.WithLabelValues("bob", "failed"))
			res := send(t, e, g, "/peers/bob/", ilptest.Prepare("g.bob.alice", ttl))
			res.wantReject(t, c.code)
			if rej, _ := ilpdest.ReadReject(res.w.Body.Bytes()); c.name == "500" && !strings.Contains(rej.Message, "HTTP 500") {
				t.Errorf("Reject %q: want the edge's for the status", rej.Message)
			}
			if c.f != 0 {
				res.wantFailure(t, c.f)
			} else if res.egressErr != nil {
				t.Errorf("ilp_egress returned %v, want the peer's answer relayed", res.egressErr)
			}
			if got := testutil.ToFloat64(metricPackets.WithLabelValues("bob", "failed")) - failed; got != 1 {
				t.Errorf("caddy_ilp_egress_packets_total{result=failed} went up by %v, want 1", got)
			}
		})
	}
}

// TestEgressHTTP1KeepAlive: to a plain-HTTP peer, rounds of 10 packets at
// once reuse the connections the first round opened.
func TestEgressHTTP1KeepAlive(t *testing.T) {
	p := startTestPeer(t, func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(20 * time.Millisecond) // so that the 10 overlap
		w.Write(ilptest.Fulfill(nil))
	})
	e, g := testEdge(t), testEgress(t, bob(p.srv.URL))
	for range 5 {
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() { send(t, e, g, "/peers/bob/", ilptest.Prepare("g.bob.alice", ttl)) })
		}
		wg.Wait()
	}
	if n := p.conns.Load(); n > 10 || p.count.Load() != 50 || p.last(t).proto != "HTTP/1.1" {
		t.Errorf("%d packets over %d connections (%s); want 50 over at most 10, HTTP/1.1", p.count.Load(), n, p.last(t).proto)
	}
}

// startTLSPeer starts a test peer over TLS with HTTP/2, with a
// certificate from its own CA, that wants a client certificate from
// clients.
func startTLSPeer(t *testing.T, clients *pkitest.CA) (*testPeer, *pkitest.CA) {
	t.Helper()
	ca := pkitest.NewCA(t, "bob")
	p := newTestPeer(nil)
	p.srv.TLS = ca.ServerConfig(t, clients)
	p.srv.EnableHTTP2 = true
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	return p, ca
}

// TestEgressTLSClientCert: a peer that wants a client certificate gets
// the one in callback_tls, beside the token; without it no packet reaches
// the peer.
func TestEgressTLSClientCert(t *testing.T) {
	edgeCA := pkitest.NewCA(t, "edge")
	cert := edgeCA.Client(t, "edge-to-bob")
	p, bobCA := startTLSPeer(t, edgeCA)
	e := testEdge(t)

	with := bob(p.srv.URL + "/ilp")
	with.CallbackTLS = &tlsclient.Config{CertFile: cert.CertFile, KeyFile: cert.KeyFile, CAFile: bobCA.File}
	res := send(t, e, testEgress(t, with), "/peers/bob/", ilptest.Prepare("g.bob.alice", ttl))
	if _, ok := ilptest.FulfillData(res.w.Body.Bytes()); res.err != nil || !ok {
		t.Fatalf("HTTP %d %x, %v; want bob's Fulfill", res.w.Code, res.w.Body.Bytes(), res.err)
	}
	if s := p.last(t); s.cert != "edge-to-bob" || s.auth != "Bearer edge-to-bob" {
		t.Errorf("bob saw certificate %q and Authorization %q", s.cert, s.auth)
	}

	without := bob(p.srv.URL + "/ilp")
	without.CallbackTLS = &tlsclient.Config{CAFile: bobCA.File}
	before := p.count.Load()
	res = send(t, e, testEgress(t, without), "/peers/bob/", ilptest.Prepare("g.bob.alice", ttl))
	if _, ok := ilptest.FulfillData(res.w.Body.Bytes()); ok || p.count.Load() != before {
		t.Errorf("without a client certificate: %x, and bob got %d packets; want a Reject and none",
			res.w.Body.Bytes(), p.count.Load()-before)
	}
}

// TestEgressHTTP2OneConnection: 20 packets, 19 of them at once, to a TLS
// peer that speaks HTTP/2 go over one connection.
func TestEgressHTTP2OneConnection(t *testing.T) {
	edgeCA := pkitest.NewCA(t, "edge")
	cert := edgeCA.Client(t, "edge-to-bob")
	p, bobCA := startTLSPeer(t, edgeCA)
	c := bob(p.srv.URL)
	c.CallbackTLS = &tlsclient.Config{CertFile: cert.CertFile, KeyFile: cert.KeyFile, CAFile: bobCA.File}
	e, g := testEdge(t), testEgress(t, c)
	// The first packet makes the connection; the others, sent at once
	// while the peer holds every one of them, must share it.
	hold := make(chan struct{})
	var arrived sync.WaitGroup
	arrived.Add(19)
	var held atomic.Bool
	p.setAnswer(func(w http.ResponseWriter, _ *http.Request) {
		if held.Load() {
			arrived.Done()
			<-hold
		}
		w.Write(ilptest.Fulfill([]byte("bob")))
	})
	if res := send(t, e, g, "/peers/bob/", ilptest.Prepare("g.bob.alice", ttl)); res.w.Code != http.StatusOK {
		t.Fatalf("first packet: HTTP %d", res.w.Code)
	}
	held.Store(true)
	var wg sync.WaitGroup
	bodies := make([][]byte, 19)
	for i := range bodies {
		wg.Go(func() { bodies[i] = send(t, e, g, "/peers/bob/", ilptest.Prepare("g.bob.alice", ttl)).w.Body.Bytes() })
	}
	arrived.Wait() // all 19 in flight at once
	close(hold)
	wg.Wait()
	for i, b := range bodies {
		if _, ok := ilptest.FulfillData(b); !ok {
			t.Fatalf("packet %d: %x, want a Fulfill", i, b)
		}
	}
	if n, proto := p.conns.Load(), p.last(t).proto; n != 1 || proto != "HTTP/2.0" {
		t.Errorf("20 packets over %d connections, %s; want 1, HTTP/2.0", n, proto)
	}
}

// TestEgressProvisionPeersApp: Provision takes the ilp_peers app's peers
// that have a url, with their placeholders resolved, and refuses one whose
// url or credential is unusable.
func TestEgressProvisionPeersApp(t *testing.T) {
	p := startTestPeer(t, nil)
	t.Setenv("EGRESS_TEST_BOB_OUT", "edge-to-bob-from-env")
	t.Setenv("EGRESS_TEST_BOB_URL", p.srv.URL+"/ilp")
	provision := func(peers string) (*Egress, error) {
		ctx, err := caddy.ProvisionContext(&caddy.Config{
			AppsRaw: caddy.ModuleMap{"ilp_peers": json.RawMessage(`{"peers":` + peers + `}`)},
			Logging: &caddy.Logging{Logs: map[string]*caddy.CustomLog{
				"default": {BaseLog: caddy.BaseLog{WriterRaw: json.RawMessage(`{"output":"discard"}`)}},
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		g := new(Egress)
		if err := g.Provision(ctx); err != nil {
			return nil, err
		}
		t.Cleanup(func() { g.Cleanup() })
		return g, g.Validate()
	}
	g, err := provision(`[{"name":"bob","tokens":["bob-in"],"url":"{env.EGRESS_TEST_BOB_URL}","callback_token":"{env.EGRESS_TEST_BOB_OUT}"},
		{"name":"carol","tokens":["carol-in"]}]`)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.peers) != 1 || g.peers["bob"] == nil {
		t.Fatalf("peers %v, want bob alone", g.peers)
	}
	res := send(t, testEdge(t), g, "/peers/bob/", ilptest.Prepare("g.bob.alice", ttl))
	if s := p.last(t); res.w.Code != http.StatusOK || s.path != "/ilp" || s.auth != "Bearer edge-to-bob-from-env" {
		t.Errorf("HTTP %d; bob got %s with Authorization %q", res.w.Code, s.path, s.auth)
	}
	for _, bad := range []string{
		`[{"name":"bob","tokens":["x"],"url":"ftp://bob.example/"}]`,
		`[{"name":"bob","tokens":["x"],"url":"https://user:pw@bob.example/"}]`,
		`[{"name":"bob","tokens":["x"],"url":"https://bob.example/ilp/%"}]`,
		`[{"name":"bob","tokens":["x"],"url":"http://bob.example/","callback_tls":{}}]`,
		`[{"name":"bob","tokens":["x"],"url":"http://bob.example/","callback_token":"a","callback_jwt_secret":"b"}]`,
		`[{"name":"bob","tokens":["x"],"url":"{env.EGRESS_TEST_UNSET}"}]`,
	} {
		if _, err := provision(bad); err == nil {
			t.Errorf("%s: provisioned, want an error", bad)
		}
	}
}
