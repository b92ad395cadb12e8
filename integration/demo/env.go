package main

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ilp-edge/caddy-ilp/integration/internal/proc"
	"github.com/ilp-edge/caddy-ilp/integration/internal/testpki"
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
	carol, err := testpki.PeerCA(caFile, "carol")
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
		"ILP_FLEET_ADDRESS": "g.demo",
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
