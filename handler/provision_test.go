package handler

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

func provision(t *testing.T, e *Edge) error {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := e.Provision(ctx); err != nil {
		return err
	}
	return e.Validate()
}

func TestSecretsFromPlaceholders(t *testing.T) {
	t.Setenv("ILP_TEST_TOKEN", "token-from-env")
	file := filepath.Join(t.TempDir(), "jwt")
	if err := os.WriteFile(file, []byte("jwt-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &Edge{Address: testAddress, Peers: []*Peer{
		{Name: "env", Tokens: []string{"{env.ILP_TEST_TOKEN}"}},
		{Name: "file", JWTSecrets: []string{"{file." + file + "}"}},
	}}
	if err := provision(t, e); err != nil {
		t.Fatal(err)
	}
	core, _ := observer.New(zap.DebugLevel)
	e.logger = zap.New(core)
	for auth, want := range map[string]string{
		"Bearer token-from-env": "env",
		"Bearer " + ilptest.SignJWT("HS256", "jwt-from-file", ilptest.PluginClaims(time.Minute)): "file",
	} {
		r := newRequest(http.MethodPost, prepareBytes("g.a", time.Minute), "Authorization", auth)
		if w, err := serve(t, e, r, &backend{}); err != nil || w.Code != 200 {
			t.Errorf("%s: err %v", want, err)
		}
	}
	// The placeholder text itself is not a token.
	r := newRequest(http.MethodPost, prepareBytes("g.a", time.Minute), "Authorization", "Bearer {env.ILP_TEST_TOKEN}")
	if _, err := serve(t, e, r, &backend{}); err == nil {
		t.Error("placeholder text accepted as a token")
	}
}

func TestProvisionErrors(t *testing.T) {
	for name, c := range map[string]struct {
		e    *Edge
		want string
	}{
		"no address":       {&Edge{Peers: []*Peer{{Name: "a", Tokens: []string{"t"}}}}, "not a valid ILP address"},
		"bad address":      {&Edge{Address: "g", Peers: []*Peer{{Name: "a", Tokens: []string{"t"}}}}, "not a valid ILP address"},
		"no peers":         {&Edge{Address: testAddress}, "no peers"},
		"peer no secrets":  {&Edge{Address: testAddress, Peers: []*Peer{{Name: "a"}}}, "no token"},
		"same name":        {&Edge{Address: testAddress, Peers: []*Peer{{Name: "a", Tokens: []string{"t1"}}, {Name: "a", Tokens: []string{"t2"}}}}, "defined twice"},
		"shared token":     {&Edge{Address: testAddress, Peers: []*Peer{{Name: "a", Tokens: []string{"same-secret"}}, {Name: "b", Tokens: []string{"same-secret"}}}}, `also a token of peer "a"`},
		"shared jwt":       {&Edge{Address: testAddress, Peers: []*Peer{{Name: "a", JWTSecrets: []string{"same-secret"}}, {Name: "b", JWTSecrets: []string{"same-secret"}}}}, `also a jwt_secret of peer "a"`},
		"empty env secret": {&Edge{Address: testAddress, Peers: []*Peer{{Name: "a", Tokens: []string{"{env.ILP_TEST_UNSET_VAR}"}}}}, "is empty"},
		"missing file":     {&Edge{Address: testAddress, Peers: []*Peer{{Name: "a", Tokens: []string{"{file./nonexistent/secret}"}}}}, "placeholder"},
		"bad fingerprint":  {&Edge{Address: testAddress, Peers: []*Peer{{Name: "a", ClientCerts: []string{"abcd"}}}}, "fingerprint"},
		"bad mode":         {&Edge{Address: testAddress, DestinationHeader: "maybe", Peers: []*Peer{{Name: "a", Tokens: []string{"t"}}}}, "destination_header"},
		"tiny max":         {&Edge{Address: testAddress, MaxPacketSize: 10, Peers: []*Peer{{Name: "a", Tokens: []string{"t"}}}}, "max_packet_size"},
		"forward framing":  {&Edge{Address: testAddress, ForwardHeaders: []string{"transfer-encoding"}, Peers: []*Peer{{Name: "a", Tokens: []string{"t"}}}}, "may not be forwarded"},
	} {
		err := provision(t, c.e)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, c.want)
		}
		// A config error must not echo a secret.
		if err != nil && strings.Contains(err.Error(), "same-secret") {
			t.Errorf("%s: error leaks the secret: %v", name, err)
		}
	}
}

