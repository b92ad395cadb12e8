package handler

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

func ccpRequest(dest string, condition []byte) []byte {
	return ilpdest.AppendPrepare(nil, ilpdest.Prepare{Destination: []byte(dest),
		ExpiresAt: time.Now().Add(time.Minute), ExecutionCondition: condition, Data: []byte("a route update")})
}

// TestRoutingProtocolLocal: with routing_protocol local, a peer's CCP
// requests get the Fulfill ilp-protocol-ccp answers with, from the edge,
// and reach no connector; a peer that keeps sticky has them forwarded;
// one with the wrong condition gets F01.
func TestRoutingProtocolLocal(t *testing.T) {
	e, _ := testEdge(t, func(e *Edge) {
		e.RoutingProtocol = RoutingLocal
		e.Peers[2].RoutingProtocol = RoutingSticky // carol's own
	})
	answered := counterDelta(metricPeerProtocol.WithLabelValues("alice", "ccp"))
	for _, dest := range []string{ilpdest.PeerRouteControl, ilpdest.PeerRouteUpdate} {
		be := &backend{}
		r := newRequest(http.MethodPost, ccpRequest(dest, ilpdest.PeerProtocolCondition), "Authorization", "Bearer "+aliceToken, "ILP-Destination", "g.somewhere.else")
		w, err := serve(t, e, r, be)
		if err != nil {
			t.Fatal(err)
		}
		if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), ilpdest.AppendCCPFulfill(nil)) || be.calls != 0 {
			t.Errorf("alice's %s: HTTP %d, %x, %d calls to the connector; want the CCP Fulfill and none", dest, w.Code, w.Body.Bytes(), be.calls)
		}
		be = &backend{}
		if _, err := serve(t, e, newRequest(http.MethodPost, ccpRequest(dest, ilpdest.PeerProtocolCondition), "Authorization", carolRaw), be); err != nil {
			t.Fatal(err)
		}
		if be.calls != 1 {
			t.Errorf("carol's %s (sticky): %d calls to the connector, want 1", dest, be.calls)
		}
	}
	if got := answered(); got != 2 {
		t.Errorf("caddy_ilp_peer_protocol_answers_total{peer=alice,protocol=ccp} grew by %v, want 2", got)
	}
	w, err := serve(t, e, newRequest(http.MethodPost, ccpRequest(ilpdest.PeerRouteUpdate, make([]byte, 32)), "Authorization", "Bearer "+aliceToken), &backend{})
	wantReject(t, w, err, "F01")
	// Any other packet still goes to a connector.
	be := &backend{}
	if _, err := serve(t, e, newRequest(http.MethodPost, prepareBytes("g.us.bank.alice", time.Minute), "Authorization", "Bearer "+aliceToken), be); err != nil || be.calls != 1 {
		t.Errorf("a payment packet: %v, %d calls, want it forwarded", err, be.calls)
	}
}

func TestRoutingProtocolSettings(t *testing.T) {
	var e Edge
	err := e.UnmarshalCaddyfile(caddyfile.NewTestDispenser("ilp_edge {\naddress g.e\nrouting_protocol local\npeer a {\ntoken t\nrouting_protocol sticky\n}\npeer b {\ntoken u\nrouting_protocol fanout\n}\n}"))
	if err != nil || e.RoutingProtocol != RoutingLocal || e.Peers[0].RoutingProtocol != RoutingSticky || e.Peers[1].RoutingProtocol != RoutingFanout {
		t.Errorf("parsed %q, %q and %q, %v", e.RoutingProtocol, e.Peers[0].RoutingProtocol, e.Peers[1].RoutingProtocol, err)
	}
	for _, in := range []string{"ilp_edge {\naddress g.e\nrouting_protocol everywhere\n}", "ilp_edge {\naddress g.e\npeer a {\ntoken t\nrouting_protocol none\n}\n}"} {
		if err := new(Edge).UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err == nil || !strings.Contains(err.Error(), "want sticky, local or fanout") {
			t.Errorf("%q: %v, want an error naming the choices", in, err)
		}
	}
}
