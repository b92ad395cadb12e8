package handler

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/internal/tlsclient"
	"github.com/ilp-edge/caddy-ilp/store"
)

// ParseEdgeCaddyfile sets up an Edge from the `ilp_edge` directive; see
// Edge.UnmarshalCaddyfile for the syntax.
func ParseEdgeCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	e := new(Edge)
	err := e.UnmarshalCaddyfile(h.Dispenser)
	return e, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	ilp_edge {
//		address <ilp-address>
//		max_packet_size <size>
//		min_expiry_window <duration>
//		max_hold <duration>
//		destination_header trust|verify|ignore
//		peer_header <header-name>
//		forward_headers <header-name...>
//		jwt_leeway <duration>
//		jwt_allow_missing_exp
//		metrics on|off
//		max_packet_amount <amount>
//		rate <packets> per <duration> [burst <packets>]
//		throughput <amount> per <duration> [burst <amount>]
//		ildcp {
//			address_prefix <ilp-address>
//			asset_code <code>
//			asset_scale <n>
//		}
//		routing_protocol fanout|sticky|local
//		redis <host:port...> { … }
//		route_miss_failover <fleet-address...> {
//			fleet_address <ilp-address...>
//			max_tries <n>
//		}
//		async_max_in_flight <n>
//		async_max_in_flight_per_peer <n>
//		replies
//		peers <name...>
//		peer <name> {
//			token <secret>
//			jwt_secret <secret>
//			client_cert <sha256-fingerprint>
//			upstream_token <secret>
//			mode sync|async|auto
//			callback_url <url>
//			callback_url_prefix <url>
//			callback_token <secret>
//			callback_jwt_secret <secret>
//			callback_tls {
//				cert_file <path>
//				key_file <path>
//				ca_file <path>
//				server_name <name>
//			}
//			url <url>
//			url_segment_after <ilp-address>
//			outgoing_limits {
//				max_packet_amount|rate|throughput …
//			}
//			max_packet_amount|rate|throughput|ildcp|routing_protocol …
//		}
//	}
//
// forward_headers may be repeated. token, jwt_secret and client_cert may
// be repeated; a peer needs at least one of them. callback_url_prefix may
// be repeated. url is where ilp_egress sends the fleet's packets to the
// peer. Secrets may be
// {env.NAME} or {file./path} placeholders.
func (e *Edge) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "address":
			if !d.AllArgs(&e.Address) {
				return d.Err("address takes one ILP address (an unset {$VAR} in a Caddyfile reads as nothing: is the variable set?)")
			}
		case "max_packet_size":
			n, err := ParseSizeArg(d)
			if err != nil {
				return err
			}
			e.MaxPacketSize = n
		case "async_max_in_flight", "async_max_in_flight_per_peer":
			n, err := ParseCountArg(d)
			if err != nil {
				return err
			}
			if opt == "async_max_in_flight" {
				e.AsyncMaxInFlight = n
			} else {
				e.AsyncMaxInFlightPerPeer = n
			}
		case "max_hold":
			dur, err := ParseDurationArg(d)
			if err != nil {
				return err
			}
			e.MaxHold = dur
		case "min_expiry_window":
			dur, err := ParseDurationArg(d)
			if err != nil {
				return err
			}
			e.MinExpiryWindow = dur
		case "destination_header":
			if !d.AllArgs(&e.DestinationHeader) {
				return d.ArgErr()
			}
			switch e.DestinationHeader {
			case DestinationTrust, DestinationVerify, DestinationIgnore:
			default:
				return d.Errf("destination_header %q: want trust, verify or ignore", e.DestinationHeader)
			}
		case "peer_header":
			if !d.AllArgs(&e.PeerHeader) {
				return d.ArgErr()
			}
		case "forward_headers":
			names := d.RemainingArgs()
			if len(names) == 0 {
				return d.ArgErr()
			}
			for _, name := range names {
				if err := checkForwardHeader(name); err != nil {
					return d.Errf("%v", err)
				}
			}
			e.ForwardHeaders = append(e.ForwardHeaders, names...)
		case "jwt_leeway":
			dur, err := ParseDurationArg(d)
			if err != nil {
				return err
			}
			e.JWTLeeway = &dur
		case "jwt_allow_missing_exp":
			if d.NextArg() {
				return d.ArgErr()
			}
			e.JWTAllowMissingExp = true
		case "replies":
			if d.NextArg() {
				return d.ArgErr()
			}
			e.Replies = true
		case "metrics":
			off, err := ParseMetricsArg(d)
			if err != nil {
				return err
			}
			e.DisableMetrics = off
		case "max_packet_amount", "rate", "throughput":
			if err := unmarshalLimit(d, &e.Limits); err != nil {
				return err
			}
		case "ildcp":
			c, err := unmarshalILDCP(d)
			if err != nil {
				return err
			}
			e.ILDCP = c
		case "routing_protocol":
			if !d.AllArgs(&e.RoutingProtocol) {
				return d.ArgErr()
			}
			if err := checkRoutingProtocol(e.RoutingProtocol); err != nil {
				return d.Errf("%v", err)
			}
		case "route_miss_failover":
			if e.RouteMiss != nil {
				return d.Err("route_miss_failover given twice")
			}
			m, err := unmarshalRouteMiss(d)
			if err != nil {
				return err
			}
			e.RouteMiss = m
		case "redis":
			r, err := store.UnmarshalCaddyfile(d)
			if err != nil {
				return err
			}
			e.Redis = r
		case "peers":
			names := d.RemainingArgs()
			if len(names) == 0 {
				return d.ArgErr()
			}
			e.PeerNames = append(e.PeerNames, names...)
		case "peer":
			p, err := unmarshalPeer(d)
			if err != nil {
				return err
			}
			for _, other := range e.Peers {
				if other.Name == p.Name {
					return d.Errf("peer %q defined twice", p.Name)
				}
			}
			e.Peers = append(e.Peers, p)
		default:
			return d.Errf("unrecognized ilp_edge option %q", opt)
		}
	}
	if e.Address == "" {
		return d.Err("ilp_edge needs an address (the edge's own ILP address)")
	}
	return nil
}