// TestTenThousandPeers: provisioning scales, and lookup is by index, not
// by trying each peer.
func TestTenThousandPeers(t *testing.T) {
	e := &Edge{Address: testAddress}
	for i := 0; i < 10000; i++ {
		e.Peers = append(e.Peers, &Peer{Name: fmt.Sprintf("peer%05d", i), Tokens: []string{fmt.Sprintf("token-%05d-secret", i)}})
	}
	if err := provision(t, e); err != nil {
		t.Fatal(err)
	}
	core, _ := observer.New(zap.DebugLevel)
	e.logger = zap.New(core)
	for _, i := range []int{0, 4242, 9999} {
		r := newRequest(http.MethodPost, prepareBytes("g.a", time.Minute), "Authorization", fmt.Sprintf("Bearer token-%05d-secret", i))
		if _, err := serve(t, e, r, &backend{}); err != nil {
			t.Fatal(err)
		}
		if got := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).ReplaceAll("{http.ilp.peer}", ""); got != fmt.Sprintf("peer%05d", i) {
			t.Errorf("token %d authenticated as %q", i, got)
		}
	}
}

// TestNoSecretInLogsOrErrors drives every failure path with secrets in
// play and checks that none of them appears in any log entry or error.
func TestNoSecretInLogsOrErrors(t *testing.T) {
	e, logs := testEdge(t, nil)
	secrets := []string{aliceToken, bobJWT, carolRaw, "alice-upstream"}
	badJWT := ilptest.SignJWT("HS256", bobJWT, map[string]any{"exp": time.Now().Unix() - 100})
	var errs []error
	for _, auth := range []string{"Bearer " + aliceToken + "x", "Bearer " + badJWT, aliceToken[:10], "Bearer " + aliceToken} {
		for _, body := range [][]byte{prepareBytes("g.a", time.Minute), prepareBytes("g.a", -time.Minute), []byte("junk")} {
			r := newRequest(http.MethodPost, body, "Authorization", auth)
			_, err := serve(t, e, r, &backend{answer: func(http.ResponseWriter, *http.Request) error {
				return fmt.Errorf("upstream failed")
			}})
			errs = append(errs, err)
		}
	}
	if logs.Len() == 0 {
		t.Fatal("nothing logged: the test checks nothing")
	}
	for _, entry := range logs.All() {
		text := entry.Message + fmt.Sprint(entry.ContextMap())
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("log entry %q contains a secret", text)
			}
		}
	}
	for _, err := range errs {
		for _, s := range secrets {
			if err != nil && strings.Contains(err.Error(), s) {
				t.Errorf("error %q contains a secret", err)
			}
		}
	}
}

// TestProvisionLogsWhatItServes: one Info line says who the peers are and
// how each authenticates, and holds none of their secrets.
func TestProvisionLogsWhatItServes(t *testing.T) {
	e, logs := testEdge(t, nil)
	e.logReady() // as Provision does, into the observed log
	lines := logs.FilterMessage("ilp_edge ready").All()
	if len(lines) != 1 {
		t.Fatalf("%d ready lines, want 1", len(lines))
	}
	peers := fmt.Sprint(lines[0].ContextMap()["peers"])
	for _, want := range []string{"alice (token+upstream_token)", "bob (jwt_secret)", "carol (token)"} {
		if !strings.Contains(peers, want) {
			t.Errorf("peers %s, want %q in it", peers, want)
		}
	}
	for _, secret := range []string{aliceToken, bobJWT, carolRaw, "alice-upstream"} {
		if strings.Contains(fmt.Sprint(lines[0].ContextMap()), secret) {
			t.Errorf("the ready line holds a secret (%.4s…)", secret)
		}
	}
}
