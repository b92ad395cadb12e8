package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

func init() {
	caddy.RegisterModule(listSource{})
}

// listSource is an upstream source for tests whose answer the test sets,
// loaded through Caddy's module system as a real source is.
type listSource struct{}

var (
	listSourceMu   sync.Mutex
	listSourceDial []string
	listSourceErr  error
)

func setListSource(err error, dials ...string) {
	listSourceMu.Lock()
	defer listSourceMu.Unlock()
	listSourceDial, listSourceErr = dials, err
}

func (listSource) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.upstreams.ilp_test_list",
		New: func() caddy.Module { return new(listSource) },
	}
}

// GetUpstreams returns fresh values on every call, as Caddy's a and srv
// sources do.
func (listSource) GetUpstreams(*http.Request) ([]*reverseproxy.Upstream, error) {
	listSourceMu.Lock()
	defer listSourceMu.Unlock()
	if listSourceErr != nil {
		return nil, listSourceErr
	}
	ups := make([]*reverseproxy.Upstream, len(listSourceDial))
	for i, d := range listSourceDial {
		ups[i] = &reverseproxy.Upstream{Dial: d}
	}
	return ups, nil
}

// destinationsByConnector sends n packets to distinct prefixes and
// returns which connector fulfilled each.
func destinationsByConnector(t *testing.T, e *handler.Edge, p *Proxy, n int) map[string]string {
	t.Helper()
	got := make(map[string]string, n)
	for i := range n {
		dest := fmt.Sprintf("g.usd.acct%d.receiver", i)
		w, _, err := send(t, e, p, dest, time.Minute)
		got[dest] = fulfilledBy(t, w, err)
	}
	return got
}

func TestProxyDynamicUpstreams(t *testing.T) {
	cs := map[string]*connector{}
	var dials []string
	for _, name := range []string{"c0", "c1", "c2"} {
		c := startConnector(t, name, false)
		cs[c.addr()] = c
		dials = append(dials, c.addr())
	}
	static := startConnector(t, "static", false)
	setListSource(nil, dials...)
	t.Cleanup(func() { setListSource(nil) })

	e := testEdge(t)
	p := testProxy(t, func(p *Proxy) {
		p.DynamicUpstreamsRaw = json.RawMessage(`{"source":"ilp_test_list"}`)
		p.DynamicPath = "/ilp/{http.ilp.peer}"
	}, "http://"+static.addr())

	// Routed as ilp_prefix routes over the source's dial addresses.
	before := destinationsByConnector(t, e, p, 40)
	for dest, by := range before {
		key := ilpdest.Prefix(dest, handler.DefaultPrefixSegments)
		want := cs[dials[ilpdest.Rank(key, dials, nil)[0]]].name
		if by != want {
			t.Fatalf("%s went to %s, want %s (its first choice by Rank)", dest, by, want)
		}
	}
	if got := cs[dials[0]].paths[0]; got != "/ilp/alice HTTP/1.1 alice" {
		t.Errorf("dynamic upstream got %q, want dynamic_path with the peer filled in", got)
	}
	gone := p.dynamic.current.Load().upstreams[1]

	// The source drops c1: only c1's prefixes move, and c1's connections
	// are closed.
	setListSource(nil, dials[0], dials[2])
	after := destinationsByConnector(t, e, p, 40)
	moved := 0
	for dest, by := range after {
		if before[dest] == "c1" {
			moved++
			continue
		}
		if by != before[dest] {
			t.Errorf("%s moved from %s to %s, though its connector stayed", dest, before[dest], by)
		}
	}
	if moved == 0 {
		t.Fatal("no destination was on c1; the test proves nothing")
	}
	gone.state.h1.mu.Lock()
	closed := gone.state.h1.closed
	gone.state.h1.mu.Unlock()
	if !closed {
		t.Error("the dropped upstream's connection pool is still open")
	}

	// A failed lookup falls back to the static upstream.
	setListSource(errors.New("no such host"))
	w, _, err := send(t, e, p, "g.usd.acct1.receiver", time.Minute)
	if by := fulfilledBy(t, w, err); by != "static" {
		t.Errorf("with the lookup failing the packet went to %s, want the static upstream", by)
	}
}

func TestProxyDynamicUpstreamsA(t *testing.T) {
	c := startConnector(t, "c", false)
	host, port, _ := strings.Cut(c.addr(), ":")
	if host != "127.0.0.1" {
		t.Fatalf("connector on %s, want 127.0.0.1", host)
	}
	e := testEdge(t)
	p := testProxy(t, func(p *Proxy) {
		p.DynamicUpstreamsRaw = json.RawMessage(`{"source":"a","name":"localhost","port":"` + port + `","versions":{"ipv4":true}}`)
	})
	w, _, err := send(t, e, p, "g.usd.x", time.Minute)
	fulfilledBy(t, w, err)
	if got := p.dynamic.current.Load().names; len(got) != 1 || got[0] != c.addr() {
		t.Errorf("upstreams %v, want [%s]", got, c.addr())
	}
}

// TestProxyDynamicBuildFailureReleases: a source answer with an unusable
// address fails as a whole, and the upstreams acquired for it before the
// bad one are released, not leaked with their connection pools.
func TestProxyDynamicBuildFailureReleases(t *testing.T) {
	good := startConnector(t, "good", false)
	static := startConnector(t, "static", false)
	setListSource(nil, good.addr(), "") // "" has no host
	t.Cleanup(func() { setListSource(nil) })
	p := testProxy(t, func(p *Proxy) { p.DynamicUpstreamsRaw = json.RawMessage(`{"source":"ilp_test_list"}`) }, "http://"+static.addr())
	w, _, err := send(t, testEdge(t), p, "g.usd.x", time.Minute)
	if by := fulfilledBy(t, w, err); by != "static" {
		t.Errorf("fulfilled by %s, want the static fallback", by)
	}
	u, err := parseUpstream("http://" + good.addr())
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := upstreamStates.References(u.stateKey(p)); ok {
		t.Errorf("the good address's state is still held %d times after the failed build", n)
	}
}
