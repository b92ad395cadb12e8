package ilpdest

import "crypto/sha256"

// PeerConfig is the destination of an ILDCP request (RFC 31), with which a
// child asks its parent for its ILP address and asset.
const PeerConfig = "peer.config"

// PeerProtocolCondition is the execution condition of the peer protocol's
// Prepares (peer.config, peer.route.*): the SHA-256 of 32 zero bytes,
// which the all-zero fulfillment of their Fulfills matches.
var PeerProtocolCondition = func() []byte { c := sha256.Sum256(make([]byte, 32)); return c[:] }()

// ILDCPResponse is what a parent tells a child in answer to peer.config.
type ILDCPResponse struct {
	ClientAddress string // the child's ILP address
	AssetScale    uint8
	AssetCode     string
}

// AppendILDCPFulfill appends to dst the Fulfill answering an ILDCP request
// with r, as ilp-protocol-ildcp encodes it: a fulfillment of 32 zero
// bytes, and data holding the address (var-octet string), the asset scale
// (UInt8) and the asset code (var-octet string).
func AppendILDCPFulfill(dst []byte, r ILDCPResponse) []byte {
	data := appendLength(nil, len(r.ClientAddress))
	data = append(data, r.ClientAddress...)
	data = append(data, r.AssetScale)
	data = appendLength(data, len(r.AssetCode))
	data = append(data, r.AssetCode...)
	return AppendFulfill(dst, make([]byte, 32), data)
}
