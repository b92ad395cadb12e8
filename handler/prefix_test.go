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

// destRequest is a request as ilp_edge leaves it for reverse_proxy.
func destRequest(dest any) *http.Request {
	r := newRequest(http.MethodPost, nil)
	if dest != nil {
		caddyhttp.SetVar(r.Context(), VarDestination, dest)
	}
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
	s0 := newPolicy(t, &PrefixSelection{Segments: &whole})
	one := 1
	s1 := newPolicy(t, &PrefixSelection{Segments: &one})
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
	// A Stringer var (what ilp_edge sets) and a header both route by
	// prefix; without either, the fallback ("first") decides.
	r := destRequest((*destinationView)(&packet{destination: "g.us.bank.alice"}))
	if got := s.Select(pool, r, nil); got != want {
		t.Errorf("Stringer var: %s, want %s", got, want)
	}
	r = destRequest(nil)
	r.Header.Set("ILP-Destination", "g.us.bank.alice")
	if got := s.Select(pool, r, nil); got != want {
		t.Errorf("header: %s, want %s", got, want)
	}
	r = destRequest(nil)
	r.Header.Set("ILP-Destination", "not an address")
	if got := s.Select(pool, r, nil); got != pool[0] {
		t.Errorf("invalid header: %s, want the fallback's %s", got, pool[0])
	}
	if got := s.Select(pool, destRequest(nil), nil); got != pool[0] {
		t.Errorf("no destination: %s, want the fallback's %s", got, pool[0])
	}
}

// TestPrefixRemovalMovesOnlyItsKeys: an upstream going away moves its own
// receivers and nobody else's, and its receivers come back when it returns.
func TestPrefixRemovalMovesOnlyItsKeys(t *testing.T) {
	s := newPolicy(t, &PrefixSelection{})
	dests := receivers(10000)
	for n := 2; n <= 16; n++ {
		pool := testPool(n)
		before := make([]*reverseproxy.Upstream, len(dests))
		for i, d := range dests {
			before[i] = s.Select(pool, destRequest(d), nil)
		}
		lost := pool[n/2]
		var survivors reverseproxy.UpstreamPool
		for _, u := range pool {
			if u != lost {
				survivors = append(survivors, u)
			}
		}
		moved := 0
		for i, d := range dests {
			after := s.Select(survivors, destRequest(d), nil)
			if before[i] != lost && after != before[i] {
				t.Fatalf("n=%d: %s moved from %s to %s though %s is up", n, d, before[i], after, before[i])
			}
			if before[i] == lost {
				moved++
			}
			if back := s.Select(pool, destRequest(d), nil); back != before[i] {
				t.Fatalf("n=%d: %s did not return to %s", n, d, before[i])
			}
		}
		if moved == 0 {
			t.Fatalf("n=%d: the lost upstream had no keys", n)
		}
	}
}

func TestPrefixAddAndBalance(t *testing.T) {
	s := newPolicy(t, &PrefixSelection{})
	dests := receivers(10000)
	for n := 2; n <= 16; n++ {
		pool := testPool(n + 1)
		counts := map[*reverseproxy.Upstream]int{}
		moved := 0
		for _, d := range dests {
			before := s.Select(pool[:n], destRequest(d), nil)
			after := s.Select(pool, destRequest(d), nil)
			if after != before {
				if after != pool[n] {
					t.Fatalf("n=%d: %s moved between old upstreams", n, d)
				}
				moved++
			}
			counts[before]++
		}
		if limit := 1.1 / float64(n+1) * float64(len(dests)); float64(moved) > limit {
			t.Errorf("n=%d: adding an upstream moved %d of %d keys (limit %.0f)", n, moved, len(dests), limit)
		}
		if n == 3 || n == 8 || n == 16 {
			most := 0
			for _, c := range counts {
				most = max(most, c)
			}
			ratio := float64(most) / (float64(len(dests)) / float64(n))
			t.Logf("n=%d: max/mean keys per upstream %.3f, adding one moved %.2f%% (1/(N+1) = %.2f%%)",
				n, ratio, 100*float64(moved)/float64(len(dests)), 100/float64(n+1))
			if ratio > 1.15 {
				t.Errorf("n=%d: max/mean = %.3f", n, ratio)
			}
		}
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

func TestPrefixSelectSetsRank(t *testing.T) {
	s := newPolicy(t, &PrefixSelection{})
	r := destRequest("g.a.b.c")
	s.Select(testPool(3), r, nil)
	if got := caddyhttp.GetVar(r.Context(), VarUpstreamRank); got != 0 {
		t.Errorf("rank var %v, want 0", got)
	}
}

func TestPrefixCaddyfile(t *testing.T) {
	three, zero := 3, 0
	for _, c := range []struct {
		input string
		want  *PrefixSelection
		err   string
	}{
		{"ilp_prefix", &PrefixSelection{}, ""},
		{"ilp_prefix 3", &PrefixSelection{Segments: &three}, ""},
		{"ilp_prefix 0", &PrefixSelection{Segments: &zero}, ""},
		{"ilp_prefix 2 {\nfallback first\n}", nil, ""},
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
		if c.want != nil && !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: got %+v", c.input, got)
		}
		if c.want == nil && string(got.FallbackRaw) != `{"policy":"first"}` {
			t.Errorf("%q: fallback %s", c.input, got.FallbackRaw)
		}
	}
}

func BenchmarkPrefixSelect16(b *testing.B) {
	s := newPolicy(b, &PrefixSelection{})
	pool := testPool(16)
	r := destRequest("g.us.bank.alice.stream")
	b.ReportAllocs()
	for b.Loop() {
		if s.Select(pool, r, nil) == nil {
			b.Fatal("nothing selected")
		}
	}
}
