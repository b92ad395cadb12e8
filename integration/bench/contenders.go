package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ilp-edge/caddy-ilp/integration/internal/proc"
)

// contender is one way of putting the stub connectors behind an address.
type contender struct {
	id     string // for -only
	label  string // in the report
	header bool   // requests carry ILP-Destination
	jwt    bool   // requests carry a JWT instead of the static token
	tls    bool   // serves TLS (server.https); the others sit out the TLS workloads
	h1Only bool   // serves HTTP/1.1 only, and sits out the HTTP/2 workloads
	start  func(b *bench, dir string) (*server, error)
}

// runs reports whether c takes part in wl.
func (c contender) runs(wl workload) bool { return (c.tls || !wl.tls) && !(c.h1Only && wl.h2) }

// server is a started contender.
type server struct {
	h1, h2c string        // URLs for HTTP/1.1 and h2c load
	https   string        // URL for load over TLS (h2 by ALPN, or HTTP/1.1), with the bench's certificate
	proc    *proc.Process // nil when there is no proxy (direct)
	admin   string        // Caddy's admin address, for profiles
}

// Contender ids the report's ratios are computed from.
const (
	idRespond = "caddy-respond"
	idHeader  = "caddy-reverse-proxy"
	idNginx   = "nginx"
	idHAProxy = "haproxy"
	idILP     = "caddy-ilp"
	idProxy   = "caddy-ilp-proxy"
	idLimits  = "caddy-ilp-proxy-limits"
	idRedis   = "caddy-ilp-proxy-redis"
	idFront   = "caddy-ilp-front-door"
	// The front door with the usual system calls (CADDY_ILP_RAWIO=off):
	// what package rawio saves, in the same run.
	idFrontUsual = "caddy-ilp-front-door-usual-io"
	idGoFloor    = "go-floor"
	idEpoll      = "epoll-floor"
)

// contenders are the benchmark's rows, in report order.
var contenders = []contender{
	{id: "direct", label: "direct to one stub (the floor)", header: true, start: startDirect},
	{id: idGoFloor, label: "a minimal Go forwarder (Go's floor: no auth, no parsing, no deadlines)", header: true, h1Only: true, start: startGoFloor},
	{id: idEpoll, label: "the same on raw epoll, an event loop per core (the floor of issue 35's engine)", header: true, h1Only: true, start: startEpollFloor},
	{id: idRespond, label: "Caddy `respond` (Caddy's serving floor)", header: true, start: startCaddyRespond},
	{id: idHeader, label: "Caddy `reverse_proxy` + `lb_policy header`", header: true, start: caddyfileStarter(caddyHeaderSite)},
	{id: idNginx, label: "nginx `hash … consistent` + keepalive", header: true, tls: true, start: startNginx},
	{id: idHAProxy, label: "HAProxy `balance hdr()` consistent", header: true, tls: true, start: startHAProxy},
	{id: idILP, label: "caddy-ilp: `ilp_edge` token + `ilp_prefix`, header", header: true, start: caddyfileStarter(caddyILPSite(false))},
	{id: "caddy-ilp-oer", label: "caddy-ilp, destination from the OER", start: caddyfileStarter(caddyILPSite(false))},
	{id: "caddy-ilp-jwt", label: "caddy-ilp, JWT auth", header: true, jwt: true, start: caddyfileStarter(caddyILPSite(true))},
	{id: idProxy, label: "caddy-ilp: `ilp_edge` token + `ilp_proxy` (HTTP/1.1 upstreams)", header: true, start: caddyfileStarter(caddyProxySite("http", "", ""))},
	{id: idFront, label: "caddy-ilp: the `ilp` app's front door, `ilp_edge` token + `ilp_proxy`", header: true, tls: true, start: startFrontDoor},
	{id: idFrontUsual, label: "the same front door with the usual system calls (`CADDY_ILP_RAWIO=off`)", header: true, tls: true, start: startFrontDoorUsualIO},
	{id: "caddy-ilp-proxy-oer", label: "caddy-ilp with `ilp_proxy`, destination from the OER", start: caddyfileStarter(caddyProxySite("http", "", ""))},
	{id: "caddy-ilp-proxy-nometrics", label: "caddy-ilp with `ilp_proxy`, `metrics off`", header: true, start: caddyfileStarter(caddyProxySite("http", "\t\tmetrics off\n", "\t\tmetrics off\n"))},
	{id: idLimits, label: "caddy-ilp with `ilp_proxy`, rate and throughput limits in process", header: true, start: caddyfileStarter(caddyLimitsSite(false))},
	{id: idRedis, label: "caddy-ilp with `ilp_proxy`, rate and throughput limits on Redis", header: true, start: caddyfileStarter(caddyLimitsSite(true))},
	{id: "caddy-ilp-proxy-alone", label: "`ilp_proxy` alone, no `ilp_edge`: the forwarding floor", start: caddyfileStarter(caddyProxyAloneSite)},
	{id: "caddy-ilp-proxy-h2c", label: "caddy-ilp with `ilp_proxy`, h2c upstreams", header: true, start: caddyfileStarter(caddyProxySite("h2c", "", ""))},
}

