package handler

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

func ildcpRequest(condition []byte) []byte {
	return ilpdest.AppendPrepare(nil, ilpdest.Prepare{Destination: []byte(ilpdest.PeerConfig),
		ExpiresAt: time.Now().Add(time.Minute), ExecutionCondition: condition})
}

func TestILDCPAnsweredAtTheEdge(t *testing.T) {
	e, _ := testEdge(t, func(e *Edge) {
		e.ILDCP = &ILDCP{AddressPrefix: "g.edge", AssetCode: "XRP", AssetScale: 9}
		e.Peers[2].ILDCP = &ILDCP{AddressPrefix: "g.other", AssetCode: "USD", AssetScale: 2} // carol's own
	})
	answered := counterDelta(metricPeerProtocol.WithLabelValues("alice", "ildcp"))
	for _, c := range []struct{ auth, want string }{
		{"Bearer " + aliceToken, string(ilpdest.AppendILDCPFulfill(nil, ilpdest.ILDCPResponse{ClientAddress: "g.edge.alice", AssetScale: 9, AssetCode: "XRP"}))},
		{carolRaw, string(ilpdest.AppendILDCPFulfill(nil, ilpdest.ILDCPResponse{ClientAddress: "g.other.carol", AssetScale: 2, AssetCode: "USD"}))},
	} {
		be := &backend{}
		// The header says elsewhere: the packet's own destination decides.
		r := newRequest(http.MethodPost, ildcpRequest(ilpdest.PeerProtocolCondition), "Authorization", c.auth, "ILP-Destination", "g.somewhere.else")
		w, err := serve(t, e, r, be)
		if err != nil {
			t.Fatal(err)
		}
		if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), []byte(c.want)) {
			t.Errorf("%s: HTTP %d, %x; want the ILDCP Fulfill %x", c.auth[:5], w.Code, w.Body.Bytes(), c.want)
		}
		if be.calls != 0 {
			t.Errorf("%s: the request reached a connector", c.auth[:5])
		}
	}
	if got := answered(); got != 1 {
		t.Errorf("caddy_ilp_peer_protocol_answers_total{peer=alice,protocol=ildcp} grew by %v, want 1", got)
	}
	// A peer.config request with another condition is not ILDCP: F01.
	w, err := serve(t, e, newRequest(http.MethodPost, ildcpRequest(make([]byte, 32)), "Authorization", "Bearer "+aliceToken), &backend{})
	wantReject(t, w, err, "F01")
}

func TestILDCPForwardedWithoutConfig(t *testing.T) {
	e, _ := testEdge(t, nil)
	be := &backend{}
	if _, err := serve(t, e, newRequest(http.MethodPost, ildcpRequest(ilpdest.PeerProtocolCondition), "Authorization", "Bearer "+aliceToken), be); err != nil {
		t.Fatal(err)
	}
	if be.calls != 1 {
		t.Errorf("without ildcp the request must go to the connector, got %d calls", be.calls)
	}
}

func TestILDCPConfigErrors(t *testing.T) {
	for name, c := range map[string]struct {
		ildcp *ILDCP
		peer  string
		want  string
	}{
		"bad prefix":         {&ILDCP{AddressPrefix: "nope", AssetCode: "XRP"}, "a", "address_prefix"},
		"no asset code":      {&ILDCP{AddressPrefix: "g.edge"}, "a", "asset_code"},
		"name not a segment": {&ILDCP{AddressPrefix: "g.edge", AssetCode: "XRP"}, "a b", "last segment"},
	} {
		e := &Edge{Address: testAddress, ILDCP: c.ildcp, Peers: []*Peer{{Name: c.peer, Tokens: []string{"t"}}}}
		err := provision(t, e)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error about %s", name, err, c.want)
		}
		e.Cleanup()
	}
}
