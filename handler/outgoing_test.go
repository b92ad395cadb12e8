package handler

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestPeerURL: a peer's `url` in the Caddyfile is checked as ilp_egress
// checks it at provisioning, and never quoted in an error (its query may
// hold a secret).
func TestPeerURL(t *testing.T) {
	for _, c := range []struct{ url, err string }{
		{"https://bob.example/ilp", ""},
		{"http://127.0.0.1:7768/?key=s3kr1t-in-query", ""},
		{"https://{env.BOB_HOST}/ilp", ""}, // checked once resolved
		{"ftp://bob.example/", "scheme"},
		{"bob.example/ilp", "scheme"},
		{"https:///ilp", "no host"},
		{"https://user:s3kr1t-in-userinfo@bob.example/", "userinfo"},
		{"https://bob.example/ilp#frag", "fragment"},
		{"https://bob.example/accounts/%/ilp?q=s3kr1t-in-query", "multi-mode"},
	} {
		d := caddyfile.NewTestDispenser("peer bob {\n token in\n url " + c.url + "\n}")
		d.Next()
		p, err := unmarshalPeer(d)
		switch {
		case c.err == "" && (err != nil || p.EgressURL != c.url):
			t.Errorf("url %s: %v, %+v", c.url, err, p)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("url %s: error %v, want one about %s", c.url, err, c.err)
		case err != nil && strings.Contains(err.Error(), "s3kr1t"):
			t.Errorf("url %s: the error %q quotes the URL", c.url, err)
		}
	}
	d := caddyfile.NewTestDispenser("peer bob {\n token in\n url https://a/\n url https://b/\n}")
	d.Next()
	if _, err := unmarshalPeer(d); err == nil {
		t.Error("url given twice: no error")
	}
}

// TestOutgoingAuthorization: callback_token as a bearer token, resolved
// once; callback_jwt_secret as a JWT signed at each call, which the edge's
// own verifier takes for the secret; neither, nothing; both, an error.
func TestOutgoingAuthorization(t *testing.T) {
	t.Setenv("OUTGOING_TEST_TOKEN", "from-env")
	repl := caddy.NewReplacer()
	auth, err := (&Peer{CallbackToken: "{env.OUTGOING_TEST_TOKEN}"}).OutgoingAuthorization(repl)
	if err != nil || auth() != "Bearer from-env" {
		t.Fatalf("callback_token: %v", err)
	}
	auth, err = (&Peer{CallbackJWTSecret: "s3cret"}).OutgoingAuthorization(repl)
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := newAuthenticator([]*Peer{{Name: "edge", JWTSecrets: []string{"s3cret"}}}, repl)
	if err != nil {
		t.Fatal(err)
	}
	a.requireExp = true
	if p, err := a.authenticateJWT(bearerToken(auth()), ""); err != nil || p.name != "edge" {
		t.Errorf("the JWT signed with callback_jwt_secret: %v", err)
	}
	if auth, err := (&Peer{}).OutgoingAuthorization(repl); auth != nil || err != nil {
		t.Errorf("no credential: %v", err)
	}
	if _, err := (&Peer{CallbackToken: "a", CallbackJWTSecret: "b"}).OutgoingAuthorization(repl); err == nil {
		t.Error("callback_token and callback_jwt_secret: no error")
	}
}
