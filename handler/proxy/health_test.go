package proxy

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// healthServer stands in for a connector's admin port: 200 on GET
// /healthz, 404 elsewhere. It counts the checks it answered and the
// HTTP major version of the last one.
type healthServer struct {
	srv    *httptest.Server
	checks atomic.Int32
	proto  atomic.Int32
}

func startHealthServer(t *testing.T, h2c bool) *healthServer {
	t.Helper()
	h := &healthServer{}
	h.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		h.proto.Store(int32(r.ProtoMajor))
		h.checks.Add(1)
	}))
	if h2c {
		h.srv.Config.Protocols = new(http.Protocols)
		h.srv.Config.Protocols.SetUnencryptedHTTP2(true)
	}
	h.srv.Start()
	t.Cleanup(h.srv.Close)
	return h
}

func (h *healthServer) port(t *testing.T) int {
	t.Helper()
	_, port, err := net.SplitHostPort(h.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestProxyHealthPort: a connector that answers 401 to any GET on the
// port that takes its packets, as rafiki does, and serves its health on
// another port, stays healthy with health_port and is marked down without
// it. An h2c upstream's health port is asked in HTTP/2, as the upstream
// is.
func TestProxyHealthPort(t *testing.T) {
	for _, scheme := range []string{"http", "h2c"} {
		t.Run(scheme, func(t *testing.T) {
			h2c := scheme == "h2c"
			c := startConnector(t, "rafiki", h2c)
			c.health.Store(http.StatusUnauthorized) // every GET on the connector port
			admin := startHealthServer(t, h2c)
			e := testEdge(t)

			p := testProxy(t, func(p *Proxy) {
				p.HealthURI = "/healthz"
				p.HealthPort = admin.port(t)
				p.HealthInterval = caddy.Duration(10 * time.Millisecond)
			}, scheme+"://"+c.addr())
			u := p.static.upstreams[0]
			waitFor(t, "three checks on the health port, or a failed one", func() bool { return admin.checks.Load() >= 3 || !u.healthy(1) })
			if !u.healthy(1) {
				t.Fatal("with health_port, the upstream was marked down")
			}
			wantProto := int32(1)
			if h2c {
				wantProto = 2
			}
			if got := admin.proto.Load(); got != wantProto {
				t.Errorf("health port asked in HTTP/%d, want HTTP/%d", got, wantProto)
			}
			// Packets still go to the upstream's own port.
			w, _, err := send(t, e, p, "g.usd.x", time.Minute)
			if got := fulfilledBy(t, w, err); got != "rafiki" {
				t.Errorf("fulfilled by %s", got)
			}
			// The next config shares the upstream's health state: stop
			// this one's checks.
			p.stopHealth()

			// 401 again only once testProxy has set the test logger, which
			// the checker's first warning would otherwise race with.
			c.health.Store(0)
			p = testProxy(t, func(p *Proxy) {
				p.HealthURI = "/healthz"
				p.HealthInterval = caddy.Duration(10 * time.Millisecond)
			}, scheme+"://"+c.addr())
			c.health.Store(http.StatusUnauthorized)
			waitFor(t, "the upstream to be marked down without health_port", func() bool { return !p.static.upstreams[0].healthy(1) })
		})
	}
}

func TestUpstreamHealthURL(t *testing.T) {
	for _, c := range []struct {
		upstream string
		port     int
		want     string
	}{
		{"http://10.0.1.1:3002", 0, "http://10.0.1.1:3002/healthz"},
		{"http://10.0.1.1:3002", 3001, "http://10.0.1.1:3001/healthz"},
		{"10.0.1.1:3002/accounts/{http.ilp.peer}/ilp", 3001, "http://10.0.1.1:3001/healthz"},
		{"h2c://[fd00::1]:7768", 7769, "http://[fd00::1]:7769/healthz"},
		{"https://connectors.internal", 8443, "https://connectors.internal:8443/healthz"},
	} {
		u, err := parseUpstream(c.upstream)
		if err != nil {
			t.Fatal(err)
		}
		if got := u.healthURL("/healthz", c.port); got != c.want {
			t.Errorf("%s, health_port %d: got %s, want %s", c.upstream, c.port, got, c.want)
		}
	}
}

func TestProxyValidateHealthPort(t *testing.T) {
	for _, c := range []struct {
		uri  string
		port int
		err  string // "" for valid
	}{
		{"/healthz", 3001, ""},
		{"/healthz", 65535, ""},
		{"", 0, ""},
		{"/healthz", -1, "health_port must be a port number, 0 to 65535, got -1"},
		{"/healthz", 65536, "health_port must be a port number, 0 to 65535, got 65536"},
		{"", 3001, "health_port 3001 without health_uri"},
	} {
		p := &Proxy{Upstreams: []string{"http://" + ilptest.DeadAddress(t)}, HealthURI: c.uri, HealthPort: c.port,
			HealthInterval: caddy.Duration(time.Hour)}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := p.Provision(ctx)
		if err == nil {
			err = p.Validate()
		}
		p.Cleanup()
		cancel()
		if c.err == "" && err != nil {
			t.Errorf("health_uri %q, health_port %d: %v", c.uri, c.port, err)
		}
		if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("health_uri %q, health_port %d: got %v, want an error containing %q", c.uri, c.port, err, c.err)
		}
	}
}
