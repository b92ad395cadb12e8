package handler

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/internal/loglimit"
)

// PrefixSelection is the `ilp_prefix` reverse_proxy selection policy: it
// sends every packet whose destination starts with the same ILP address
// prefix to the same upstream, so one receiver's packets (and one STREAM
// connection's) stay on one connector.
//
// The upstream is chosen by rendezvous hashing of the prefix over the
// upstreams' dial addresses, among those that are available (healthy and
// not full). Nothing is random and nothing is stored: every edge instance,
// after every restart or reload, picks the same upstream for a prefix.
// When an upstream becomes unavailable only its prefixes move, each to its
// next-ranked upstream, and they come back when it recovers. A retry
// (lb_retries) goes to the packet's next choice. When health has marked
// every upstream down, they are chosen anyway, in rank order.
//
// The destination comes from the ilp_destination var that ilp_edge sets,
// else from a valid ILP-Destination request header; without either, the
// fallback policy chooses.
type PrefixSelection struct {
	// How many leading segments of the destination address form the
	// routing key, counting the scheme: with 3, g.us.bank.alice routes as
	// g.us.bank. 0 uses the whole address. Default: 3.
	PrefixSegments *int `json:"prefix_segments,omitempty"`

	// Deprecated: the old name of prefix_segments, still read (with a
	// warning) so that existing JSON configs keep working.
	Segments *int `json:"segments,omitempty"`

	// What is hashed to choose the upstream: "destination" (default), the
	// destination's prefix; "peer", the peer ilp_edge authenticated, so
	// that all of a peer's packets reach one connector (for connectors
	// that keep balances in memory); or "peer_destination", both. Without
	// ilp_edge, the destination.
	Key string `json:"key,omitempty"`

	// The policy for requests without a destination. Default: random.
	FallbackRaw json.RawMessage `json:"fallback,omitempty" caddy:"namespace=http.reverse_proxy.selection_policies inline_key=policy"`

	segments   int
	fallback   reverseproxy.Selector
	logger     *zap.Logger
	rerouteLog *loglimit.Limiter // packets routed past their first choice, per skipped upstream
}

// CaddyModule returns the Caddy module information.
func (PrefixSelection) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.selection_policies.ilp_prefix",
		New: func() caddy.Module { return new(PrefixSelection) },
	}
}

// Provision sets defaults and loads the fallback policy.
func (s *PrefixSelection) Provision(ctx caddy.Context) error {
	if s.Segments != nil {
		ctx.Logger().Warn("ilp_prefix: the JSON field segments is deprecated; use prefix_segments")
	}
	s.segments = s.RoutingSegments()
	if s.Key == "" {
		s.Key = KeyDestination
	}
	if s.FallbackRaw == nil {
		s.FallbackRaw = caddyconfig.JSONModuleObject(reverseproxy.RandomSelection{}, "policy", "random", nil)
	}
	mod, err := ctx.LoadModule(s, "FallbackRaw")
	if err != nil {
		return fmt.Errorf("loading fallback selection policy: %w", err)
	}
	s.fallback = mod.(reverseproxy.Selector)
	s.logger = ctx.Logger()
	s.rerouteLog = &loglimit.Limiter{Interval: time.Second}
	s.logger.Info("ilp_prefix ready", zap.Int("prefix_segments", s.segments), zap.String("key", s.Key))
	return nil
}

// Validate checks the configuration.
func (s *PrefixSelection) Validate() error {
	if s.segments < 0 {
		return fmt.Errorf("prefix_segments must not be negative, got %d", s.segments)
	}
	return CheckRouteKey(s.Key)
}

// maxStackUpstreams is how many upstreams Select ranks without allocating.
const maxStackUpstreams = 32

