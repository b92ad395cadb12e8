package proxy

import "github.com/ilp-edge/caddy-ilp/handler"

// RoutingSegments is how many leading segments of a destination form the
// routing key under these settings, before Provision too.
func (p *Proxy) RoutingSegments() int {
	if p.PrefixSegments != nil {
		return *p.PrefixSegments
	}
	return handler.DefaultPrefixSegments
}

// RoutingKeys are the static upstreams' rendezvous keys (host:port), in
// the order configured, as the data path ranks them; before Provision too.
func (p *Proxy) RoutingKeys() ([]string, error) {
	keys := make([]string, 0, len(p.Upstreams))
	for _, s := range p.Upstreams {
		u, err := parseUpstream(s)
		if err != nil {
			return nil, err
		}
		keys = append(keys, u.addr)
	}
	return keys, nil
}
