package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

func TestProxyRoutesLikeILPPrefix(t *testing.T) {
	for _, scheme := range []string{"http", "h2c"} {
		t.Run(scheme, func(t *testing.T) {
			cs := []*connector{startConnector(t, "c0", scheme == "h2c"), startConnector(t, "c1", scheme == "h2c"), startConnector(t, "c2", scheme == "h2c")}
			var ups, names []string
			for _, c := range cs {
				ups = append(ups, scheme+"://"+c.addr())
				names = append(names, c.addr())
			}
			e := testEdge(t)
			p := testProxy(t, nil, ups...)
			counts := map[string]int{}
			for i := range 60 {
				dest := fmt.Sprintf("g.usd.acct%d.receiver", i)
				want := cs[ilpdest.Rank(ilpdest.Prefix(dest, 3), names, nil)[0]].name
				w, _, err := send(t, e, p, dest, time.Minute)
				if got := fulfilledBy(t, w, err); got != want {
					t.Fatalf("%s went to %s, want %s (ilp_prefix's choice)", dest, got, want)
				}
				counts[want]++
			}
			if len(counts) != 3 {
				t.Errorf("60 prefixes reached only %v", counts)
			}
			wantProto := "HTTP/1.1"
			if scheme == "h2c" {
				wantProto = "HTTP/2.0"
			}
			if got := cs[0].paths[0]; got != "/ "+wantProto+" alice" {
				t.Errorf("connector saw %q, want path /, %s, peer alice", got, wantProto)
			}
		})
	}
}

// TestProxyKeyPeer: with key peer, all of a peer's packets, whatever
// their destinations, reach the one connector its name ranks first.
func TestProxyKeyPeer(t *testing.T) {
	cs := []*connector{startConnector(t, "c0", false), startConnector(t, "c1", false), startConnector(t, "c2", false)}
	var ups, names []string
	for _, c := range cs {
		ups = append(ups, "http://"+c.addr())
		names = append(names, c.addr())
	}
	e := testEdge(t)
	p := testProxy(t, func(p *Proxy) { p.Key = handler.KeyPeer }, ups...)
	want := cs[ilpdest.Rank("alice", names, nil)[0]].name
	for i := range 30 {
		dest := fmt.Sprintf("g.usd.acct%d.receiver", i)
		w, _, err := send(t, e, p, dest, time.Minute)
		if got := fulfilledBy(t, w, err); got != want {
			t.Fatalf("alice's packet to %s went to %s, want %s, where all of hers go", dest, got, want)
		}
	}
}

func TestProxyPathPlaceholders(t *testing.T) {
	c := startConnector(t, "rs", false)
	e := testEdge(t)
	p := testProxy(t, nil, "http://"+c.addr()+"/accounts/{http.ilp.peer}/ilp")
	w, _, err := send(t, e, p, "g.rs.bob", time.Minute)
	fulfilledBy(t, w, err)
	if got := c.paths[0]; got != "/accounts/alice/ilp HTTP/1.1 alice" {
		t.Errorf("connector saw %q", got)
	}
}

func TestProxyRetriesOnlyUndelivered(t *testing.T) {
	live := startConnector(t, "live", false)
	e := testEdge(t)

	t.Run("dial refused: next-ranked upstream", func(t *testing.T) {
		dead := ilptest.DeadAddress(t)
		p := testProxy(t, nil, "http://"+dead, "http://"+live.addr())
		w, r, err := send(t, e, p, destRankedFirst([]string{dead, live.addr()}), time.Minute)
		if got := fulfilledBy(t, w, err); got != "live" {
			t.Errorf("fulfilled by %s", got)
		}
		if rank := caddyhttp.GetVar(r.Context(), handler.VarUpstreamRank); rank != 1 {
			t.Errorf("upstream rank %v, want 1", rank)
		}
	})

	t.Run("backend dies after reading the packet: no second delivery", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		var seen atomic.Int32
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					buf := make([]byte, 4096)
					if n, _ := c.Read(buf); n > 0 {
						seen.Add(1)
					}
					c.Close() // dies without answering
				}()
			}
		}()
		before := live.packets.Load()
		p := testProxy(t, nil, "http://"+l.Addr().String(), "http://"+live.addr())
		_, _, err = forward(t, p, destRankedFirst([]string{l.Addr().String(), live.addr()}), time.Minute)
		wantFailure(t, err, handler.Broken)
		w, _, err := send(t, e, p, destRankedFirst([]string{l.Addr().String(), live.addr()}), time.Minute)
		wantReject(t, w, err, "T00")
		if seen.Load() != 2 || live.packets.Load() != before {
			t.Errorf("the dying backend saw %d packets and the next one %d; want 2 (one per send) and 0",
				seen.Load(), live.packets.Load()-before)
		}
	})

	t.Run("idle connection closed by the backend is not used", func(t *testing.T) {
		c := startConnector(t, "restarting", false)
		p := testProxy(t, nil, "http://"+c.addr())
		w, _, err := send(t, e, p, "g.usd.x", time.Minute)
		fulfilledBy(t, w, err)
		c.srv.CloseClientConnections() // as a restarting connector does
		time.Sleep(20 * time.Millisecond)
		w, _, err = send(t, e, p, "g.usd.x", time.Minute)
		fulfilledBy(t, w, err)
		if n := c.packets.Load(); n != 2 {
			t.Errorf("connector got %d packets, want 2", n)
		}
	})
}

