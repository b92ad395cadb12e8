package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// adminStatus is one ilp_proxy handler as the admin API describes it.
type adminStatus struct {
	Upstreams []struct {
		Address         string `json:"address"`
		Healthy         bool   `json:"healthy"`
		PassiveFailures int    `json:"passive_failures"`
	} `json:"upstreams"`
	PrefixSegments int    `json:"prefix_segments"`
	Key            string `json:"key"`
	WouldSendTo    string `json:"would_send_to"`
}

func getAdmin(t *testing.T, path string, wantStatus int) []adminStatus {
	t.Helper()
	res, err := http.Get("http://localhost:2999" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != wantStatus {
		t.Fatalf("GET %s: HTTP %d, want %d: %s", path, res.StatusCode, wantStatus, body)
	}
	var s []adminStatus
	if wantStatus == http.StatusOK {
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
	}
	return s
}

// TestAdminUpstreamsAndRoute: the admin API shows ilp_proxy's upstreams
// and their health as packets find one dead, and where a packet would go
// now, which is where the edge then sends it; `caddy ilp route --admin`
// prints the same.
func TestAdminUpstreamsAndRoute(t *testing.T) {
	var upstreams []string
	names := map[string]string{}
	for i := range 2 {
		name := fmt.Sprintf("c%d", i)
		c := newConnector(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
			w.Write(ilptest.Fulfill([]byte(name)))
		})
		upstreams = append(upstreams, hostport(c.Server))
		names[hostport(c.Server)] = name
	}
	dead := ilptest.DeadAddress(t)
	upstreams = append(upstreams, dead)
	startInProcess(t, bothDoors(9080, hostileToken, strings.Join(upstreams, " "), "", "fail_duration 1m"))

	s := getAdmin(t, "/ilp/upstreams", http.StatusOK)
	if len(s) != 1 || len(s[0].Upstreams) != 3 || s[0].PrefixSegments != 3 {
		t.Fatalf("upstreams: %+v, want one ilp_proxy with 3", s)
	}
	for _, u := range s[0].Upstreams {
		if !u.Healthy || u.PassiveFailures != 0 {
			t.Errorf("before any packet: %+v", u)
		}
	}

	// A prefix whose first choice is the dead connector.
	var dest string
	for i := 0; dest == ""; i++ {
		d := fmt.Sprintf("g.admin%d.bank.alice", i)
		if r := getAdmin(t, "/ilp/route?address="+d, http.StatusOK); r[0].Upstreams[0].Address == dead {
			dest = d
		}
	}
	client := testClient(t, 10*time.Second)
	first := fulfiller(t, client, "http://127.0.0.1:9080/ilp_proxy", dest) // refused by the dead one, moved on
	r := getAdmin(t, "/ilp/route?address="+dest, http.StatusOK)[0]
	if r.Key != strings.TrimSuffix(dest, ".alice") || r.Upstreams[0].Address != dead || r.Upstreams[0].Healthy ||
		r.Upstreams[0].PassiveFailures != 1 {
		t.Errorf("after the dead connector refused a packet: %+v", r)
	}
	if names[r.WouldSendTo] != first {
		t.Errorf("would send to %s (%s), the packet went to %s", r.WouldSendTo, names[r.WouldSendTo], first)
	}
	if got := fulfiller(t, client, "http://127.0.0.1:9080/ilp_proxy", dest); names[r.WouldSendTo] != got {
		t.Errorf("would send to %s, the next packet went to %s", names[r.WouldSendTo], got)
	}

	var viaCLI []adminStatus
	if err := json.Unmarshal(caddyILP(t, nil, "", "route", dest, "--admin", "localhost:2999"), &viaCLI); err != nil {
		t.Fatal(err)
	}
	if len(viaCLI) != 1 || viaCLI[0].WouldSendTo != r.WouldSendTo {
		t.Errorf("caddy ilp route --admin: %+v, want would_send_to %s", viaCLI, r.WouldSendTo)
	}
	getAdmin(t, "/ilp/route?address=not+an+address", http.StatusBadRequest)
	caddyILP(t, nil, "connection refused", "route", "g.a.b", "--admin", ilptest.DeadAddress(t))
}
