package integration

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestPeerLimitsEndToEnd configures limits in a Caddyfile and sends
// through both front doors: a Prepare over max_packet_amount gets F08
// with the amounts STREAM resizes by, packets beyond the rate get T05,
// and none of the refused ones reaches the connector.
func TestPeerLimitsEndToEnd(t *testing.T) {
	var delivered atomic.Int32
	conn := newConnector(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		delivered.Add(1)
		w.Write(ilptest.Fulfill([]byte("ok")))
	})
	startInProcess(t, fmt.Sprintf(`
	http://127.0.0.1:9080 {
		ilp_edge {
			address test.edge
			max_packet_amount 1000
			peer alice {
				token %s
				rate 4 per 1h
			}
		}
		handle /reverse_proxy {
			reverse_proxy %[2]s {
				lb_policy ilp_prefix
			}
		}
		handle /ilp_proxy {
			ilp_proxy %[2]s
		}
	}`, hostileToken, hostport(conn.Server)))
	client := testClient(t, 10*time.Second)
	send := func(door string, amount uint64) (string, []byte) {
		body := ilptest.NewPrepare(ilpdest.Prepare{Amount: amount, Destination: []byte("g.limits.alice")})
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:9080/"+door, strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+hostileToken)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		reply, _ := io.ReadAll(res.Body)
		a := answerOf(res, reply)
		r, _ := ilpdest.ReadReject(reply)
		return a, r.Data
	}
	code, data := send("ilp_proxy", 1001)
	if code != "F08" || len(data) != 16 || binary.BigEndian.Uint64(data) != 1001 || binary.BigEndian.Uint64(data[8:]) != 1000 {
		t.Errorf("1001 over max_packet_amount 1000: %s, data %x", code, data)
	}
	// The rate is alice's, whichever door: 4 packets, then T05.
	var got []string
	for i := range 6 {
		a, _ := send([]string{"reverse_proxy", "ilp_proxy"}[i%2], 10)
		got = append(got, a)
	}
	if want := "fulfill fulfill fulfill fulfill T05 T05"; strings.Join(got, " ") != want {
		t.Errorf("6 packets at a rate of 4 per hour: %v, want %s", got, want)
	}
	if n := delivered.Load(); n != 4 {
		t.Errorf("the connector got %d packets, want the 4 admitted", n)
	}
}
