package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
	"github.com/ilp-edge/caddy-ilp/internal/pkitest"
)

// TestEgressOneConnectionPerPeer counts the connections a peer gets from
// the fleet: three real ilp-connector 23 instances send 90 Prepares, 30
// at a time, for carol, an https peer that speaks HTTP/2 and wants the
// edge's client certificate. Each instance's account for carol points at
// the edge's egress, so carol sees the edge's connections only: the
// packets arrive over one HTTP/2 connection (at most two: the issue's
// target is 1–2), where the connectors, sending to her directly, would
// each have opened their own (ilp-plugin-http's HTTP/1.1 agent opens one
// per packet in flight). net/http dials for each request of the first
// burst that finds no connection yet, and closes those dials unused once
// the first HTTP/2 connection is up: they are counted apart.
func TestEgressOneConnectionPerPeer(t *testing.T) {
	needNode(t)
	edgeCA, carolCA := pkitest.NewCA(t, "edge"), pkitest.NewCA(t, "carol")
	cert := edgeCA.Client(t, "edge-to-carol")
	var conns atomic.Int64
	var mu sync.Mutex
	protos, used := map[string]int{}, map[string]bool{} // used: the connections that carried a packet
	carol := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		mu.Lock()
		protos[r.Proto]++
		used[r.RemoteAddr] = true
		mu.Unlock()
		time.Sleep(20 * time.Millisecond) // so that packets overlap
		w.Write(ilptest.Fulfill(nil))
	}))
	carol.TLS = carolCA.ServerConfig(t, edgeCA)
	carol.EnableHTTP2 = true
	carol.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	carol.StartTLS()
	defer carol.Close()
	carol.TLS.NextProtos = []string{"h2", "http/1.1"}

	const fleetToken = "fleet-outgoing-token"
	ups := startConnectorFleet(t, 9, "--route-prefix", "g.bob", // sendPrepares sends to g.bob.*
		"--up-url", "http://127.0.0.1:9081/peers/carol/", "--up-token", fleetToken)
	startInProcessWith(t, fmt.Sprintf(`
		ilp_peers {
			peer carol {
				token unused-inbound-token
				url %s/ilp
				callback_tls {
					cert_file %s
					key_file %s
					ca_file %s
				}
			}
		}`, carol.URL, cert.CertFile, cert.KeyFile, carolCA.File), egressSites(ups, fleetToken, ""))

	const n = 90
	answers := tally(sendPrepares(t, []string{"127.0.0.1:9080"}, n, 30, 10*time.Second))
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d Prepares from 3 ilp-connectors out through the edge to an HTTP/2 peer: %v; the peer got %v over %d connection(s) (%d dialled in all)",
		n, answers, protos, len(used), conns.Load())
	if answers["fulfill"] != n {
		t.Errorf("answers %v, want %d Fulfills", answers, n)
	}
	if len(used) > 2 || protos["HTTP/2.0"] != n {
		t.Errorf("the peer got %v over %d connections, want %d packets over HTTP/2 on 1 or 2", protos, len(used), n)
	}
}