func TestProxyStalledBackendGetsR00(t *testing.T) {
	release := make(chan struct{})
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer stall.Close()
	defer close(release)
	e := testEdge(t)
	p := testProxy(t, nil, stall.URL)
	_, _, err := forward(t, p, "g.usd.x", 200*time.Millisecond)
	wantFailure(t, err, handler.TimedOut)
	w, _, err := send(t, e, p, "g.usd.x", 200*time.Millisecond)
	wantReject(t, w, err, "R00")

	// max_hold shorter than the expiry: T00, the packet has not expired.
	p = testProxy(t, func(p *Proxy) { p.MaxHold = caddy.Duration(100 * time.Millisecond) }, stall.URL)
	_, _, err = forward(t, p, "g.usd.x", time.Minute)
	wantFailure(t, err, handler.TimedOut)
	w, _, err = send(t, e, p, "g.usd.x", time.Minute)
	wantReject(t, w, err, "T00")
}

func TestProxyDeadUpstreamGetsT01(t *testing.T) {
	e := testEdge(t)
	p := testProxy(t, func(p *Proxy) { p.FailDuration = caddy.Duration(time.Minute) }, "http://"+ilptest.DeadAddress(t))
	_, _, err := forward(t, p, "g.usd.x", time.Minute)
	wantFailure(t, err, handler.NotDelivered)
	if p.static.upstreams[0].healthy(1) {
		t.Error("a refused upstream is still healthy within fail_duration")
	}
	// Marked down and the only one: still tried, as a last resort.
	w, _, err := send(t, e, p, "g.usd.x", time.Minute)
	wantReject(t, w, err, "T01")
}

func TestProxyTriesMarkedDownUpstreamsWhenNoneIsHealthy(t *testing.T) {
	a, b := startConnector(t, "a", false), startConnector(t, "b", false)
	dead := ilptest.DeadAddress(t)
	e := testEdge(t)
	p := testProxy(t, func(p *Proxy) { p.FailDuration = caddy.Duration(time.Minute) },
		"http://"+dead, "http://"+a.addr(), "http://"+b.addr())
	for _, u := range p.static.upstreams {
		u.countFailure(time.Minute, p.maxFails) // all marked down, as after a rolling restart
	}
	// In rank order: the dead one refuses, the next one ranked takes it.
	dest := destRankedFirst([]string{dead, a.addr(), b.addr()})
	order := ilpdest.Rank(dest, []string{dead, a.addr(), b.addr()}, nil)
	want := []string{"", "a", "b"}[order[1]]
	core, logs := observer.New(zap.InfoLevel)
	p.logger = zap.New(core)
	w, r, err := send(t, e, p, dest, time.Minute)
	if got := fulfilledBy(t, w, err); got != want {
		t.Errorf("fulfilled by %s, want %s, the next ranked", got, want)
	}
	if rank := caddyhttp.GetVar(r.Context(), handler.VarUpstreamRank); rank != 1 {
		t.Errorf("rank %v, want 1", rank)
	}
	if lines := logs.FilterMessage("packet rerouted past its first choice").All(); len(lines) != 1 || lines[0].ContextMap()["skipped"] != dead {
		t.Errorf("reroute log lines: %v, want one naming %s", lines, dead)
	}
	// One healthy upstream again: it is tried first, whatever the rank.
	other := map[string]int{"a": 2, "b": 1}[want]
	p.static.upstreams[other].clearFailures()
	w, _, err = send(t, e, p, dest, time.Minute)
	if got := fulfilledBy(t, w, err); got != []string{"", "a", "b"}[other] {
		t.Errorf("fulfilled by %s, want the one healthy upstream", got)
	}
}

