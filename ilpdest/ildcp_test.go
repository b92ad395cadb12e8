package ilpdest

import (
	"encoding/hex"
	"strings"
	"testing"
)

// The vectors are ilp-protocol-ildcp 2.2.3's encoding, which ilp-connector
// and ilp-plugin-http's multi mode answer with (RFC 31).
func TestILDCPVectors(t *testing.T) {
	if got := hex.EncodeToString(PeerProtocolCondition); got != "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925" {
		t.Errorf("peer protocol condition %s", got)
	}
	got := hex.EncodeToString(AppendILDCPFulfill(nil, ILDCPResponse{ClientAddress: "example.edge.alice", AssetScale: 9, AssetCode: "XRP"}))
	want := "0d39" + strings.Repeat("00", 32) + "18" + "126578616d706c652e656467652e616c696365" + "09" + "03585250"
	if got != want {
		t.Errorf("ILDCP Fulfill\n got %s\nwant %s", got, want)
	}
	f, err := ReadFulfill(AppendILDCPFulfill(nil, ILDCPResponse{ClientAddress: "g." + strings.Repeat("a", 300), AssetScale: 2, AssetCode: "USD"}))
	if err != nil || len(f.Data) != 3+302+1+4 {
		t.Errorf("a 302-byte address (a two-byte length): %v, data %d bytes", err, len(f.Data))
	}
}

// The vector is ilp-protocol-ccp 1.2.3's serializeCcpResponse(), what
// ilp-connector 23 answers CCP requests with.
func TestCCPFulfillVector(t *testing.T) {
	want := "0d21" + strings.Repeat("00", 32) + "00"
	if got := hex.EncodeToString(AppendCCPFulfill(nil)); got != want {
		t.Errorf("CCP Fulfill\n got %s\nwant %s", got, want)
	}
}
