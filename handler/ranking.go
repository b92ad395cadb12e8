package handler

import "github.com/ilp-edge/caddy-ilp/ilpdest"

// Ranking is where ilp_prefix and ilp_proxy send a packet: the prefix of
// its destination that is the routing key, and the upstreams (by their
// host:port rendezvous keys) in the order they are chosen, the first
// healthy one first.
type Ranking struct {
	Key       string   `json:"key"`
	Upstreams []string `json:"upstreams"`
}

// RankUpstreams is the Ranking of upstreams for a packet to dest routed
// by its first segments segments, by the same ranking as the data path.
func RankUpstreams(dest string, segments int, upstreams []string) Ranking {
	key := ilpdest.Prefix(dest, segments)
	r := Ranking{Key: key, Upstreams: make([]string, 0, len(upstreams))}
	for _, i := range ilpdest.Rank(key, upstreams, nil) {
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
