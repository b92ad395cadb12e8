package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
	"github.com/ilp-edge/caddy-ilp/integration/internal/ilpclient"
	"github.com/ilp-edge/caddy-ilp/integration/internal/testpki"
)

// peer sends Prepares to the edge with the headers an ilp-plugin-http
// client sends.
type peer struct {
	name    string
	via     string // which listener, for the report
	url     string
	client  *http.Client
	headers []string // besides ILP-Destination
}

// answer is what a peer got for one Prepare.
type answer struct {
	connector string       // the Fulfill's data: the stub's name
	code      ilpdest.Code // the Reject's code, when it was a Reject
}

// newPeers makes the demo's three peers. The HTTPS ones trust the CA
// Caddy made for the localhost certificate, so they can only be made once
// Caddy has written it into its storage under dir.
func newPeers(env *edgeEnv, dir string) ([]*peer, error) {
	roots, err := testpki.CaddyLocalRoots(filepath.Join(dir, "caddy"))
	if err != nil {
		return nil, err
	}
	octets := "Content-Type: application/ilp+octet-stream"
	return []*peer{
		{name: "alice", via: "h2c", url: env.localURL, client: ilpclient.H2C(10 * time.Second),
			headers: []string{octets, "Authorization: Bearer " + env.aliceToken}},
		{name: "bob", via: "https", url: env.publicURL, client: httpsClient(roots, nil),
			headers: []string{octets, "Authorization: Bearer " + ilptest.PluginJWT(env.bobSecret, time.Hour)}},
		{name: "carol", via: "https", url: env.publicURL, client: httpsClient(roots, &env.carolCert),
			headers: []string{octets}},
	}, nil
}

// httpsClient speaks HTTP/2 over TLS to the edge's public site, always on
// 127.0.0.1 whatever localhost resolves to.
func httpsClient(roots *x509.CertPool, cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: cfg,
		Protocols:       &protocols,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, _ := net.SplitHostPort(addr)
			return dialer.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
		},
	}}
}

// send sends one Prepare for dest and reads the answer. An HTTP error is
// an error: the edge must answer every Prepare with an ILP packet.
func (p *peer) send(ctx context.Context, dest string) (answer, error) {
	prepare := ilptest.Prepare(dest, 30*time.Second)
	reply, err := ilpclient.Post(p.client, p.url, prepare, append(p.headers, "ILP-Destination: "+dest))
	if err != nil {
		return answer{}, fmt.Errorf("%s: %w", p.name, err)
	}
	typ, err := ilpdest.ReadResponseType(reply)
	switch {
	case err != nil:
		return answer{}, fmt.Errorf("%s: %w", p.name, err)
	case typ == ilpdest.TypeReject:
		code, err := ilpdest.ReadRejectCode(reply)
		return answer{code: code}, err
	}
	data, err := fulfillData(reply)
	return answer{connector: data}, err
}

// fulfillData returns a short Fulfill's data: type, length, the 32-byte
// fulfillment, the data's length, the data. The stubs' Fulfills are all
// short enough for one-byte lengths.
func fulfillData(b []byte) (string, error) {
	if len(b) < 35 || b[1] >= 0x80 || b[34] >= 0x80 || len(b) != 35+int(b[34]) {
		return "", fmt.Errorf("not a short Fulfill: %x", b)
	}
	return string(b[35:]), nil
}
