package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ilp-edge/caddy-ilp/integration/internal/proc"
)

// edgeEnv is everything Caddyfile.example reads from the environment, set
// up for a run on loopback: free ports, fresh random secrets, and a
// throwaway CA for the client-certificate peer.
type edgeEnv struct {
	vars       map[string]string
	localURL   string          // the plain h2c listener
	publicURL  string          // the HTTPS site, as https://localhost:port
	carolCert  tls.Certificate // carol's client certificate
	aliceToken string
	bobSecret  string
}

// newEdgeEnv prepares the environment for connectors, writing the peer
// CA into dir.
func newEdgeEnv(dir string, connectors []string) (*edgeEnv, error) {
	ports, err := proc.FreePorts(5)
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(dir, "peers-ca.pem")
	carol, err := writePeerCA(caFile, "carol")
	if err != nil {
		return nil, err
	}
	fingerprint := sha256.Sum256(carol.Certificate[0])
	e := &edgeEnv{
		carolCert:  carol,
		aliceToken: randomSecret(),
		bobSecret:  randomSecret(),
		localURL:   fmt.Sprintf("http://127.0.0.1:%d/", ports[0]),
		publicURL:  fmt.Sprintf("https://localhost:%d/", ports[1]),
	}
	e.vars = map[string]string{
		"ILP_PUBLIC_NAME":   "localhost",
		"ILP_LOCAL_PORT":    fmt.Sprint(ports[0]),
		"ILP_HTTPS_PORT":    fmt.Sprint(ports[1]),
		"ILP_HTTP_PORT":     fmt.Sprint(ports[2]),
		"ILP_METRICS_PORT":  fmt.Sprint(ports[3]),
		"ILP_ADMIN":         fmt.Sprintf("127.0.0.1:%d", ports[4]),
		"ILP_EDGE_ADDRESS":  "g.demo.edge",
		"ILP_CONNECTORS":    strings.Join(connectors, " "),
		"ILP_PEER_CA_FILE":  caFile,
		"ILP_SETTLEMENT":    "127.0.0.1:9", // nothing listens: settlement is not part of the demo
		"ALICE_TOKEN":       e.aliceToken,
		"BOB_JWT_SECRET":    e.bobSecret,
		"BOB_AT_CONNECTOR":  randomSecret(),
		"CAROL_CERT_SHA256": hex.EncodeToString(fingerprint[:]),
	}
	return e, nil
}

// list returns the variables as NAME=value pairs for exec.
func (e *edgeEnv) list() []string {
	var l []string
	for k, v := range e.vars {
		l = append(l, k+"="+v)
	}
	return l
}

// randomSecret is 32 random bytes in hex: every demo run has its own
// credentials, so nothing in this repository is a usable secret.
func randomSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// writePeerCA makes a CA, writes its certificate to path, and returns a
// client certificate it signed for peer.
func writePeerCA(path, peer string) (tls.Certificate, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "caddy-ilp demo peers CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: peer},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
