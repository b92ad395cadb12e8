package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestEgressCredentialsRotatedByReload: the edge's token toward a
// synchronous peer is changed by a reload; every packet after it carries
// the new one and none the old, the packets in between all answered. The
// edge's debug log, with a draft 3 peer's exchanges and callbacks in it
// too, holds none of the secrets: the tokens both ways, the JWT secret,
// the signed JWTs, or the secret in the peer's URL query. The secrets are
// {env.*} placeholders, as the docs tell operators to write them: Caddy
// logs the config it loads at DEBUG, literal secrets and all.
func TestEgressCredentialsRotatedByReload(t *testing.T) {
	const fleetToken, oldToken, newToken = "fleet-outgoing-token-s3cr3t", "edge-to-carol-OLD-s3cr3t", "edge-to-carol-NEW-s3cr3t"
	const urlSecret, jwtSecret = "carol-url-key-s3cr3t", "edge-to-bob-jwt-s3cr3t"
	var mu sync.Mutex
	var seen []string // the Authorization of each packet carol got
	carol := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Write(ilptest.Fulfill(nil))
	}))
	defer carol.Close()
	bob := startDraft3Peer(t, bobIn, "", draft3Options{AnyCredential: true})

	for name, v := range map[string]string{"T_FLEET": fleetToken, "T_OLD": oldToken, "T_NEW": newToken, "T_URL_KEY": urlSecret,
		"T_JWT": jwtSecret, "T_BOB_IN": bobIn, "T_CAROL_IN": "carol-token-toward-the-edge-s3cr3t"} {
		t.Setenv(name, v)
	}
	config := func(token string) string {
		return fmt.Sprintf(`
		ilp_peers {
			peer carol {
				token {env.T_CAROL_IN}
				url %s/ilp?key={env.T_URL_KEY}
				callback_token {env.%s}
			}
			peer bob {
				token {env.T_BOB_IN}
				mode async
				url %s
				callback_url_prefix %s/callbacks/
				callback_jwt_secret {env.T_JWT}
			}
		}`, carol.URL, token, bob.url, strings.TrimSuffix(bob.url, "/ilp"))
	}
	sites := egressSites([]string{"127.0.0.1:9"}, "{env.T_FLEET}", `{
			callback_url http://127.0.0.1:9082/ilp/replies
		}`) + `
	http://127.0.0.1:9082 {
		ilp_edge {
			address test.edge
			peers bob
			replies
		}
	}`
	_, logPath := startInProcessWith(t, config("T_OLD"), sites)
	client := testClient(t, 10*time.Second)
	send := func(peer string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:9081/peers/"+peer+"/", bytes.NewReader(ilptest.Prepare("g.x.y", 10*time.Second)))
		req.Header.Set("Authorization", "Bearer "+fleetToken)
		res, err := client.Do(req)
		if err != nil {
			return err.Error()
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return answerOf(res, body)
	}
	answers := map[string]int{}
	for range 5 {
		answers[send("carol")]++
		answers[send("bob")]++
	}
	_, logPath2 := startInProcessWith(t, config("T_NEW"), sites) // a reload
	for range 5 {
		answers[send("carol")]++
		answers[send("bob")]++
	}
	mu.Lock()
	got := append([]string(nil), seen...)
	mu.Unlock()
	t.Logf("20 packets, 10 to carol and 10 to bob (draft 3), a reload in the middle: %v; carol saw %d packets", answers, len(got))
	if answers["fulfill"] != 20 {
		t.Errorf("answers %v, want 20 Fulfills", answers)
	}
	for i, auth := range got {
		want := "Bearer " + oldToken
		if i >= 5 {
			want = "Bearer " + newToken
		}
		if auth != want {
			t.Errorf("carol's packet %d carried %q, want %q", i, auth, want)
		}
	}

	secrets := []string{fleetToken, oldToken, newToken, urlSecret, jwtSecret, bobIn, "carol-token-toward-the-edge-s3cr3t"}
	secrets = append(secrets, bob.authorizations()...) // the JWTs the edge signed
	var logged int
	for _, path := range []string{logPath, logPath2} {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		logged += bytes.Count(raw, []byte("\n"))
		for _, s := range secrets {
			if s = strings.TrimPrefix(s, "Bearer "); s != "" && bytes.Contains(raw, []byte(s)) {
				i := bytes.Index(raw, []byte(s))
				t.Errorf("the edge's log %s holds the secret %q: …%s…", path, s, raw[max(i-300, 0):min(i+100, len(raw))])
			}
		}
	}
	if logged < 20 {
		t.Errorf("the edge logged %d lines at DEBUG: the check would prove nothing", logged)
	}
}
