package handler

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

func TestRouteKey(t *testing.T) {
	for _, c := range []struct{ key, peer, dest, want string }{
		{"", "alice", "g.us.bank.bob", "g.us.bank"},
		{KeyDestination, "alice", "g.us.bank.bob", "g.us.bank"},
		{KeyPeer, "alice", "g.us.bank.bob", "alice"},
		{KeyPeerDestination, "alice", "g.us.bank.bob", "alice g.us.bank"},
		// Without ilp_edge there is no peer: the destination, whatever the key.
		{KeyPeer, "", "g.us.bank.bob", "g.us.bank"},
		{KeyPeerDestination, "", "g.us.bank.bob", "g.us.bank"},
	} {
		if got := RouteKey(c.key, c.peer, c.dest, 3); got != c.want {
			t.Errorf("RouteKey(%q, %q, %q): %q, want %q", c.key, c.peer, c.dest, got, c.want)
		}
	}
	if err := CheckRouteKey("sender"); err == nil {
		t.Error("key sender was accepted")
	}
}

// peerRequest is a request as ilp_edge leaves it for reverse_proxy: the
// packet of peer to dest in the vars.
func peerRequest(name, dest string) *http.Request {
	r := newRequest(http.MethodPost, nil)
	pkt := &Packet{destination: dest, peer: &peer{name: name}}
	caddyhttp.SetVar(r.Context(), VarDestination, (*destinationView)(pkt))
	return r
}

// TestRouteKeysGroupAndMoveMinimally checks, for every key, through
// ilp_prefix's Select: which packets share an upstream (a peer's, under
// key peer; a receiver's, under key destination; a peer's to one
// receiver, under key peer_destination), that the keys spread over the
// pool, and that an upstream leaving the pool moves only the packets it
// had, each to its next choice.
func TestRouteKeysGroupAndMoveMinimally(t *testing.T) {
	pool := testPool(5)
	lost := pool[2]
	survivors := reverseproxy.UpstreamPool{pool[4], pool[0], pool[3], pool[1]}
	var names []string
	for _, u := range pool {
		names = append(names, u.Dial)
	}
	peers := make([]string, 40)
	for i := range peers {
		peers[i] = fmt.Sprintf("peer%d", i)
	}
	dests := receivers(50)
	var siblings []string // other receivers under the same prefixes
	for _, d := range dests {
		siblings = append(siblings, d+"9")
	}
	for _, key := range []string{KeyDestination, KeyPeer, KeyPeerDestination} {
		t.Run(key, func(t *testing.T) {
			s := newPolicy(t, &PrefixSelection{Key: key})
			group := map[string]*reverseproxy.Upstream{} // what must share an upstream
			used := map[*reverseproxy.Upstream]int{}
			moved := 0
			for _, p := range peers {
				for _, d := range append(dests, siblings...) {
					before := s.Select(pool, peerRequest(p, d), nil)
					used[before]++
					prefix := ilpdest.Prefix(d, 3)
					g := map[string]string{KeyDestination: prefix, KeyPeer: p, KeyPeerDestination: p + " " + prefix}[key]
					if first, ok := group[g]; ok && first != before {
						t.Fatalf("%s to %s went to %s, others of its group %q to %s", p, d, before, g, first)
					}
					group[g] = before
					after := s.Select(survivors, peerRequest(p, d), nil)
					switch {
					case before != lost && after != before:
						t.Fatalf("%s to %s moved from %s to %s though %s is up", p, d, before, after, before)
					case before == lost:
						moved++
						if second := pool[ilpdest.Rank(RouteKey(key, p, d, 3), names, nil)[1]]; after != second {
							t.Fatalf("%s to %s moved to %s, not its next choice %s", p, d, after, second)
						}
					}
				}
			}
			if len(used) != len(pool) || moved == 0 {
				t.Errorf("%d keys used %d of %d upstreams; %d moved with one lost", len(group), len(used), len(pool), moved)
			}
		})
	}
}
