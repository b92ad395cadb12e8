package handler

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/store"
)

// How ilp_edge treats a peer's routing protocol (CCP) Prepares, to
// peer.route.control and peer.route.update: RoutingProtocol's values.
const (
	// Forwarded like any packet, to the one connector the forwarder's key
	// ranks first.
	RoutingSticky = "sticky"
	// Accepted by the edge with the Fulfill a connector answers and
	// dropped, so that no connector gets the peer's routes, nor asks it
	// for them: for fleets with static routes (rafiki's case).
	RoutingLocal = "local"
	// Route updates delivered to every healthy connector, so that each
	// learns the peer's routes, and route control to the one connector
	// the peer's name ranks first, so that one routing table speaks to
	// the peer. Fan-out needs ilp_proxy; behind reverse_proxy, which sends
	// a request to one upstream, updates go where route control goes. The
	// default.
	RoutingFanout = "fanout"
)

func checkRoutingProtocol(v string) error {
	switch v {
	case "", RoutingSticky, RoutingLocal, RoutingFanout:
		return nil
	}
	return fmt.Errorf("routing_protocol %q: want %s, %s or %s", v, RoutingSticky, RoutingLocal, RoutingFanout)
}

// isCCP reports whether a Prepare's own destination is the routing
// protocol's.
func isCCP(destination []byte) bool {
	d := string(destination)
	return d == ilpdest.PeerRouteControl || d == ilpdest.PeerRouteUpdate
}

// FanOut reports whether the packet is a route update (peer.route.update)
// from a peer whose routing_protocol is fanout: a forwarder that can
// delivers it to every healthy upstream, answers the peer once, and calls
// SetFannedOut.
func (p *Packet) FanOut() bool { return p.fanoutCCP(ilpdest.PeerRouteUpdate) }

// RouteControl reports whether the packet is a route control request
// (peer.route.control) from a peer whose routing_protocol is fanout: a
// forwarder that keeps the peer's routing table sends it to the one
// connector that speaks to the peer, and remembers it, to hand it to the
// next one when that connector is gone.
func (p *Packet) RouteControl() bool { return p.fanoutCCP(ilpdest.PeerRouteControl) }

func (p *Packet) fanoutCCP(destination string) bool {
	return p.peer != nil && p.peer.routing == RoutingFanout && string(p.prepare.Destination) == destination
}

// SharedStore is the store the edge shares with the other edge
// instances, where a forwarder keeps the peer's routing table; nil when
// it has none, and the table is the forwarder's own.
func (p *Packet) SharedStore() *store.Store {
	if p.peer == nil {
		return nil
	}
	return p.peer.store
}

// SetFannedOut records that the forwarder delivered a FanOut packet to
// every healthy upstream; ilp_edge warns about the ones it did not.
func (p *Packet) SetFannedOut() { p.fannedOut = true }

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
		if p.routing == RoutingLocal {
			reply = ccpFulfill
		}
	}
	if reply != nil && !bytes.Equal(pkt.prepare.ExecutionCondition, ilpdest.PeerProtocolCondition) {
		return nil, invalidPacket(errPeerProtocolCondition)
	}
	return reply, nil
}
