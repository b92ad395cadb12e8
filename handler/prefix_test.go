package handler

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

func newPolicy(t testing.TB, s *PrefixSelection) *PrefixSelection {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := s.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

func testPool(n int) reverseproxy.UpstreamPool {
	pool := make(reverseproxy.UpstreamPool, n)
	for i := range pool {
		pool[i] = &reverseproxy.Upstream{Host: new(reverseproxy.Host), Dial: fmt.Sprintf("10.1.0.%d:7768", i+1)}
	}
	return pool
}

// destRequest is a request as ilp_edge leaves it for reverse_proxy: its
// packet, to dest, in the vars.
func destRequest(dest string) *http.Request {
	r := newRequest(http.MethodPost, nil)
	caddyhttp.SetVar(r.Context(), VarDestination, (*destinationView)(&Packet{destination: dest}))
	return r
}

// receivers returns n realistic destinations, one per receiver, whose
// 3-segment prefixes are distinct.
func receivers(n int) []string {
	d := make([]string, n)
	for i := range d {
		d[i] = fmt.Sprintf("g.wallet%d.user%d.%x", i%50, i, i*7919)
	}
	return d
}

func TestPrefixStickiness(t *testing.T) {
	s := newPolicy(t, &PrefixSelection{})
	pool := testPool(5)
	for _, base := range []string{"g.us.bank", "g.eu.wallet", "test.x.y"} {
		first := s.Select(pool, destRequest(base+".alice.stream1"), nil)
		for _, dest := range []string{base + ".bob", base + ".alice.stream2", base} {
			if got := s.Select(pool, destRequest(dest), nil); got != first {
				t.Errorf("%s went to %s, %s.alice to %s", dest, got, base, first)
			}
		}
		// The order upstreams are listed in does not matter.
		rev := append(reverseproxy.UpstreamPool(nil), pool...)
		for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
			rev[i], rev[j] = rev[j], rev[i]
		}
		if got := s.Select(rev, destRequest(base+".alice.stream1"), nil); got != first {
			t.Errorf("%s: %s in one order, %s in another", base, first, got)
		}
	}
}

func TestPrefixSegments(t *testing.T) {
	pool := testPool(16)
	whole := 0
	s0 := newPolicy(t, &PrefixSelection{PrefixSegments: &whole})
	one := 1
	s1 := newPolicy(t, &PrefixSelection{PrefixSegments: &one})
	spread0, spread1 := map[string]bool{}, map[string]bool{}
	for _, d := range receivers(200) {
		spread0[s0.Select(pool, destRequest(d), nil).Dial] = true
		spread1[s1.Select(pool, destRequest(d), nil).Dial] = true
	}
	if len(spread1) != 1 {
		t.Errorf("segments 1: every g.* packet should share a key, used %d upstreams", len(spread1))
	}
	if len(spread0) < 12 {
		t.Errorf("segments 0: 200 whole addresses used only %d of 16 upstreams", len(spread0))
	}
}

func TestPrefixDestinationSources(t *testing.T) {
	s := newPolicy(t, &PrefixSelection{FallbackRaw: []byte(`{"policy":"first"}`)})
	pool := testPool(8)
	want := s.Select(pool, destRequest("g.us.bank.alice"), nil)
	if want == pool[0] {
		// The key must rank another upstream first, or the test could not
		// tell prefix routing from the fallback.
		t.Fatal("g.us.bank ranks pool[0] first: choose another test key")
	}
	// ilp_edge's packet and, without one, a valid header both route by
	// prefix; without either, the fallback ("first") decides.
	noPacket := func() *http.Request { return newRequest(http.MethodPost, nil) }
	r := noPacket()
	r.Header.Set("ILP-Destination", "g.us.bank.alice")
	if got := s.Select(pool, r, nil); got != want {
		t.Errorf("header: %s, want %s", got, want)
	}
	r = noPacket()
	r.Header.Set("ILP-Destination", "not an address")
	if got := s.Select(pool, r, nil); got != pool[0] {
		t.Errorf("invalid header: %s, want the fallback's %s", got, pool[0])
	}
	if got := s.Select(pool, noPacket(), nil); got != pool[0] {
		t.Errorf("no destination: %s, want the fallback's %s", got, pool[0])
	}
}

