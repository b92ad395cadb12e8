package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
)

// The TLS rows: HTTP/1.1 over TLS on kept connections (79-h1tls, from
// h2load --h1: what rafiki's axios and ilp-plugin-http send to an https
// peer), and on a new connection per packet (79-newconn-tls, from the Go
// client, newconn.go). Every contender that serves TLS (nginx, HAProxy and
// the front door) serves the same self-signed ECDSA P-256 certificate,
// and every handshake is TLS 1.3 with TLS_AES_128_GCM_SHA256 and X25519:
// h2load's first choices, which nginx takes (it follows the client's
// order), HAProxy is set to (haproxyTLS) and Go picks on a CPU with AES
// instructions; the Go client is held to the same (clientTLS).

// haproxyTLS is HAProxy's global TLS settings: TLS 1.2 and up, as nginx
// is set, and TLS 1.3's cipher suites in h2load's and Go's order, for
// HAProxy enforces its own order (prefer-client-ciphers is off by
// default) and OpenSSL's puts TLS_AES_256_GCM_SHA384 first. Session
// tickets and HAProxy's session cache are on by default.
const haproxyTLS = "\tssl-default-bind-options ssl-min-ver TLSv1.2\n" +
	"\tssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

// haproxyPEM writes the bench's certificate and key into one file in dir,
// as HAProxy's crt takes them, and returns its path.
func haproxyPEM(b *bench, dir string) (string, error) {
	cert, err := os.ReadFile(b.certFile)
	if err != nil {
		return "", err
	}
	key, err := os.ReadFile(b.keyFile)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "haproxy.pem")
	return path, os.WriteFile(path, append(cert, key...), 0o600)
}

// wantALPN is the protocol a TLS workload must have negotiated: h2, or
// http/1.1, the only one h2load --h1 and the Go client offer.
func wantALPN(wl workload) string {
	if wl.h2 {
		return "h2"
	}
	return "http/1.1"
}

// clientTLS is the Go client's TLS configuration toward url: TLS 1.3
// only, trusting the bench's certificate alone, ALPN http/1.1, and a
// session cache, so that a new connection resumes the session of one
// before (with a ticket, TLS 1.3's only way) as a peer's HTTPS client
// does. X25519 only: Go offers X25519MLKEM768 first, which the front door
// would take and nginx's and HAProxy's OpenSSL 3.0 cannot, and h2load
// offers X25519; the handshakes compared must be the same. The cache is
// the run's own: each contender starts fresh, with new ticket keys.
func (b *bench) clientTLS(url string) (*tls.Config, error) {
	pem, err := os.ReadFile(b.certFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, errors.New("the bench's certificate: no PEM certificate")
	}
	u, err := neturl.Parse(url)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		RootCAs:            roots,
		ServerName:         u.Hostname(), // an IP address: checked against the certificate, not sent as SNI
		NextProtos:         []string{"http/1.1"},
		MinVersion:         tls.VersionTLS13,
		CurvePreferences:   []tls.CurveID{tls.X25519},
		ClientSessionCache: tls.NewLRUClientSessionCache(1), // one server: one entry
	}, nil
}

// describeTLS says what a handshake negotiated, as the report shows
// h2load's: protocol, cipher suite, key exchange.
func describeTLS(st tls.ConnectionState) string {
	parts := []string{tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite)}
	if st.CurveID != 0 {
		parts = append(parts, st.CurveID.String())
	}
	return strings.Join(parts, ", ")
}

// resumedShare renders how many of conns resumed a TLS session.
func resumedShare(conns, resumed int64) string {
	if conns == 0 {
		return "no connection"
	}
	return fmt.Sprintf("%d resumed (%.1f%%)", resumed, 100*float64(resumed)/float64(conns))
}
