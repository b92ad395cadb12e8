package integration

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
	"github.com/ilp-edge/caddy-ilp/integration/internal/testpki"
)

// TestFrontDoorTLS runs the ilp app's front door over HTTPS: its
// certificate for localhost from Caddy's tls app (local_certs: Caddy's
// own CA), and client certificates asked for and verified against the
// peers' CA, as a site's client_auth does. alice with her token and
// carol with her client certificate get their packets fulfilled, over
// HTTP/1.1 and over h2 (ALPN); a request with neither gets 401; a
// certificate from another CA fails the handshake.
func TestFrontDoorTLS(t *testing.T) {
	bin, err := buildCaddy()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	carol, err := testpki.PeerCA(filepath.Join(dir, "peers-ca.pem"), "carol")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := testpki.PeerCA(filepath.Join(dir, "other-ca.pem"), "carol")
	if err != nil {
		t.Fatal(err)
	}
	fp := sha256.Sum256(carol.Certificate[0])
	conn, received := fulfillingConnector(t)
	port := freePort(t)
	storage := filepath.Join(dir, "storage")
	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	local_certs
	skip_install_trust
	storage file_system %s
	ilp {
		server 127.0.0.1:%d {
			tls localhost {
				client_auth {
					mode verify_if_given
					trust_pool file %s
				}
			}
			ilp_edge {
				address test.edge
				peer alice {
					token %s
				}
				peer carol {
					client_cert %s
				}
			}
			ilp_proxy %s
		}
	}
}
`, storage, port, filepath.Join(dir, "peers-ca.pem"), aliceToken, hex.EncodeToString(fp[:]), conn.URL)
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	waitListening(t, start(t, bin, "run", "--config", path, "--adapter", "caddyfile"), port)

	var roots *x509.CertPool
	for deadline := time.Now().Add(20 * time.Second); roots == nil; time.Sleep(100 * time.Millisecond) {
		if roots, err = testpki.CaddyLocalRoots(storage); err != nil && time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	url := fmt.Sprintf("https://localhost:%d/", port)
	var sendTLS func(cert *tls.Certificate, token string, h2 bool) (string, error)
	send := func(cert *tls.Certificate, token string) (string, error) { return sendTLS(cert, token, false) }
	sendTLS = func(cert *tls.Certificate, token string, h2 bool) (string, error) {
		cfg := &tls.Config{RootCAs: roots, ServerName: "localhost"}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: h2}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("https://127.0.0.1:%d/", port), bytes.NewReader(ilptest.Prepare("g.tls.x", time.Minute)))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		if res.TLS == nil || h2 != (res.ProtoMajor == 2) || h2 != (res.TLS.NegotiatedProtocol == "h2") {
			return "", fmt.Errorf("%s over TLS %+v, want h2 %v", res.Proto, res.TLS, h2)
		}
		return answerOf(res, body), nil
	}
	// The certificate may be issued a moment after the port opens.
	var got string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if got, err = send(nil, aliceToken); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if got != "fulfill" {
		t.Fatalf("alice with her token over HTTPS to %s: %s, %v; want a Fulfill", url, got, err)
	}
	t.Logf("the first packet over HTTPS fulfilled %v after Caddy started", time.Since(started).Round(time.Millisecond))
	if got, err := send(&carol, ""); got != "fulfill" {
		t.Errorf("carol with her client certificate: %s, %v; want a Fulfill", got, err)
	}
	if got, err := send(nil, ""); got != "401" {
		t.Errorf("no credentials: %s, %v; want 401", got, err)
	}
	if got, err := send(&stranger, ""); err == nil {
		t.Errorf("a client certificate from another CA: %s; want the handshake refused", got)
	}
	// HTTP/2, negotiated by ALPN.
	if got, err := sendTLS(nil, aliceToken, true); got != "fulfill" {
		t.Errorf("alice over h2: %s, %v; want a Fulfill", got, err)
	}
	if got, err := sendTLS(&carol, "", true); got != "fulfill" {
		t.Errorf("carol over h2 with her client certificate: %s, %v; want a Fulfill", got, err)
	}
	if got, err := sendTLS(nil, "", true); got != "401" {
		t.Errorf("no credentials over h2: %s, %v; want 401", got, err)
	}
	if n := received.Load(); n != 4 {
		t.Errorf("the connector got %d packets, want 4", n)
	}
}
