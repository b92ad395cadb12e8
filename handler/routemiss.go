package handler

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// RouteMiss is ilp_edge's route-miss failover: a packet that a connector
// of the fleet rejected because it had no route for it goes to the
// packet's next-ranked connector, which may have the route. A fleet whose
// instances disagree on their routes for a while (a route added through
// one rafiki instance's admin API, a peer's route update still being
// fanned out to ilp-connectors) then pays instead of failing the share of
// packets that rank the stale instance first.
//
// It is safe because a route miss is a Reject a connector makes before it
// forwards anything: the packet went nowhere, so trying another connector
// cannot deliver it twice. A route miss is recognised by three things at
// once: a triggeredBy that is one of the fleet's own addresses (an F02
// from further downstream names another address and is relayed as it
// is), and a code (F02, in one case T01) with a message that the
// connectors in use produce only when they did not forward the packet
// (see routeMissReasons). Anything else is relayed as today.
//
// It works with both forwarders: the edge calls the forwarder again, and
// ilp_proxy and the ilp_prefix policy skip the connectors that already
// had the packet. The peer gets the answer of the last connector that
// took the packet, the route miss itself when none was left to try.
type RouteMiss struct {
	// The fleet's own ILP addresses: the ilpAddress of the connectors
	// behind the edge (one, when they share it as a fleet does, or one per
	// instance). Required.
	FleetAddresses []string `json:"fleet_addresses,omitempty"`

	// The most connectors one packet is sent to, the first included.
	// Default: 0, every connector once.
	MaxTries int `json:"max_tries,omitempty"`
}

// routeMisses are the Rejects, by code and start of message, that the
// connectors in use make only when they cannot route a packet, before
// sending it anywhere (sources read: ilp-connector's src at ef0fcb8,
// 23.0.2, checked against the 23.0.1 build the tests run; rafiki at
// 884c4bc; interledger-rs 1.0.0 at 544b6db). Each comes with triggeredBy
// set to the connector's own address. Left out on purpose:
//
//   - ilp-connector's F02 "failed to send packet: …"
//     (src/services/middleware-manager.ts:169-173): its plugin failed, maybe
//     after the next hop got the packet.
//   - interledger-rs' F02 with an empty message: its router's "no route"
//     (crates/interledger-router/src/router.rs:129-135) and its HTTP
//     client's answer to a 4xx from the next hop, after sending
//     (crates/interledger-http/src/client.rs:125-143), are byte for byte
//     the same.
//   - rafiki's T00 "unexpected internal error", which also covers a next
//     hop that timed out after receiving the packet.
var routeMissReasons = []struct {
	code    ilpdest.Code
	message []byte // the message starts with it
}{
	// ilp-connector, src/services/route-builder.ts:41 (getNextHopPacket):
	// no entry in its routing table.
	{ilpdest.CodeF02, []byte("no route found.")},
	// ilp-connector, src/services/middleware-manager.ts:225: its route
	// names an account this instance does not have.
	{ilpdest.CodeF02, []byte("tried to send data to non-existent account.")},
	// ilp-connector, src/services/route-builder.ts:133: the next hop's
	// plugin is not connected on this instance.
	{ilpdest.CodeT01, []byte("no connection to account.")},
	// rafiki, packages/backend/src/payment-method/ilp/connector/core/
	// middleware/account.ts:118,126: no outgoing account for the
	// destination.
	{ilpdest.CodeF02, []byte("unknown destination account")},
	// rafiki, …/connector/core/services/client.ts:13: the outgoing
	// account has no HTTP endpoint, thrown before the POST.
	{ilpdest.CodeF02, []byte("no outgoing endpoint")},
	// interledger-rs, crates/ilp-node/src/node.rs:376-385: the account
	// has neither HTTP nor BTP.
	{ilpdest.CodeF02, []byte("No outgoing route for account:")},
}

// Validate checks the fleet addresses and the bound on tries.
func (m *RouteMiss) Validate() error {
	if len(m.FleetAddresses) == 0 {
		return fmt.Errorf("route_miss_failover: no fleet address: name the connectors' own ILP address (an unset {$VAR} in a Caddyfile reads as nothing: is the variable set?)")
	}
	for _, a := range m.FleetAddresses {
		if !ilpdest.ValidAddress(a) {
			return fmt.Errorf("route_miss_failover: fleet address %q is not a valid ILP address", a)
		}
	}
	if m.MaxTries < 0 || m.MaxTries == 1 {
		return fmt.Errorf("route_miss_failover: max_tries must be 0 (every connector) or at least 2, got %d", m.MaxTries)
	}
	return nil
}

// isRouteMiss reports whether reply, a connector's well-formed answer, is
// a route miss by one of the fleet's connectors.
func (m *RouteMiss) isRouteMiss(reply []byte) bool {
	if len(reply) == 0 || ilpdest.Type(reply[0]) != ilpdest.TypeReject {
		return false
	}
	rej, err := ilpdest.ReadRejectView(reply)
	if err != nil || !m.isFleet(rej.TriggeredBy) {
		return false
	}
	for _, miss := range routeMissReasons {
		if rej.Code == miss.code && bytes.HasPrefix(rej.Message, miss.message) {
			return true
		}
	}
	return false
}

// isFleet reports whether address is one of the fleet's.
func (m *RouteMiss) isFleet(address []byte) bool {
	for _, a := range m.FleetAddresses {
		if string(address) == a {
			return true
		}
	}
	return false
}

