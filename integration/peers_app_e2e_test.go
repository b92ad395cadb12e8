package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestPeersDefinedOnce defines two peers once, in the ilp_peers global
// option, for a Caddy site that names one of them and the ilp app's
// front door that takes them all. alice's rate limit (6 packets a
// minute) is one budget across both doors: of 4 packets through each,
// 6 are fulfilled and 2 get T05. bob, whom the site does not name, is
// refused there (401) and served by the front door.
func TestPeersDefinedOnce(t *testing.T) {
	conn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.Header.Get("Authorization") != "Bearer "+connToken {
			w.WriteHeader(http.StatusUnauthorized) // the upstream_token defined with the peer, in both doors
			return
		}
		w.Write(ilptest.Fulfill([]byte("ok")))
	}))
	t.Cleanup(conn.Close)
	frontDoor := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startInProcessWith(t, fmt.Sprintf(`
		ilp_peers {
			peer alice {
				token %s
				upstream_token %s
				rate 6 per 1m
			}
			peer bob {
				token %s
				upstream_token %s
			}
		}
		ilp {
			server %s {
				ilp_edge {
					address test.edge
				}
				ilp_proxy %s
			}
		}`, aliceToken, connToken, carolToken, connToken, frontDoor, hostport(conn)), fmt.Sprintf(`
	http://127.0.0.1:9080 {
		ilp_edge {
			address test.edge
			peers alice
		}
		ilp_proxy %s
	}`, hostport(conn)))

	client := testClient(t, 5*time.Second)
	send := func(url, token string) string {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(ilptest.Prepare("g.peers.alice", time.Minute))))
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return answerOf(res, body)
	}
	site, door := "http://127.0.0.1:9080/", "http://"+frontDoor+"/"
	answers := map[string]int{}
	for range 4 {
		answers[send(site, aliceToken)]++
		answers[send(door, aliceToken)]++
	}
	t.Logf("alice, 4 packets through each door with one rate of 6 a minute: %v", answers)
	if answers["fulfill"] != 6 || answers["T05"] != 2 {
		t.Errorf("alice: %v, want 6 fulfilled and 2 T05: one budget for both doors", answers)
	}
	if got := send(site, carolToken); got != "401" {
		t.Errorf("bob through the site that names alice only: %s, want 401", got)
	}
	if got := send(door, carolToken); got != "fulfill" {
		t.Errorf("bob through the front door that takes every peer: %s, want fulfill", got)
	}
}
