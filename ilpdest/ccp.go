package ilpdest

// The destinations of the connector-to-connector routing protocol's
// Prepares (CCP, as ilp-protocol-ccp and ilp-connector speak it): a peer
// asks for routes with peer.route.control and sends its own with
// peer.route.update. Both carry PeerProtocolCondition.
const (
	PeerRouteControl = "peer.route.control"
	PeerRouteUpdate  = "peer.route.update"
)

// AppendCCPFulfill appends to dst the Fulfill that accepts a CCP request,
// as ilp-protocol-ccp encodes it: a fulfillment of 32 zero bytes and no
// data.
func AppendCCPFulfill(dst []byte) []byte { return AppendFulfill(dst, make([]byte, 32), nil) }