func startDirect(b *bench, _ string) (*server, error) {
	u := "http://" + b.stubAddrs[0]
	return &server{h1: u, h2c: u}, nil
}

// startGoFloor runs ./integration/bench/gofloor in front of the stubs.
func startGoFloor(b *bench, dir string) (*server, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	p, err := proc.Start(dir, "gofloor", nil, b.gofloor, "-listen", addr, "-upstreams", strings.Join(b.stubAddrs, ","))
	if err != nil {
		return nil, err
	}
	return &server{h1: "http://" + addr, proc: p}, nil
}

// startEpollFloor runs ./integration/bench/epollfloor in front of the
// stubs.
func startEpollFloor(b *bench, dir string) (*server, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	p, err := proc.Start(dir, "epollfloor", nil, b.epollfloor, "-listen", addr, "-upstreams", strings.Join(b.stubAddrs, ","))
	if err != nil {
		return nil, err
	}
	return &server{h1: "http://" + addr, proc: p}, nil
}

// caddyGlobal is the global options block every Caddyfile contender
// shares: an admin endpoint on loopback (for pprof), no autosave, and h2c
// beside HTTP/1.1.
func caddyGlobal(admin string) string {
	return fmt.Sprintf(`{
	admin %s
	persist_config off
	servers {
		protocols h1 h2c
	}
}
`, admin)
}

func caddyHeaderSite(b *bench) string {
	return fmt.Sprintf(`	reverse_proxy %s {
		lb_policy header ILP-Destination
	}
`, strings.Join(b.stubAddrs, " "))
}

func caddyILPSite(jwt bool) func(b *bench) string {
	return func(b *bench) string {
		cred := "token " + benchToken
		if jwt {
			cred = "jwt_secret " + benchJWTSecret
		}
		return fmt.Sprintf(`	ilp_edge {
		address g.bench.edge
		peer bench {
			%s
		}
	}
	reverse_proxy %s {
		lb_policy ilp_prefix
	}
`, cred, strings.Join(b.stubAddrs, " "))
	}
}

// caddyProxySite is ilp_edge + ilp_proxy to the stubs over scheme, with
// extra lines in each block.
func caddyProxySite(scheme, edgeExtra, proxyExtra string) func(b *bench) string {
	return caddyProxySitePeer(scheme, edgeExtra, "", proxyExtra)
}

// caddyProxySitePeer is caddyProxySite with extra lines in the peer's
// block too (its callback, for the asynchronous runs).
func caddyProxySitePeer(scheme, edgeExtra, peerExtra, proxyExtra string) func(b *bench) string {
	return func(b *bench) string {
		var ups []string
		for _, a := range b.stubAddrs {
			ups = append(ups, scheme+"://"+a)
		}
		return fmt.Sprintf(`	ilp_edge {
		address g.bench.edge
%[3]s		peer bench {
			token %[1]s
%[5]s		}
	}
	ilp_proxy %[2]s {
%[4]s	}
`, benchToken, strings.Join(ups, " "), edgeExtra, proxyExtra, peerExtra)
	}
}

// caddyLimitsSite is caddyProxySite with the peer's packet rate and
// amount throughput limited, in process or on the harness' Redis: limits
// above any load here (so no packet is refused), whose leases from Redis
// (a twentieth of a burst: 2,500 packets) are still renewed several
// times a second at full load.
func caddyLimitsSite(redis bool) func(b *bench) string {
	return func(b *bench) string {
		limits := "\t\trate 50000 per 1s\n\t\tthroughput 2000000000 per 1s\n"
		if redis {
			limits += "\t\tredis " + b.redisAddr + "\n"
		}
		return caddyProxySite("http", limits, "")(b)
	}
}

// caddyProxyAloneSite is ilp_proxy with nothing before it: what
// forwarding costs without authentication, expiry and Reject mapping.
func caddyProxyAloneSite(b *bench) string {
	return "\tilp_proxy " + strings.Join(b.stubAddrs, " ") + "\n"
}