// mayRetry decides whether a packet whose last answer was reply goes to
// its next connector: a route miss, after tries connectors, with time
// left before its deadline (the sooner of its expiry and max_hold).
func (m *RouteMiss) mayRetry(reply []byte, tries int, left time.Duration) bool {
	return (m.MaxTries == 0 || tries < m.MaxTries) && left > 0 && m.isRouteMiss(reply)
}

// RouteMissed reports whether the connector at upstream (host:port)
// answered this packet with a route miss: a forwarder called again for it
// (route-miss failover) does not send it there again.
func (p *Packet) RouteMissed(upstream string) bool {
	return slices.Contains(p.missed, upstream)
}

// failOver sends a packet answered with a route miss to its next
// connectors, while they miss too and mayRetry allows, and returns the
// last attempt's error, with pkt.capture holding its reply. fr is the
// request the forwarder was called with. When no connector is left to
// take the packet, the peer gets the last route miss.
func (e *Edge) failOver(fr *http.Request, next caddyhttp.Handler, pkt *Packet) error {
	var err error
	for tries := 1; pkt.capture.status == http.StatusOK && !pkt.capture.overflow; tries++ {
		missed, upstream := pkt.capture.body, pkt.upstream
		if missed == nil || !e.RouteMiss.mayRetry(*missed, tries, pkt.ctx.expiry.Sub(now())) {
			return nil
		}
		if upstream == "" || pkt.RouteMissed(upstream) {
			return nil // a forwarder that does not say where it sent the packet cannot be moved on
		}
		pkt.missed = append(pkt.missed, upstream)
		e.countRouteMiss(pkt, upstream)

		pkt.capture.reset(pkt.capture.w)
		pkt.reader.Reset(pkt.body)
		err = e.serveNext(&pkt.capture, fr, next)
		if err != nil {
			if f := failureOf(err); f == NoUpstream || f == NotDelivered {
				// No other connector took it: the route miss stands.
				pkt.capture.release()
				pkt.capture.status, pkt.capture.body, pkt.upstream = http.StatusOK, missed, upstream
				return nil
			}
		}
		releaseReply(missed)
		if err != nil {
			return err
		}
	}
	return err
}

// countRouteMiss records that the connector at upstream missed a route
// for pkt: in the metrics, in what the admin API shows, and in a log line
// at most once a second per connector.
func (e *Edge) countRouteMiss(pkt *Packet, upstream string) {
	at := now()
	routeMisses.record(upstream, pkt.destination, at)
	if !e.DisableMetrics {
		metricRouteMisses.WithLabelValues(upstream).Inc()
	}
	if !e.routeMissLog.Allow(upstream, at) {
		return
	}
	if c := e.logger.Check(zap.WarnLevel, "connector has no route for a packet; trying the next connector"); c != nil {
		c.Write(zap.String("upstream", upstream), zap.String("destination", pkt.destination),
			zap.String("peer", pkt.peer.name))
	}
}

// RouteMissStatus is what the edge saw of one connector's route misses:
// the admin API shows it, so that an operator finds the stale instance.
type RouteMissStatus struct {
	Upstream        string    `json:"upstream"` // host:port
	Total           uint64    `json:"route_misses"`
	Last            time.Time `json:"last_route_miss"`
	LastDestination string    `json:"last_destination"`
}

// routeMisses holds every connector's route misses since the process
// started, across configs, as the metrics do.
var routeMisses routeMissTable

type routeMissTable struct {
	sync.Mutex
	byUpstream map[string]*RouteMissStatus
}

func (t *routeMissTable) record(upstream, destination string, at time.Time) {
	t.Lock()
	defer t.Unlock()
	if t.byUpstream == nil {
		t.byUpstream = make(map[string]*RouteMissStatus)
	}
	s := t.byUpstream[upstream]
	if s == nil {
		s = &RouteMissStatus{Upstream: upstream}
		t.byUpstream[upstream] = s
	}
	s.Total++
	s.Last, s.LastDestination = at, destination
}

// RouteMisses returns the route misses seen per connector, the most
// recent first.
func RouteMisses() []RouteMissStatus {
	routeMisses.Lock()
	defer routeMisses.Unlock()
	out := make([]RouteMissStatus, 0, len(routeMisses.byUpstream))
	for _, s := range routeMisses.byUpstream {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b RouteMissStatus) int { return b.Last.Compare(a.Last) })
	return out
}

// unmarshalRouteMiss reads a route_miss_failover block: the fleet's
// addresses as arguments or fleet_address lines, and max_tries.
func unmarshalRouteMiss(d *caddyfile.Dispenser) (*RouteMiss, error) {
	m := &RouteMiss{FleetAddresses: d.RemainingArgs()}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "fleet_address":
			addrs := d.RemainingArgs()
			if len(addrs) == 0 {
				return nil, d.ArgErr()
			}
			m.FleetAddresses = append(m.FleetAddresses, addrs...)
		case "max_tries":
			n, err := ParseCountArg(d)
			if err != nil {
				return nil, err
			}
			m.MaxTries = n
		default:
			return nil, d.Errf("unrecognized route_miss_failover option %q", d.Val())
		}
	}
	if err := m.Validate(); err != nil {
		return nil, d.Errf("%v", err)
	}
	return m, nil
}
