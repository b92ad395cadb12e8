package handler

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// How ilp_edge treats a peer's routing protocol (CCP) Prepares, to
// peer.route.control and peer.route.update: RoutingProtocol's values.
const (
	// Forwarded like any packet, to the one connector the forwarder's key
	// ranks first. The default.
	RoutingSticky = "sticky"
	// Accepted by the edge with the Fulfill a connector answers and
	// dropped, so that no connector gets the peer's routes, nor asks it
	// for them: for fleets with static routes (rafiki's case).
	RoutingLocal = "local"
)

func checkRoutingProtocol(v string) error {
	switch v {
	case "", RoutingSticky, RoutingLocal:
		return nil
	}
	return fmt.Errorf("routing_protocol %q: want %s or %s", v, RoutingSticky, RoutingLocal)
}

// ccpFulfill accepts a CCP request, as a connector does.
var ccpFulfill = ilpdest.AppendCCPFulfill(nil)

var errPeerProtocolCondition = errors.New("a peer protocol request (peer.config, peer.route.*) whose condition is not the peer protocol's")

// peerProtocolReply returns what the edge answers pkt with itself, when
// it is a peer protocol request the edge answers for p (ILDCP with
// ildcp, CCP with routing_protocol local): the Fulfill, or the Reject a
// request with the wrong condition gets. Both are nil for packets to
// forward. The packet's own destination decides, whatever ILP-Destination
// says.
func (p *peer) peerProtocolReply(pkt *Packet) ([]byte, *edgeReject) {
	var reply []byte
	switch string(pkt.prepare.Destination) {
	case ilpdest.PeerConfig:
		reply = p.ildcpReply
	case ilpdest.PeerRouteControl, ilpdest.PeerRouteUpdate:
		if p.routingLocal {
			reply = ccpFulfill
		}
	}
	if reply != nil && !bytes.Equal(pkt.prepare.ExecutionCondition, ilpdest.PeerProtocolCondition) {
		return nil, invalidPacket(errPeerProtocolCondition)
	}
	return reply, nil
}
