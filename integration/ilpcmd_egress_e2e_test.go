package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestEgressCommand runs `caddy ilp egress` against a running edge whose
// ilp_egress has a draft 3 peer, bob, who holds his reply for a while,
// and a synchronous one, carol, whose URL has a secret in its query. With
// one of bob's exchanges waiting, the command lists both peers, sorted,
// bob's exchange among the waiting and carol's query left out; once bob
// has replied, nothing waits. --json is the admin endpoint's answer, and
// an admin endpoint nobody listens on is an error that says so.
func TestEgressCommand(t *testing.T) {
	const fleetToken, bobIn, bobOut = "fleet-outgoing-token", "bob-token-toward-the-edge", "edge-token-toward-bob"
	// Built now, so that the command runs at once while bob holds his
	// reply (3s), not after a first build.
	if _, err := buildCaddy(); err != nil {
		t.Fatal(err)
	}
	bob := startDraft3Peer(t, bobIn, bobOut, draft3Options{Hold: 3 * time.Second})
	carol, _ := namedConnectors(t, 1)
	startInProcessWith(t, fmt.Sprintf(`
		ilp_peers {
			peer carol {
				token carol-token-toward-the-edge
				url http://%s/ilp?key=carols-secret
				callback_token edge-token-toward-carol
			}
			peer bob {
				token %s
				mode async
				url %s
				callback_url_prefix %s/callbacks/
				callback_token %s
			}
		}`, carol[0], bobIn, bob.url, strings.TrimSuffix(bob.url, "/ilp"), bobOut), egressSites(carol, fleetToken, `{
			callback_url http://127.0.0.1:9082/ilp/replies
		}`)+`
	http://127.0.0.1:9082 {
		ilp_edge {
			address test.edge
			peers bob
			replies
		}
	}`)

	// One Prepare for bob, as a connector of the fleet sends it out
	// through the egress; its answer comes when bob's reply does.
	answer := make(chan string, 1)
	client := testClient(t, 10*time.Second)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:9081/peers/bob/", bytes.NewReader(ilptest.Prepare("g.bob.cmd", 10*time.Second)))
		req.Header.Set("Authorization", "Bearer "+fleetToken)
		res, err := client.Do(req)
		if err != nil {
			answer <- err.Error()
			return
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		answer <- answerOf(res, body)
	}()
	waitUntil(t, 2*time.Second, "bob's exchange waiting", func() bool {
		prepares, _, _ := bob.counts()
		return prepares == 1
	})

	out := string(caddyILP(t, nil, "", "egress", "--admin", "localhost:2999"))
	t.Logf("caddy ilp egress, with bob's reply owed:\n%s", out)
	table := regexp.MustCompile(`(?m)^  NAME +MODE +WAITING +URL\n  bob +async +1 +` + regexp.QuoteMeta(bob.url) + `\n  carol +sync +- +` +
		regexp.QuoteMeta("http://"+carol[0]+"/ilp") + `\n`)
	if !strings.HasPrefix(out, "ilp_egress at /peers/\n  callback URL: http://127.0.0.1:9082/ilp/replies\n") || !table.MatchString(out) {
		t.Errorf("printed\n%s\nwant /peers/, its callback URL, then bob (async, 1 waiting) and carol (sync, no query)", out)
	}
	if strings.Contains(out, "carols-secret") || strings.Contains(out, "edge:") {
		t.Errorf("printed carol's query or an edge name (there is no shared store):\n%s", out)
	}

	var view []struct {
		Peers []struct {
			Name    string `json:"name"`
			Waiting int    `json:"waiting"`
		} `json:"peers"`
	}
	raw := caddyILP(t, nil, "", "egress", "--admin", "localhost:2999", "--json")
	if err := json.Unmarshal(raw, &view); err != nil || len(view) != 1 || len(view[0].Peers) != 2 {
		t.Errorf("--json printed %s (%v), want one egress with two peers", raw, err)
	}

	select {
	case a := <-answer:
		if a != "fulfill" {
			t.Fatalf("bob's Prepare: %s, want his Fulfill", a)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no answer to bob's Prepare")
	}
	out = string(caddyILP(t, nil, "", "egress", "--admin", "localhost:2999"))
	if !regexp.MustCompile(`(?m)^  bob +async +0 `).MatchString(out) {
		t.Errorf("bob has replied, yet the command prints\n%s", out)
	}

	nobody := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	caddyILP(t, nil, "admin endpoint at "+nobody, "egress", "--admin", nobody)
}
