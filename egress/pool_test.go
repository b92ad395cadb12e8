package egress

import (
	"net/http"
	"testing"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
	"github.com/ilp-edge/caddy-ilp/internal/pkitest"
	"github.com/ilp-edge/caddy-ilp/internal/tlsclient"
)

// TestEgressPoolKeptAcrossReload: a reload that keeps a peer's URL host,
// timeouts and TLS keeps its connections: the packets after it go over
// the HTTP/2 connection made before it, even with a new token (the token
// is per request). Another host, or another client certificate, is
// another pool.
func TestEgressPoolKeptAcrossReload(t *testing.T) {
	edgeCA := pkitest.NewCA(t, "edge")
	cert := edgeCA.Client(t, "edge-to-bob")
	p, bobCA := startTLSPeer(t, edgeCA)
	p.setAnswer(func(w http.ResponseWriter, _ *http.Request) { w.Write(ilptest.Fulfill(nil)) })
	c := bob(p.srv.URL)
	c.CallbackTLS = &tlsclient.Config{CertFile: cert.CertFile, KeyFile: cert.KeyFile, CAFile: bobCA.File}
	e, old := testEdge(t), testEgress(t, c)
	if res := send(t, e, old, "/peers/bob/", ilptest.Prepare("g.bob.alice", ttl)); res.w.Code != http.StatusOK {
		t.Fatalf("before the reload: HTTP %d", res.w.Code)
	}
	rotated := *c
	rotated.CallbackToken = "edge-to-bob-rotated"
	reloaded := testEgress(t, &rotated)
	old.Cleanup() // the old config goes once the new one runs
	res := send(t, e, reloaded, "/peers/bob/", ilptest.Prepare("g.bob.alice", ttl))
	if res.w.Code != http.StatusOK || p.last(t).auth != "Bearer edge-to-bob-rotated" {
		t.Fatalf("after the reload: HTTP %d with %q", res.w.Code, p.last(t).auth)
	}
	if n := p.conns.Load(); n != 1 {
		t.Errorf("%d connections to bob across the reload, want 1", n)
	}

	other := edgeCA.Client(t, "edge-to-bob-renewed")
	renewed := *c
	renewed.CallbackTLS = &tlsclient.Config{CertFile: other.CertFile, KeyFile: other.KeyFile, CAFile: bobCA.File}
	moved := *c
	moved.EgressURL = "https://localhost:1/"
	for name, cfg := range map[string]*handler.Peer{"another certificate": &renewed, "another host": &moved} {
		if g := testEgress(t, cfg); g.peers["bob"].transport == reloaded.peers["bob"].transport {
			t.Errorf("%s: the same pool", name)
		}
	}
}
