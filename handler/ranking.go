package handler

import (
	"fmt"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// What ilp_prefix and ilp_proxy hash to choose a packet's upstream, their
// `key` setting.
const (
	// The destination's prefix (the default): one receiver's packets, and
	// one STREAM connection's, on one connector. For connectors that share
	// their balances (interledger-rs on Redis, rafiki).
	KeyDestination = "destination"
	// The authenticated peer: all of a peer's packets on one connector,
	// moved only when it is unavailable, so that connectors that keep
	// each account's balance in memory (ilp-connector) keep a peer's in
	// one ledger and enforce its credit limit once.
	KeyPeer = "peer"
	// Both: one peer's packets to one receiver on one connector.
	KeyPeerDestination = "peer_destination"
)

// CheckRouteKey reports whether key is one of the Key settings; "" is
// the default, KeyDestination.
func CheckRouteKey(key string) error {
	switch key {
	case "", KeyDestination, KeyPeer, KeyPeerDestination:
		return nil
	}
	return fmt.Errorf("key %q: want %s, %s or %s", key, KeyDestination, KeyPeer, KeyPeerDestination)
}

// RouteKey is the rendezvous key of a packet from peer to dest under key
// (a Key setting), with the destination's first segments segments as its
// prefix. A packet without a peer (no ilp_edge before the forwarder) is
// routed by its destination under every key.
func RouteKey(key, peer, dest string, segments int) string {
	switch {
	case peer == "" || key == "" || key == KeyDestination:
		return ilpdest.Prefix(dest, segments)
	case key == KeyPeer:
		return peer
	}
	// A space cannot be in an ILP address, so no two pairs share a key.
	return peer + " " + ilpdest.Prefix(dest, segments)
}

// PacketRouteKey is pkt's rendezvous key for a forwarder configured
// with key and segments: RouteKey, except that the CCP Prepares of a peer
// whose routing_protocol is fanout are ranked by the peer's name under
// every key. Its route control then reaches one connector, the same one
// while it is healthy, so one routing table speaks to the peer.
func PacketRouteKey(pkt *Packet, key string, segments int) string {
	if pkt.peer != nil && pkt.peer.routing == RoutingFanout && isCCP(pkt.prepare.Destination) {
		key = KeyPeer
	}
	return RouteKey(key, pkt.Peer(), pkt.destination, segments)
}

// Ranking is where ilp_prefix and ilp_proxy send a packet: its routing
// key (see RouteKey), and the upstreams (by their host:port rendezvous
// keys) in the order they are chosen, the first healthy one first.
type Ranking struct {
	Key       string   `json:"key"`
	Upstreams []string `json:"upstreams"`
}

// RankUpstreams is the Ranking of upstreams for a packet from peer to
// dest under key with segments, by the same ranking as the data path.
func RankUpstreams(key, peer, dest string, segments int, upstreams []string) Ranking {
	k := RouteKey(key, peer, dest, segments)
	r := Ranking{Key: k, Upstreams: make([]string, 0, len(upstreams))}
	for _, i := range ilpdest.Rank(k, upstreams, nil) {
		r.Upstreams = append(r.Upstreams, upstreams[i])
	}
	return r
}

// RoutingSegments is how many leading segments of a destination form the
// routing key under this policy's settings, before Provision too.
func (s *PrefixSelection) RoutingSegments() int {
	switch {
	case s.PrefixSegments != nil:
		return *s.PrefixSegments
	case s.Segments != nil:
		return *s.Segments
	}
	return DefaultPrefixSegments
}
