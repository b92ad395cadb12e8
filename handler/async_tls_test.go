package handler

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ilp-edge/caddy-ilp/internal/pkitest"
	"github.com/ilp-edge/caddy-ilp/internal/tlsclient"
)

// tlsPeerCallback is peerCallback over TLS, with a certificate from the
// peer's CA (returned: it verifies the callback), that wants a client
// certificate from edgeCA.
func tlsPeerCallback(t *testing.T, status int, edgeCA *pkitest.CA) (*httptest.Server, chan callbackPost, *pkitest.CA) {
	peerCA := pkitest.NewCA(t, "alice")
	s, posts := newPeerCallback(status)
	s.TLS = peerCA.ServerConfig(t, edgeCA)
	s.EnableHTTP2 = true
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	s.StartTLS()
	t.Cleanup(s.Close)
	return s, posts, peerCA
}

// TestAsyncCallbackTLS: with callback_tls, the edge presents its client
// certificate to a callback that wants one, beside callback_token or
// alone. Without a certificate the callback's client, or its own server's
// trust, the handshake fails: no answer, retried until the Prepare
// expires, then abandoned and logged so.
func TestAsyncCallbackTLS(t *testing.T) {
	edgeCA := pkitest.NewCA(t, "edge")
	cert := edgeCA.Client(t, "edge-to-alice")
	cb, posts, peerCA := tlsPeerCallback(t, http.StatusOK, edgeCA)
	for _, c := range []struct {
		name, token, wantAuth string
	}{
		{"with callback_token", "edge-to-alice", "Bearer edge-to-alice"},
		{"alone", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := asyncEdge(t, cb.URL, func(e *Edge) {
				e.Peers[0].CallbackToken = c.token
				e.Peers[0].CallbackTLS = &tlsclient.Config{CertFile: cert.CertFile, KeyFile: cert.KeyFile, CAFile: peerCA.File}
			})
			w, err := serve(t, e, asyncRequest(prepareBytes("g.us.bank.alice", time.Minute), aliceID, cb.URL+"/cb/"), &countingBackend{})
			if err != nil || w.Code != http.StatusAccepted {
				t.Fatalf("HTTP %d, %v; want 202", w.Code, err)
			}
			p := nextPost(t, posts)
			if p.cert != "edge-to-alice" || p.auth != c.wantAuth || answerOf(p.body) != "fulfill" {
				t.Errorf("the callback got certificate %q, Authorization %q, %s; want the edge's certificate, %q, the Fulfill",
					p.cert, p.auth, answerOf(p.body), c.wantAuth)
			}
		})
	}

	for _, c := range []struct {
		name string
		tls  tlsclient.Config
	}{
		{"no client certificate", tlsclient.Config{CAFile: peerCA.File}},
		{"another name than the callback's", tlsclient.Config{CertFile: cert.CertFile, KeyFile: cert.KeyFile, CAFile: peerCA.File, ServerName: "elsewhere.example"}},
		{"the system's roots", tlsclient.Config{CertFile: cert.CertFile, KeyFile: cert.KeyFile}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, logs := asyncEdgeLogs(t, cb.URL, func(e *Edge) { e.Peers[0].CallbackTLS = &c.tls })
			w, err := serve(t, e, asyncRequest(prepareBytes("g.us.bank.alice", 700*time.Millisecond), aliceID, cb.URL+"/cb/"), &countingBackend{})
			if err != nil || w.Code != http.StatusAccepted {
				t.Fatalf("HTTP %d, %v; want 202", w.Code, err)
			}
			line := replyLine(t, logs)
			if f := line.ContextMap(); f["result"] != "abandoned" || f["status"] != int64(0) || f["attempts"].(int64) < 2 || f["error"] == nil {
				t.Errorf("logged %v, want abandoned after several attempts without an answer", f)
			}
			noPost(t, posts)
		})
	}
}

// asyncEdgeLogs is asyncEdge with its log.
func asyncEdgeLogs(t *testing.T, callbackURL string, mod func(*Edge)) (*Edge, *observer.ObservedLogs) {
	return testEdge(t, func(e *Edge) {
		e.Peers[0].Prefixes = []string{callbackURL + "/cb/"}
		e.Peers[0].CallbackToken = "edge-to-alice"
		if mod != nil {
			mod(e)
		}
	})
}

// replyLine waits for the one log line of an asynchronous exchange.
func replyLine(t *testing.T, logs *observer.ObservedLogs) observer.LoggedEntry {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if lines := logs.FilterMessage("asynchronous reply").All(); len(lines) > 0 {
			if len(lines) > 1 {
				t.Errorf("%d lines for one exchange: %v", len(lines), lines)
			}
			return lines[0]
		}
	}
	t.Fatal("no log line for the exchange within 10 s")
	return observer.LoggedEntry{}
}

// TestCallbackTLSProvisionErrors: callback_tls's files are read at
// provisioning, and what is wrong with them is an error that names the
// peer and the file; so is a callback that is not https, where the
// certificate would never be presented.
func TestCallbackTLSProvisionErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "edge.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	cert := pkitest.NewCA(t, "edge").Client(t, "edge")
	missing := filepath.Join(dir, "missing.pem")
	for _, c := range []struct {
		name   string
		url    string
		tls    tlsclient.Config
		want   []string
		wantNo string
	}{
		{"a missing certificate", "https://alice.example/cb", tlsclient.Config{CertFile: missing, KeyFile: cert.KeyFile}, []string{"callback_tls", "cert_file", missing}, ""},
		{"a certificate that is not PEM", "https://alice.example/cb", tlsclient.Config{CertFile: notPEM, KeyFile: cert.KeyFile}, []string{"callback_tls", notPEM}, ""},
		{"a key file that is not PEM", "https://alice.example/cb", tlsclient.Config{CertFile: cert.CertFile, KeyFile: notPEM}, []string{"callback_tls", notPEM}, ""},
		{"a missing CA file", "https://alice.example/cb", tlsclient.Config{CAFile: missing}, []string{"callback_tls", "ca_file", missing}, ""},
		{"a CA file that is not PEM", "https://alice.example/cb", tlsclient.Config{CAFile: notPEM}, []string{"callback_tls", "ca_file", notPEM}, ""},
		{"a certificate without its key", "https://alice.example/cb", tlsclient.Config{CertFile: cert.CertFile}, []string{"callback_tls", "go together"}, ""},
		{"a plain http callback", "http://alice.example/cb?token=s3cret", tlsclient.Config{CertFile: cert.CertFile, KeyFile: cert.KeyFile}, []string{"callback_tls", "not https"}, "s3cret"},
	} {
		e := &Edge{Address: testAddress, Peers: []*Peer{{Name: "alice", Tokens: []string{"t"}, Mode: ModeAsync, CallbackTLS: &c.tls}}}
		e.Peers[0].URL = c.url
		ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
		err := e.Provision(ctx)
		e.Cleanup()
		cancel()
		if err == nil {
			t.Errorf("%s: provisioned", c.name)
			continue
		}
		for _, want := range append(c.want, `peer "alice"`) {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v, want it to name %s", c.name, err, want)
			}
		}
		if c.wantNo != "" && strings.Contains(err.Error(), c.wantNo) {
			t.Errorf("%s: %v shows the callback URL's query", c.name, err)
		}
	}
}