func TestProxyHealthCheckClearsPassiveFailures(t *testing.T) {
	a := startConnector(t, "a", false)
	p := testProxy(t, func(p *Proxy) {
		p.FailDuration = caddy.Duration(time.Hour)
		p.HealthURI = "/health"
		p.HealthInterval = caddy.Duration(20 * time.Millisecond)
	}, "http://"+a.addr())
	u := p.static.upstreams[0]
	u.countFailure(time.Hour, 1)
	waitFor(t, "a passing check to clear the failure", func() bool { return u.healthy(1) })

	// A failure counted before a clear expires without taking back one
	// counted after it.
	a.health.Store(http.StatusServiceUnavailable) // no more clearing
	waitFor(t, "a to be marked down", func() bool { return u.state.down.Load() })
	u.countFailure(10*time.Millisecond, 1)
	u.clearFailures()
	u.countFailure(time.Hour, 1)
	time.Sleep(50 * time.Millisecond)
	if n := u.state.failures(); n != 1 {
		t.Errorf("%d passive failures, want 1", n)
	}
}

func TestProxyPassiveHealth(t *testing.T) {
	live := startConnector(t, "live", false)
	dead := ilptest.DeadAddress(t)
	e := testEdge(t)
	p := testProxy(t, func(p *Proxy) { p.FailDuration = caddy.Duration(200 * time.Millisecond) },
		"http://"+dead, "http://"+live.addr())
	dest := destRankedFirst([]string{dead, live.addr()})
	_, r, _ := send(t, e, p, dest, time.Minute)
	if rank := caddyhttp.GetVar(r.Context(), handler.VarUpstreamRank); rank != 1 {
		t.Fatalf("rank %v, want 1", rank)
	}
	if p.static.upstreams[0].healthy(1) {
		t.Fatal("refused upstream still healthy")
	}
	waitFor(t, "the failure to expire", func() bool { return p.static.upstreams[0].healthy(1) })
}

func TestProxyActiveHealth(t *testing.T) {
	a, b := startConnector(t, "a", false), startConnector(t, "b", true)
	e := testEdge(t)
	p := testProxy(t, func(p *Proxy) {
		p.HealthURI = "/health"
		p.HealthInterval = caddy.Duration(20 * time.Millisecond)
	}, "http://"+a.addr(), "h2c://"+b.addr())
	dest := destRankedFirst([]string{a.addr(), b.addr()})

	a.health.Store(http.StatusServiceUnavailable)
	waitFor(t, "a to be marked down", func() bool { return !p.static.upstreams[0].healthy(1) })
	w, _, err := send(t, e, p, dest, time.Minute)
	if got := fulfilledBy(t, w, err); got != "b" {
		t.Errorf("with a down, fulfilled by %s", got)
	}
	a.health.Store(0)
	waitFor(t, "a to come back", func() bool { return p.static.upstreams[0].healthy(1) })
	w, _, err = send(t, e, p, dest, time.Minute)
	if got := fulfilledBy(t, w, err); got != "a" {
		t.Errorf("with a back, fulfilled by %s", got)
	}
	// b speaks only h2c: its check must have been made in HTTP/2.
	if !p.static.upstreams[1].healthy(1) {
		t.Error("h2c upstream failed its health check")
	}
}

func TestProxyPoolsSurviveReload(t *testing.T) {
	c := startConnector(t, "c", false)
	old := testProxy(t, nil, "http://"+c.addr())
	e := testEdge(t)
	w, _, err := send(t, e, old, "g.usd.x", time.Minute)
	fulfilledBy(t, w, err)
	conn := old.static.upstreams[0].state.h1.idle[0]

	reloaded := testProxy(t, nil, "http://"+c.addr())
	if reloaded.static.upstreams[0].state != old.static.upstreams[0].state {
		t.Fatal("the new config did not get the old config's upstream state")
	}
	old.Cleanup() // the old config is unloaded
	w, _, err = send(t, e, reloaded, "g.usd.x", time.Minute)
	fulfilledBy(t, w, err)
	if got := reloaded.static.upstreams[0].state.h1.idle[0]; got != conn {
		t.Error("the connection was not reused across the reload")
	}
}

