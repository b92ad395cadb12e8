package handler

import (
	"errors"
	"fmt"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// ILDCP makes the edge answer a child peer's ILDCP request (RFC 31: a
// Prepare to peer.config asking for the child's ILP address and asset)
// itself, from this config, as ilp-plugin-http's multi mode does, so that
// the answer does not depend on which connector instance gets it, or on
// any of them being up. The child's address is AddressPrefix, a dot, and
// the peer's name.
type ILDCP struct {
	// The parent's address, under which each child gets its own.
	AddressPrefix string `json:"address_prefix"`
	// The asset code and scale the child's amounts are in, e.g. XRP, 9.
	AssetCode  string `json:"asset_code"`
	AssetScale uint8  `json:"asset_scale"`
}

// fulfillFor is the Fulfill the edge answers peer's ILDCP requests with,
// encoded once when the config loads.
func (c *ILDCP) fulfillFor(peer string) ([]byte, error) {
	if c == nil {
		return nil, nil
	}
	addr := c.AddressPrefix + "." + peer
	switch {
	case !ilpdest.ValidAddress(c.AddressPrefix):
		return nil, fmt.Errorf("ildcp: address_prefix %q is not a valid ILP address", c.AddressPrefix)
	case !ilpdest.ValidAddress(addr):
		return nil, fmt.Errorf("ildcp: the peer's address %q is not a valid ILP address (the peer's name is its last segment)", addr)
	case c.AssetCode == "":
		return nil, errors.New("ildcp: asset_code is required")
	}
	return ilpdest.AppendILDCPFulfill(nil, ilpdest.ILDCPResponse{ClientAddress: addr, AssetScale: c.AssetScale, AssetCode: c.AssetCode}), nil
}