// caddyfileStarter runs ./cmd/caddy with a Caddyfile whose one site, on a
// loopback port, holds the handlers site returns.
func caddyfileStarter(site func(b *bench) string) func(b *bench, dir string) (*server, error) {
	return func(b *bench, dir string) (*server, error) {
		port := freePort()
		admin := fmt.Sprintf("127.0.0.1:%d", freePort())
		srv, err := startCaddyfile(b, dir, caddyGlobal(admin)+fmt.Sprintf(":%d {\n\tbind 127.0.0.1\n%s}\n", port, site(b)))
		if err != nil {
			return nil, err
		}
		u := fmt.Sprintf("http://127.0.0.1:%d", port)
		srv.h1, srv.h2c, srv.admin = u, u, admin
		return srv, nil
	}
}

// startFrontDoor runs ./cmd/caddy with ilp_edge and ilp_proxy as
// caddyProxySite has them, in the ilp app's front door (HTTP/1.1 and h2c
// outside Caddy's HTTP server) rather than in a site; a second front door
// with the same handlers serves TLS (h2 by ALPN, or HTTP/1.1) on another
// port, as nginx's third listener does.
func startFrontDoor(b *bench, dir string) (*server, error) {
	return startFrontDoorWith(b, dir, caddyProxySite("http", "", "")(b))
}

// startFrontDoorUsualIO is startFrontDoor with package rawio's raw
// system calls turned off.
func startFrontDoorUsualIO(b *bench, dir string) (*server, error) {
	return startFrontDoorWith(b, dir, caddyProxySite("http", "", "")(b), "CADDY_ILP_RAWIO=off")
}

// startFrontDoorWith is startFrontDoor with the handlers given, in the
// same two front doors, and env added to Caddy's environment.
func startFrontDoorWith(b *bench, dir, handlers string, env ...string) (*server, error) {
	port, tlsPort := freePort(), freePort()
	admin := fmt.Sprintf("127.0.0.1:%d", freePort())
	cfg, err := adaptCaddyfile(b, dir, fmt.Sprintf(
		"{\n\tadmin %s\n\tpersist_config off\n\tilp {\n\t\tserver 127.0.0.1:%d {\n%s\t\t}\n\t\tserver 127.0.0.1:%d {\n\t\t\ttls\n%s\t\t}\n\t}\n}\n",
		admin, port, handlers, tlsPort, handlers))
	if err != nil {
		return nil, err
	}
	// The front door's tls without names serves whatever certificate
	// Caddy's tls app holds, chosen by SNI or, as h2load sends none to an
	// IP address, by the local address. A Caddyfile loads certificate
	// files into the tls app only from a site, so they go into the
	// adapted JSON: the same ECDSA P-256 certificate nginx serves, so that
	// both sign the same handshakes (local_certs would issue another
	// P-256 key, but with a chain of two certificates to send).
	cfg["apps"].(map[string]any)["tls"] = map[string]any{"certificates": map[string]any{
		"load_files": []any{map[string]any{"certificate": b.certFile, "key": b.keyFile}},
	}}
	srv, err := startCaddyJSON(b, dir, cfg, env...)
	if err != nil {
		return nil, err
	}
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	srv.h1, srv.h2c, srv.admin = u, u, admin
	srv.https = fmt.Sprintf("https://127.0.0.1:%d", tlsPort)
	return srv, nil
}

// startCaddyfile runs ./cmd/caddy with the Caddyfile cfg, written in dir.
func startCaddyfile(b *bench, dir, cfg string) (*server, error) {
	path, err := writeCaddyfile(dir, cfg)
	if err != nil {
		return nil, err
	}
	p, err := proc.Start(dir, "caddy", nil, b.caddy, "run", "--config", path, "--adapter", "caddyfile")
	if err != nil {
		return nil, err
	}
	return &server{proc: p}, nil
}

func writeCaddyfile(dir, cfg string) (string, error) {
	path := filepath.Join(dir, "Caddyfile")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// adaptCaddyfile turns the Caddyfile cfg into Caddy's JSON with
// ./cmd/caddy's adapter.
func adaptCaddyfile(b *bench, dir, cfg string) (map[string]any, error) {
	path, err := writeCaddyfile(dir, cfg)
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd := exec.Command(b.caddy, "adapt", "--config", path, "--adapter", "caddyfile")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("caddy adapt: %v\n%s", err, stderr.String())
	}
	var js map[string]any
	return js, json.Unmarshal(out, &js)
}

// startCaddyJSON runs ./cmd/caddy with the JSON config cfg, written in dir.
func startCaddyJSON(b *bench, dir string, cfg any, env ...string) (*server, error) {
	js, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(path, js, 0o600); err != nil {
		return nil, err
	}
	p, err := proc.Start(dir, "caddy", env, b.caddy, "run", "--config", path)
	if err != nil {
		return nil, err
	}
	return &server{proc: p}, nil
}