func unmarshalPeer(d *caddyfile.Dispenser) (*Peer, error) {
	p := new(Peer)
	if !d.NextArg() {
		return nil, d.Err("peer needs a name")
	}
	p.Name = d.Val()
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "max_packet_amount", "rate", "throughput":
			if err := unmarshalLimit(d, &p.Limits); err != nil {
				return nil, fmt.Errorf("peer %q: %w", p.Name, err)
			}
			continue
		case "ildcp":
			c, err := unmarshalILDCP(d)
			if err != nil {
				return nil, fmt.Errorf("peer %q: %w", p.Name, err)
			}
			p.ILDCP = c
			continue
		case "outgoing_limits":
			if p.OutgoingLimits != nil {
				return nil, d.Errf("peer %q: outgoing_limits given twice", p.Name)
			}
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				switch d.Val() {
				case "max_packet_amount", "rate", "throughput":
					if err := unmarshalLimit(d, &p.OutgoingLimits); err != nil {
						return nil, fmt.Errorf("peer %q: outgoing_limits: %w", p.Name, err)
					}
				default:
					return nil, d.Errf("peer %q: outgoing_limits: unrecognized option %q", p.Name, d.Val())
				}
			}
			if p.OutgoingLimits == nil {
				return nil, d.Errf("peer %q: outgoing_limits needs max_packet_amount, rate or throughput", p.Name)
			}
			continue
		case "callback_tls":
			if p.CallbackTLS != nil {
				return nil, d.Errf("peer %q: callback_tls given twice", p.Name)
			}
			c, err := tlsclient.UnmarshalCaddyfile(d, fmt.Sprintf("peer %q: callback_tls", p.Name))
			if err != nil {
				return nil, err
			}
			p.CallbackTLS = c
			continue
		}
		var v string
		if !d.AllArgs(&v) {
			return nil, d.Errf("peer %q: %s takes exactly one argument", p.Name, opt)
		}
		switch opt {
		case "token":
			p.Tokens = append(p.Tokens, v)
		case "jwt_secret":
			p.JWTSecrets = append(p.JWTSecrets, v)
		case "client_cert":
			if _, err := parseFingerprint(v); err != nil {
				return nil, d.Errf("peer %q: client_cert %q: %v", p.Name, v, err)
			}
			p.ClientCerts = append(p.ClientCerts, v)
		case "routing_protocol":
			if err := checkRoutingProtocol(v); err != nil {
				return nil, d.Errf("peer %q: %v", p.Name, err)
			}
			p.RoutingProtocol = v
		case "upstream_token":
			if p.UpstreamToken != "" {
				return nil, d.Errf("peer %q: upstream_token given twice", p.Name)
			}
			p.UpstreamToken = v
		case "mode":
			if v != ModeSync && v != ModeAsync && v != ModeAuto {
				return nil, d.Errf("peer %q: mode %q: want sync, async or auto", p.Name, v)
			}
			p.Mode = v
		case "callback_url":
			p.URL = v
		case "url":
			if p.EgressURL != "" {
				return nil, d.Errf("peer %q: url given twice", p.Name)
			}
			// One with placeholders is checked once they are resolved;
			// a multi-mode template, with url_segment_after.
			if _, err := ParsePeerURL(v); err != nil && !strings.Contains(v, "{") {
				if errors.Is(err, errMultiTemplate) {
					_, _, _, err = ParsePeerURLTemplate(v)
				}
				if err != nil {
					return nil, d.Errf("peer %q: url: %v", p.Name, err)
				}
			}
			p.EgressURL = v
		case "url_segment_after":
			if !ilpdest.ValidAddress(v) {
				return nil, d.Errf("peer %q: url_segment_after: not an ILP address", p.Name)
			}
			p.URLSegmentAfter = v
		case "callback_url_prefix":
			p.Prefixes = append(p.Prefixes, v)
		case "callback_token":
			p.CallbackToken = v
		case "callback_jwt_secret":
			p.CallbackJWTSecret = v
		default:
			return nil, d.Errf("peer %q: unrecognized option %q", p.Name, opt)
		}
	}
	if len(p.Tokens)+len(p.JWTSecrets)+len(p.ClientCerts) == 0 {
		return nil, d.Errf("peer %q needs a token, jwt_secret or client_cert", p.Name)
	}
	policy := p.CallbackPolicy
	if err := policy.Provision(); err != nil {
		return nil, d.Errf("peer %q: %v", p.Name, err)
	}
	if p.Mode == ModeAsync && !policy.Configured() && p.EgressURL == "" {
		return nil, d.Errf("peer %q: mode async needs callback_url or callback_url_prefix", p.Name)
	}
	if p.CallbackToken != "" && p.CallbackJWTSecret != "" {
		return nil, d.Errf("peer %q: callback_token and callback_jwt_secret are exclusive", p.Name)
	}
	if err := p.checkEgressURL(); err != nil && !strings.Contains(p.EgressURL, "{") {
		return nil, d.Errf("peer %q: %v", p.Name, err)
	}
	return p, nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Edge)(nil)

