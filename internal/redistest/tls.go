package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TLSServer is a redis-server that also serves TLS, with a certificate
// for 127.0.0.1 from a CA of the test's own.
type TLSServer struct {
	*Server
	TLSAddr string // 127.0.0.1:port, TLS
	CAFile  string // PEM of the CA that signed the server's certificate
}

// StartTLS runs redis-server as Start does, and on a second port with TLS
// (clients are not asked for a certificate). The plaintext port is for
// the readiness check.
func StartTLS(t testing.TB) *TLSServer {
	t.Helper()
	dir := t.TempDir()
	ca, caKey := newCert(t, nil, nil, "redistest CA")
	cert, key := newCert(t, ca, caKey, "127.0.0.1")
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := write("ca.pem", "CERTIFICATE", ca.Raw)
	tlsPort := strconv.Itoa(freePort(t, false))
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t, false))), t: t, dir: t.TempDir(),
		extra: []string{"--tls-port", tlsPort, "--tls-cert-file", write("server.pem", "CERTIFICATE", cert.Raw),
			"--tls-key-file", write("server-key.pem", "EC PRIVATE KEY", keyDER), "--tls-ca-cert-file", caFile,
			"--tls-auth-clients", "no"}}
	s.Restart()
	t.Cleanup(s.Kill)
	return &TLSServer{Server: s, TLSAddr: net.JoinHostPort("127.0.0.1", tlsPort), CAFile: caFile}
}

// newCert makes a certificate for name (an IP address, or a CA's name
// when parent is nil), signed by parent, or self-signed.
func newCert(t testing.TB, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	signer, signerKey := tmpl, key
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign
	} else {
		tmpl.IPAddresses = []net.IP{net.ParseIP(name)}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}