// startCaddyRespond runs Caddy answering every request with a stub's
// Fulfill and no proxying: what Caddy costs to serve a packet at all. It
// is JSON because a Fulfill starts with a CR byte, which a Caddyfile token
// cannot carry.
func startCaddyRespond(b *bench, dir string) (*server, error) {
	port := freePort()
	admin := fmt.Sprintf("127.0.0.1:%d", freePort())
	cfg := map[string]any{
		"admin": map[string]any{"listen": admin, "config": map[string]any{"persist": false}},
		"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"bench": map[string]any{
			"listen":    []string{fmt.Sprintf("127.0.0.1:%d", port)},
			"protocols": []string{"h1", "h2c"},
			"routes": []any{map[string]any{"handle": []any{map[string]any{
				"handler":     "static_response",
				"status_code": 200,
				"headers":     map[string][]string{"Content-Type": {"application/octet-stream"}},
				"body":        string(b.fulfill),
			}}}},
		}}}},
	}
	srv, err := startCaddyJSON(b, dir, cfg)
	if err != nil {
		return nil, err
	}
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	srv.h1, srv.h2c, srv.admin = u, u, admin
	return srv, nil
}

// startNginx runs nginx as an operator would for this job: one worker per
// core, consistent hashing on the header, keep-alive to the upstreams
// (256 idle connections per worker: enough that 128 streams in flight
// never make it reconnect), no access log. nginx 1.22 cannot serve HTTP/1.1 and h2c on one port; the
// third port is TLS (h2 by ALPN, or HTTP/1.1) with the bench's certificate,
// the protocols Caddy allows by default and nginx's defaults otherwise
// (session tickets on, which is how TLS 1.3 resumes the sessions of the
// rows with a new connection per packet; no session cache).
// `listen … ssl http2` is 1.22's syntax; from 1.25.1 it is deprecated for
// `http2 on`, but still works, as for the h2c port.
func startNginx(b *bench, dir string) (*server, error) {
	p1, p2, p3 := freePort(), freePort(), freePort()
	var servers strings.Builder
	for _, a := range b.stubAddrs {
		fmt.Fprintf(&servers, "\t\tserver %s;\n", a)
	}
	cfg := fmt.Sprintf(`daemon off;
master_process on;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events {
	worker_connections 4096;
}
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	keepalive_requests 1000000;
	upstream stubs {
		hash $http_ilp_destination consistent;
%[2]s		keepalive 256;
		keepalive_requests 1000000;
	}
	server {
		listen 127.0.0.1:%[3]d;
		listen 127.0.0.1:%[4]d http2;
		listen 127.0.0.1:%[5]d ssl http2;
		ssl_certificate %[6]s;
		ssl_certificate_key %[7]s;
		ssl_protocols TLSv1.2 TLSv1.3;
		location / {
			proxy_pass http://stubs;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
	}
}
`, dir, servers.String(), p1, p2, p3, b.certFile, b.keyFile)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	p, err := proc.Start(dir, "nginx", nil, "nginx", "-p", dir, "-c", path, "-e", dir+"/nginx-error.log")
	if err != nil {
		return nil, err
	}
	return &server{h1: fmt.Sprintf("http://127.0.0.1:%d", p1), h2c: fmt.Sprintf("http://127.0.0.1:%d", p2),
		https: fmt.Sprintf("https://127.0.0.1:%d", p3), proc: p}, nil
}

// startHAProxy runs HAProxy in the foreground with one thread per core,
// hashing the header consistently and reusing upstream connections, with
// no logging. Its third port is TLS (h2 by ALPN, or HTTP/1.1) with the
// bench's certificate, set as haproxyTLS says.
func startHAProxy(b *bench, dir string) (*server, error) {
	p1, p2, p3 := freePort(), freePort(), freePort()
	var servers strings.Builder
	for i, a := range b.stubAddrs {
		fmt.Fprintf(&servers, "\tserver stub%d %s\n", i+1, a)
	}
	pem, err := haproxyPEM(b, dir)
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`global
	maxconn 4096
%s
defaults
	mode http
	timeout connect 5s
	timeout client 60s
	timeout server 60s
	http-reuse always
frontend edge
	bind 127.0.0.1:%d
	bind 127.0.0.1:%d proto h2
	bind 127.0.0.1:%d ssl crt %s alpn h2,http/1.1
	default_backend stubs
backend stubs
	balance hdr(ILP-Destination)
	hash-type consistent
%s`, haproxyTLS, p1, p2, p3, pem, servers.String())
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	p, err := proc.Start(dir, "haproxy", nil, "haproxy", "-db", "-f", path)
	if err != nil {
		return nil, err
	}
	return &server{h1: fmt.Sprintf("http://127.0.0.1:%d", p1), h2c: fmt.Sprintf("http://127.0.0.1:%d", p2),
		https: fmt.Sprintf("https://127.0.0.1:%d", p3), proc: p}, nil
}