func TestProxyWithoutEdge(t *testing.T) {
	c := startConnector(t, "c", false)
	p := testProxy(t, nil, c.srv.URL)
	w := httptest.NewRecorder()
	err := p.ServeHTTP(w, newRequest(ilptest.Prepare("g.usd.x", time.Minute)), nil)
	if got := fulfilledBy(t, w, err); got != "c" {
		t.Errorf("fulfilled by %s", got)
	}
	err = p.ServeHTTP(httptest.NewRecorder(), newRequest([]byte("not a packet")), nil)
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != http.StatusBadRequest {
		t.Errorf("bad packet: got %v, want a 400 handler error", err)
	}
}

func TestProxyConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		upstreams []string
		want      string
	}{
		{[]string{"ftp://x:1"}, "scheme"},
		{[]string{"http://"}, "no host"},
		{[]string{"http://a:1", "h2c://a:1/other"}, "listed twice"},
		{[]string{"http://a:1/x?y=1"}, "query"},
	} {
		p := &Proxy{Upstreams: tc.upstreams}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := p.Provision(ctx)
		p.Cleanup()
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error about %q", tc.upstreams, err, tc.want)
		}
	}
}

// TestProxyValidate: every field is checked whatever the others, dynamic
// upstreams included.
func TestProxyValidate(t *testing.T) {
	for _, dynamic := range []bool{false, true} {
		for name, mod := range map[string]func(*Proxy){
			"prefix_segments":      func(p *Proxy) { n := -1; p.PrefixSegments = &n },
			"max_fails":            func(p *Proxy) { p.MaxFails = -2 },
			"keepalive_idle_conns": func(p *Proxy) { p.KeepAliveIdleConns = -1 },
			"max_hold":             func(p *Proxy) { p.MaxHold = -1 },
			"health_uri":           func(p *Proxy) { p.HealthURI = "health" },
		} {
			p := &Proxy{Upstreams: []string{"http://" + ilptest.DeadAddress(t)}}
			if dynamic {
				p.DynamicUpstreamsRaw = json.RawMessage(`{"source":"ilp_test_list"}`)
			}
			mod(p)
			ctx, cancel := caddy.NewContext(caddy.ActiveContext())
			err := p.Provision(ctx)
			if err == nil {
				err = p.Validate()
			}
			p.Cleanup()
			cancel()
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("dynamic %v, bad %s: got %v, want an error naming it", dynamic, name, err)
			}
		}
	}
}