// TestPrefixLostUpstreamMovesOnlyItsKeys: an upstream leaving the pool
// moves its own receivers and nobody else's, and they come back with it.
// (ilpdest's tests check the ranking's properties at scale; this checks
// that the policy ranks the pool it is given by the upstreams' addresses.)
func TestPrefixLostUpstreamMovesOnlyItsKeys(t *testing.T) {
	s := newPolicy(t, &PrefixSelection{})
	pool := testPool(5)
	dests := receivers(1000)
	lost := pool[2]
	survivors := reverseproxy.UpstreamPool{pool[4], pool[0], pool[3], pool[1]}
	moved := 0
	for _, d := range dests {
		before := s.Select(pool, destRequest(d), nil)
		after := s.Select(survivors, destRequest(d), nil)
		switch {
		case before != lost && after != before:
			t.Fatalf("%s moved from %s to %s though %s is up", d, before, after, before)
		case before == lost:
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("the lost upstream had no keys")
	}
}

func TestFirstUsable(t *testing.T) {
	order := []int{3, 0, 2, 1}
	down := map[int]bool{3: true, 0: true}
	if i, rank := firstUsable(order, func(i int) bool { return !down[i] }); i != 2 || rank != 2 {
		t.Errorf("got %d rank %d, want 2 rank 2", i, rank)
	}
	if i, rank := firstUsable(order, func(int) bool { return false }); i != -1 || rank != -1 {
		t.Errorf("none usable: got %d, %d", i, rank)
	}
}

func TestPrefixSelectSetsRoute(t *testing.T) {
	s := newPolicy(t, &PrefixSelection{})
	pool := testPool(3)
	r := destRequest("g.a.b.c")
	first := s.Select(pool, r, nil)
	if got := caddyhttp.GetVar(r.Context(), VarUpstreamRank); got != 0 {
		t.Errorf("rank var %v, want 0", got)
	}
	if key := PacketFrom(r).routeKey; key != "g.a.b" {
		t.Errorf("route key %q, want g.a.b", key)
	}
	var rest reverseproxy.UpstreamPool
	for _, u := range pool {
		if u != first {
			rest = append(rest, u)
		}
	}
	r = destRequest("g.a.b.c")
	s.Select(rest, r, nil)
	if got := caddyhttp.GetVar(r.Context(), VarUpstreamRank); got != 0 {
		t.Errorf("rank among the remaining upstreams %v, want 0", got)
	}
}

func TestPrefixCaddyfile(t *testing.T) {
	two, three, zero := 2, 3, 0
	for _, c := range []struct {
		input string
		want  *PrefixSelection
		err   string
	}{
		{"ilp_prefix", &PrefixSelection{}, ""},
		{"ilp_prefix 3", &PrefixSelection{PrefixSegments: &three}, ""},
		{"ilp_prefix 0", &PrefixSelection{PrefixSegments: &zero}, ""},
		{"ilp_prefix {\nprefix_segments 0\n}", &PrefixSelection{PrefixSegments: &zero}, ""},
		{"ilp_prefix 2 {\nfallback first\n}", &PrefixSelection{PrefixSegments: &two, FallbackRaw: []byte(`{"policy":"first"}`)}, ""},
		{"ilp_prefix {\nkey peer\n}", &PrefixSelection{Key: "peer"}, ""},
		{"ilp_prefix {\nkey receiver\n}", nil, "want destination, peer or peer_destination"},
		{"ilp_prefix 2 {\nprefix_segments 3\n}", nil, "given twice"},
		{"ilp_prefix -1", nil, "want a whole number"},
		{"ilp_prefix x", nil, "want a whole number"},
		{"ilp_prefix 1 2", nil, "wrong argument count"},
		{"ilp_prefix {\nfallback nosuchpolicy\n}", nil, "nosuchpolicy"},
		{"ilp_prefix {\nsegments 3\n}", nil, `unrecognized ilp_prefix option "segments"`},
	} {
		got := new(PrefixSelection)
		err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.input))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.input, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.input, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: got %+v (fallback %s), want %+v", c.input, got, got.FallbackRaw, c.want)
		}
	}
}

func BenchmarkPrefixSelect16(b *testing.B) {
	s := newPolicy(b, &PrefixSelection{})
	pool := testPool(16)
	r := destRequest("g.us.bank.alice.stream")
	pkt := PacketFrom(r)
	b.ReportAllocs()
	for b.Loop() {
		pkt.tried = 0 // a new packet each time, not a retry
		if s.Select(pool, r, nil) == nil {
			b.Fatal("nothing selected")
		}
	}
}

// TestPrefixDeprecatedSegments: the JSON field's old name still works, and
// the new one wins when both are given.
func TestPrefixDeprecatedSegments(t *testing.T) {
	one, two := 1, 2
	if s := newPolicy(t, &PrefixSelection{Segments: &one}); s.segments != 1 {
		t.Errorf("segments 1 alone: routing by %d segments", s.segments)
	}
	if s := newPolicy(t, &PrefixSelection{Segments: &one, PrefixSegments: &two}); s.segments != 2 {
		t.Errorf("segments 1 and prefix_segments 2: routing by %d segments", s.segments)
	}
}

// TestPrefixRetryGoesToNextChoice: reverse_proxy calls Select again for
// each lb_retries attempt; each goes to the packet's next-ranked upstream
// (even with no passive health to mark the first down), and none twice.
func TestPrefixRetryGoesToNextChoice(t *testing.T) {
	s := newPolicy(t, &PrefixSelection{})
	pool := testPool(3)
	var names []string
	for _, u := range pool {
		names = append(names, u.String())
	}
	order := ilpdest.Rank("g.a.b", names, nil)
	core, logs := observer.New(zap.InfoLevel)
	s.logger = zap.New(core)
	r := destRequest("g.a.b.c")
	for rank, i := range order {
		if got := s.Select(pool, r, nil); got != pool[i] {
			t.Fatalf("attempt %d: %s, want %s", rank+1, got, pool[i])
		}
		if got := caddyhttp.GetVar(r.Context(), VarUpstreamRank); got != rank {
			t.Errorf("attempt %d: rank var %v, want %d", rank+1, got, rank)
		}
	}
	if got := s.Select(pool, r, nil); got != nil {
		t.Errorf("every upstream tried, got %s, want none", got)
	}
	// Two packets past the first choice, one line: once a second per
	// skipped upstream.
	lines := logs.FilterMessage("packet routed past its first choice").All()
	if len(lines) != 1 || lines[0].ContextMap()["skipped"] != pool[order[0]].Dial || lines[0].ContextMap()["upstream"] != pool[order[1]].Dial {
		t.Errorf("reroute log lines: %v", lines)
	}
	// Another packet starts again from its first choice.
	if got := s.Select(pool, destRequest("g.a.b.d"), nil); got != pool[order[0]] {
		t.Errorf("a new packet got %s, want %s", got, pool[order[0]])
	}
}
