package handler

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func TestClientCertificate(t *testing.T) {
	der := []byte("stand-in DER bytes of a peer certificate")
	sum := sha256.Sum256(der)
	fp := hex.EncodeToString(sum[:])
	e, _ := testEdge(t, func(e *Edge) {
		e.Peers = append(e.Peers, &Peer{Name: "dave", ClientCerts: []string{fp}})
	})
	cert := &x509.Certificate{Raw: der}
	for _, c := range []struct {
		name  string
		state *tls.ConnectionState
		want  string // peer, or "" for 401
	}{
		{"verified chain", &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}, "dave"},
		// Presented but not verified (client_auth mode request/require):
		// not trusted.
		{"unverified certificate", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}, ""},
		{"other verified certificate", &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{Raw: []byte("x")}}}}, ""},
	} {
		r := newRequest(http.MethodPost, prepareBytes("g.a", time.Minute))
		r.TLS = c.state
		w, err := serve(t, e, r, &backend{})
		if c.want == "" {
			wantStatus(t, err, http.StatusUnauthorized)
			continue
		}
		if err != nil || w.Code != 200 || caddyhttp.GetVar(r.Context(), VarPeer) != c.want {
			t.Errorf("%s: err %v, peer %v", c.name, err, caddyhttp.GetVar(r.Context(), VarPeer))
		}
	}
}