func TestProxyUnmarshalCaddyfile(t *testing.T) {
	two, second := 2, caddy.Duration(time.Second)
	for _, c := range []struct {
		name, input string
		want        *Proxy
		err         string
	}{
		{name: "full", input: `ilp_proxy h2c://10.0.0.1:7768 h2c://10.0.0.2:7768 {
			to http://10.0.0.3:7768/accounts/{http.ilp.peer}/ilp
			prefix_segments 2
			key peer_destination
			max_hold 1s
			dial_timeout 1s
			keepalive 1s
			keepalive_idle_conns 8
			fail_duration 1s
			max_fails 3
			health_uri /health
			health_interval 1s
			health_timeout 1s
			metrics off
		}`, want: &Proxy{
			Upstreams:      []string{"h2c://10.0.0.1:7768", "h2c://10.0.0.2:7768", "http://10.0.0.3:7768/accounts/{http.ilp.peer}/ilp"},
			PrefixSegments: &two, Key: "peer_destination", MaxHold: second, DialTimeout: second, KeepAlive: second, KeepAliveIdleConns: 8,
			FailDuration: second, MaxFails: 3, HealthURI: "/health", HealthInterval: second, HealthTimeout: second,
			DisableMetrics: true,
		}},
		{name: "dynamic", input: `ilp_proxy {
			dynamic srv _ilp._tcp.connectors.internal {
				refresh 10s
			}
			dynamic_scheme h2c
			dynamic_path /accounts/{http.ilp.peer}/ilp
		}`, want: &Proxy{
			DynamicUpstreamsRaw: json.RawMessage(`{"name":"_ilp._tcp.connectors.internal","refresh":10000000000,"source":"srv"}`),
			DynamicScheme:       "h2c", DynamicPath: "/accounts/{http.ilp.peer}/ilp",
		}},
		{name: "tls", input: `ilp_proxy https://10.0.0.1:7768 {
			tls_trust_pool file /etc/caddy/connectors-ca.pem
			tls_client_auth /etc/caddy/edge.pem /etc/caddy/edge.key
			tls_server_name connectors.internal
		}`, want: &Proxy{
			Upstreams: []string{"https://10.0.0.1:7768"},
			TLS: &reverseproxy.TLSConfig{
				CARaw:                 json.RawMessage(`{"pem_files":["/etc/caddy/connectors-ca.pem"],"provider":"file"}`),
				ClientCertificateFile: "/etc/caddy/edge.pem", ClientCertificateKeyFile: "/etc/caddy/edge.key",
				ServerName: "connectors.internal",
			},
		}},
		{name: "health port", input: `ilp_proxy 127.0.0.1:3002 127.0.0.1:3012 {
			health_port 3001
			health_uri /healthz
		}`, want: &Proxy{Upstreams: []string{"127.0.0.1:3002", "127.0.0.1:3012"}, HealthURI: "/healthz", HealthPort: 3001}},
		{name: "health port too big", input: "ilp_proxy a:1 {\nhealth_uri /healthz\nhealth_port 65536\n}", err: "health_port 65536: want a port number, 65535 at most, at Testfile:3"},
		{name: "health port not a number", input: "ilp_proxy a:1 {\nhealth_uri /healthz\nhealth_port admin\n}", err: `health_port "admin": want a whole number`},
		{name: "health port without its argument", input: "ilp_proxy a:1 {\nhealth_uri /healthz\nhealth_port\n}", err: "wrong argument count"},
		{name: "health port without health uri", input: "ilp_proxy a:1 {\nhealth_port 3001\nmax_fails 2\n}", err: "health_port without health_uri: add health_uri with the path to GET on that port (active health checks are off without it), at Testfile:2"},
		{name: "two trust pools", input: "ilp_proxy https://a:1 {\ntls_trust_pool file a.pem\ntls_trust_pool file b.pem\n}", err: "already specified"},
		{name: "client auth without key", input: "ilp_proxy https://a:1 {\ntls_client_auth a.pem\n}", err: "wrong argument count"},
		{name: "two dynamic sources", input: "ilp_proxy {\ndynamic a x 1\ndynamic a y 1\n}", err: "already specified"},
		{name: "unknown dynamic source", input: "ilp_proxy {\ndynamic consul x\n}", err: "consul"},
		{name: "bad dynamic scheme", input: "ilp_proxy {\ndynamic a x 1\ndynamic_scheme ws\n}", err: "scheme must be"},
		{name: "bad dynamic path", input: "ilp_proxy {\ndynamic a x 1\ndynamic_path ilp\n}", err: "must start with /"},
		{name: "bad metrics switch", input: "ilp_proxy a:1 {\nmetrics maybe\n}", err: "want on or off"},
		{name: "no upstreams", input: "ilp_proxy {\nmax_hold 1s\n}", err: "at least one upstream"},
		{name: "upstreams from an unset variable", input: "ilp_proxy {$ILP_TEST_UNSET_CONNECTORS}", err: "is the variable that lists them set?"},
		{name: "bad scheme", input: "ilp_proxy ws://a:1", err: "scheme must be"},
		{name: "unknown option", input: "ilp_proxy a:1 {\nlb_policy random\n}", err: `unrecognized ilp_proxy option "lb_policy"`},
		{name: "bad count", input: "ilp_proxy a:1 {\nmax_fails -1\n}", err: "want a whole number"},
		{name: "bad key", input: "ilp_proxy a:1 {\nkey sender\n}", err: `key "sender": want destination, peer or peer_destination`},
		{name: "bad duration", input: "ilp_proxy a:1 {\nmax_hold forever\n}", err: "max_hold"},
		{name: "empty to", input: "ilp_proxy a:1 {\nto\n}", err: "wrong argument count"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := new(Proxy)
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.input))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), "Testfile:") {
					t.Fatalf("error %v, want one containing %q and the Caddyfile line", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}
