package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// writeClientCert writes a self-signed client certificate and its key
// into dir.
func writeClientCert(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestProxyTLSUpstream sends packets to an https connector that has a
// private CA and wants a client certificate: refused without the TLS
// settings, delivered with them.
func TestProxyTLSUpstream(t *testing.T) {
	var seen string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		seen = r.TLS.ServerName + " " + r.Proto
		if len(r.TLS.PeerCertificates) > 0 {
			seen += " " + r.TLS.PeerCertificates[0].Subject.CommonName
		}
		w.Write(ilptest.Fulfill([]byte("tls")))
	}))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "connector-ca.pem")
	writePEM(t, caFile, "CERTIFICATE", srv.Certificate().Raw)
	certFile, keyFile := writeClientCert(t, dir, "edge")
	upstream := "https://" + strings.TrimPrefix(srv.URL, "https://")

	e := testEdge(t)
	without := testProxy(t, nil, upstream)
	// The connector's certificate is not trusted: the handshake fails
	// before a byte of the packet is sent.
	_, _, err := forward(t, without, "g.usd.x", time.Minute)
	wantFailure(t, err, handler.NotDelivered)
	w, _, err := send(t, e, without, "g.usd.x", time.Minute)
	wantReject(t, w, err, "T01")

	with := testProxy(t, func(p *Proxy) {
		p.TLS = &reverseproxy.TLSConfig{
			CARaw:                 json.RawMessage(`{"provider":"file","pem_files":["` + caFile + `"]}`),
			ClientCertificateFile: certFile, ClientCertificateKeyFile: keyFile,
			ServerName: "example.com", // in httptest's certificate
		}
	}, upstream)
	w, _, err = send(t, e, with, "g.usd.x", time.Minute)
	if by := fulfilledBy(t, w, err); by != "tls" {
		t.Fatalf("fulfilled by %q", by)
	}
	if want := "example.com HTTP/2.0 edge"; seen != want {
		t.Errorf("connector saw %q, want %q (server name, protocol, client certificate)", seen, want)
	}
	if without.static.upstreams[0].state == with.static.upstreams[0].state {
		t.Error("configs with different TLS settings share one connection pool")
	}
}