// unmarshalLimit reads one limit line into *l:
//
//	max_packet_amount <amount>
//	rate <packets> per <duration> [burst <packets>]
//	throughput <amount> per <duration> [burst <amount>]
func unmarshalLimit(d *caddyfile.Dispenser, l **Limits) error {
	opt := d.Val()
	if *l == nil {
		*l = new(Limits)
	}
	args := d.RemainingArgs()
	number := func(s string) (uint64, error) {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			return 0, d.Errf("%s: %q is not a whole number above 0", opt, s)
		}
		return n, nil
	}
	if opt == "max_packet_amount" {
		if len(args) != 1 {
			return d.Errf("max_packet_amount takes one amount")
		}
		n, err := number(args[0])
		(*l).MaxPacketAmount = n
		return err
	}
	if (len(args) != 3 && len(args) != 5) || args[1] != "per" || (len(args) == 5 && args[3] != "burst") {
		return d.Errf("%s takes <limit> per <duration> [burst <n>]", opt)
	}
	b := new(Budget)
	var err error
	if b.Limit, err = number(args[0]); err != nil {
		return err
	}
	period, err := caddy.ParseDuration(args[2])
	if err != nil || period <= 0 || period > maxBudgetPeriod {
		return d.Errf("%s: per %q: want a duration above 0 and at most %v", opt, args[2], maxBudgetPeriod)
	}
	b.Period = caddy.Duration(period)
	if len(args) == 5 {
		if b.Burst, err = number(args[4]); err != nil {
			return err
		}
	}
	if opt == "rate" {
		(*l).Rate = b
	} else {
		(*l).Throughput = b
	}
	return nil
}

// unmarshalILDCP reads an ildcp block:
//
//	ildcp {
//		address_prefix <ilp-address>
//		asset_code <code>
//		asset_scale <0-255>
//	}
func unmarshalILDCP(d *caddyfile.Dispenser) (*ILDCP, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	c := new(ILDCP)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		var v string
		if !d.AllArgs(&v) {
			return nil, d.Errf("ildcp: %s takes exactly one argument", opt)
		}
		switch opt {
		case "address_prefix":
			if !ilpdest.ValidAddress(v) {
				return nil, d.Errf("ildcp: address_prefix %q is not a valid ILP address", v)
			}
			c.AddressPrefix = v
		case "asset_code":
			c.AssetCode = v
		case "asset_scale":
			n, err := strconv.ParseUint(v, 10, 8)
			if err != nil {
				return nil, d.Errf("ildcp: asset_scale %q: want a whole number from 0 to 255", v)
			}
			c.AssetScale = uint8(n)
		default:
			return nil, d.Errf("unrecognized ildcp option %q", opt)
		}
	}
	if c.AddressPrefix == "" || c.AssetCode == "" {
		return nil, d.Err("ildcp needs address_prefix and asset_code")
	}
	return c, nil
}