// Select implements reverseproxy.Selector.
func (s *PrefixSelection) Select(pool reverseproxy.UpstreamPool, r *http.Request, w http.ResponseWriter) *reverseproxy.Upstream {
	pkt := PacketFrom(r)
	var key string
	if pkt != nil {
		key = PacketRouteKey(pkt, s.Key, s.segments)
	} else if h := firstValue(r.Header, destinationHeader); ilpdest.ValidAddress(h) {
		key = RouteKey(s.Key, "", h, s.segments)
	} else {
		return s.fallback.Select(pool, r, w)
	}
	var nameBuf [maxStackUpstreams]string
	var orderBuf [maxStackUpstreams]int
	names := nameBuf[:0]
	for _, u := range pool {
		names = append(names, u.String())
	}
	order := ilpdest.Rank(key, names, orderBuf[:0])
	i, rank := firstUsable(order, func(i int) bool { return pool[i].Available() && !triedBefore(pkt, i) })
	if i < 0 {
		// None is healthy: as Envoy's panic mode does, try the ones health
		// marked down anyway, in rank order. During a rolling restart
		// passive health can mark every connector down while all are
		// back; one that is really gone refuses the connection, and
		// lb_retries moves the packet on, undelivered.
		i, rank = firstUsable(order, func(i int) bool { return !pool[i].Full() && !triedBefore(pkt, i) })
	}
	if i < 0 {
		return nil // reverse_proxy answers 503, which ilp_edge turns into T01
	}
	if rank > 0 && s.rerouteLog.Allow(names[order[0]], now()) {
		if c := s.logger.Check(zap.InfoLevel, "packet routed past its first choice"); c != nil {
			c.Write(zap.String("skipped", names[order[0]]), zap.String("upstream", names[i]),
				zap.String("route_key", key), zap.Int("rank", rank))
		}
	}
	if pkt != nil {
		if i < 64 {
			pkt.tried |= 1 << i
		}
		pkt.SetRoute(r, key, names[i], rank)
	} else {
		caddyhttp.SetVar(r.Context(), VarUpstreamRank, rank)
	}
	return pool[i]
}

// triedBefore reports whether Select already chose pool[i] for pkt: a
// retry (lb_retries) goes to the next choice even when passive health is
// off or has not marked the first one down.
func triedBefore(pkt *Packet, i int) bool {
	return pkt != nil && i < 64 && pkt.tried&(1<<i) != 0
}

// firstUsable walks a ranking and returns the first index for which usable
// is true, with its rank; -1, -1 if there is none.
func firstUsable(order []int, usable func(int) bool) (index, rank int) {
	for rank, i := range order {
		if usable(i) {
			return i, rank
		}
	}
	return -1, -1
}

// UnmarshalCaddyfile sets up the policy from Caddyfile tokens. Syntax:
//
//	lb_policy ilp_prefix [<prefix_segments>] {
//		prefix_segments <n>
//		key destination|peer|peer_destination
//		fallback <policy> [<options>...]
//	}
func (s *PrefixSelection) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // policy name
	if d.NextArg() {
		n, err := parseCount(d, "prefix_segments", d.Val())
		if err != nil {
			return err
		}
		s.PrefixSegments = &n
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "prefix_segments":
			if s.PrefixSegments != nil {
				return d.Err("ilp_prefix: prefix_segments given twice")
			}
			var n int
			n, err = ParseCountArg(d)
			s.PrefixSegments = &n
		case "key":
			s.Key, err = ParseRouteKeyArg(d)
		case "fallback":
			if s.FallbackRaw != nil {
				return d.Err("ilp_prefix: fallback given twice")
			}
			s.FallbackRaw, err = UnmarshalInlineModule[reverseproxy.Selector](d, "http.reverse_proxy.selection_policies", "policy")
		default:
			return d.Errf("unrecognized ilp_prefix option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*PrefixSelection)(nil)
	_ caddy.Validator       = (*PrefixSelection)(nil)
	_ reverseproxy.Selector = (*PrefixSelection)(nil)
	_ caddyfile.Unmarshaler = (*PrefixSelection)(nil)
)
