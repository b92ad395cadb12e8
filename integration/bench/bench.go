package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
	"github.com/ilp-edge/caddy-ilp/integration/internal/ilpclient"
	"github.com/ilp-edge/caddy-ilp/integration/internal/proc"
	"github.com/ilp-edge/caddy-ilp/integration/internal/testpki"
)

// Credentials of the one benchmark peer. They are test values on loopback.
const (
	benchToken     = "bench-static-token"
	benchJWTSecret = "bench-jwt-secret"
)

// bench holds what every run shares: the built binaries, the running stub
// connectors and the packets.
type bench struct {
	root       string // the repository
	dir        string // scratch space, removed at the end
	caddy      string // ./cmd/caddy, built
	gofloor    string // ./integration/bench/gofloor, built
	epollfloor string // ./integration/bench/epollfloor, built
	stubs      []*proc.Process
	stubAddrs  []string
	redis      *proc.Process // for the limits on Redis
	redisAddr  string
	fulfill    []byte // what a stub answers
	prepares   map[string][]byte
	jwt        string
	// The certificate (ECDSA P-256, self-signed for 127.0.0.1) every
	// contender with TLS serves, and a client for h2 that trusts only it.
	certFile, keyFile string
	h2Client          *http.Client
}

// sample is one contender's figures from one run.
type sample struct {
	packets  int64
	pps      float64
	proxyCPU float64 // µs per packet; NaN without a proxy
	proxySys float64 // µs per packet of it in the kernel; NaN without a proxy
	// The proxy's context switches per packet, all its threads; NaN
	// without a proxy.
	proxySwitches float64
	stubCPU       float64 // µs per packet, all stubs together
	p50, p99      time.Duration
	peakMB        float64
	failures      int64
	tls           string // as the client negotiated it; empty without TLS
	// The connections the Go client opened in the measured run, and how
	// many of them resumed a TLS session; 0 with h2load.
	conns, resumed int64
}

// setUp builds the binaries, starts three stub connectors and prepares
// the packets.
func setUp(ctx context.Context) (*bench, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		return nil, errors.New("run the benchmark from inside the caddy-ilp module")
	}
	b := &bench{root: filepath.Dir(string(bytes.TrimSpace(out)))}
	if b.dir, err = os.MkdirTemp("", "caddy-ilp-bench"); err != nil {
		return nil, err
	}
	if err := b.makeCert(); err != nil {
		b.tearDown()
		return nil, err
	}
	b.caddy = filepath.Join(b.dir, "caddy")
	b.gofloor = filepath.Join(b.dir, "gofloor")
	b.epollfloor = filepath.Join(b.dir, "epollfloor")
	stub := filepath.Join(b.dir, "stubconnector")
	for bin, pkg := range map[string]string{b.caddy: "./cmd/caddy", stub: "./integration/stubconnector",
		b.gofloor: "./integration/bench/gofloor", b.epollfloor: "./integration/bench/epollfloor"} {
		log.Printf("go build %s", pkg)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
		cmd.Dir = b.root
		if out, err := cmd.CombinedOutput(); err != nil {
			b.tearDown()
			return nil, fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}

	for i := 1; i <= 3; i++ {
		p, addr, err := proc.StartStub(ctx, b.dir, stub, fmt.Sprintf("stub-%d", i))
		if err != nil {
			b.tearDown()
			return nil, err
		}
		b.stubs = append(b.stubs, p)
		b.stubAddrs = append(b.stubAddrs, addr)
	}

	if err := b.startRedis(ctx); err != nil {
		b.tearDown()
		return nil, err
	}

	// The stubs do not check the condition, but the packets should be
	// ones a real connector would fulfill: learn the fulfillment first.
	probe := ilptest.Prepare("g.bench.probe", time.Minute)
	reply, err := ilpclient.Post(http.DefaultClient, "http://"+b.stubAddrs[0], probe, nil)
	if err == nil {
		err = expectFulfill(reply, -1)
	}
	if err != nil {
		b.tearDown()
		return nil, fmt.Errorf("stub: %w", err)
	}
	b.fulfill = reply
	b.prepares = makePrepares(sha256.Sum256(reply[2:34]))
	b.jwt = ilptest.PluginJWT(benchJWTSecret, 2*time.Hour)
	return b, nil
}

// makeCert writes the certificate the TLS contenders serve and makes the
// client that checks they answer with it over h2.
func (b *bench) makeCert() error {
	b.certFile, b.keyFile = filepath.Join(b.dir, "cert.pem"), filepath.Join(b.dir, "key.pem")
	cert, err := testpki.ServerCert(b.certFile, b.keyFile, "127.0.0.1", "localhost")
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	var p http.Protocols
	p.SetHTTP2(true) // ALPN h2 or nothing
	b.h2Client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Protocols: &p, TLSClientConfig: &tls.Config{RootCAs: roots},
	}}
	return nil
}

// startRedis runs redis-server on a loopback port, without persistence.
func (b *bench) startRedis(ctx context.Context) error {
	b.redisAddr = fmt.Sprintf("127.0.0.1:%d", freePort())
	_, port, _ := net.SplitHostPort(b.redisAddr)
	p, err := proc.Start(b.dir, "redis", nil, "redis-server", "--bind", "127.0.0.1", "--port", port,
		"--save", "", "--appendonly", "no")
	if err != nil {
		return err
	}
	b.redis = p
	return p.WaitReady(ctx, 10*time.Second, func() error {
		c, err := net.Dial("tcp", b.redisAddr)
		if err == nil {
			c.Close()
		}
		return err
	})
}

func (b *bench) tearDown() {
	for _, p := range b.stubs {
		p.Stop()
	}
	if b.redis != nil {
		b.redis.Stop()
	}
	os.RemoveAll(b.dir)
}

// Destinations of the benchmark packets. The prefix (3 segments) is the
// same, so every contender sends them all to one stub.
const (
	smallDestination  = "g.bench.alice"
	streamDestination = "g.bench.alice.ZxR3hq7Ko0aJ1kPq9vWmYc4N8e"
)

// makePrepares builds the two benchmark packets: the smallest realistic
// Prepare (79 bytes, as in ilp-packet's fixtures) and one the size of a
// STREAM packet carrying money and a few frames (encrypted, so random).
// They expire in two hours, far beyond any run.
func makePrepares(condition [32]byte) map[string][]byte {
	expires := time.Now().Add(2 * time.Hour)
	data := make([]byte, 1500)
	rng := rand.NewChaCha8([32]byte{'b', 'e', 'n', 'c', 'h'})
	rng.Read(data)
	return map[string][]byte{
		"79": ilpdest.AppendPrepare(nil, ilpdest.Prepare{
			Amount: 100, ExpiresAt: expires, ExecutionCondition: condition[:],
			Destination: []byte(smallDestination), Data: []byte("hello"),
		}),
		"stream": ilpdest.AppendPrepare(nil, ilpdest.Prepare{
			Amount: 25000, ExpiresAt: expires, ExecutionCondition: condition[:],
			Destination: []byte(streamDestination), Data: data,
		}),
	}
}

// workloads lists the load shapes: each packet size over HTTP/1.1 with 32
// connections and over h2c with 8 connections of 16 streams, and the small
// one over h2 on TLS with h2c's connections and streams (only the
// contenders that serve TLS); then the small one as peers send it in
// other ways (tlsrows.go, newconn.go, manypeers.go): over HTTP/1.1 on
// TLS, on a new connection per packet, and from a thousand peers.
func (b *bench) workloads(o options) []workload {
	small, stream, rate := b.prepares["79"], b.prepares["stream"], o.rate
	return []workload{
		{id: "79-h1", name: fmt.Sprintf("%d B Prepare, HTTP/1.1, 32 conns", len(small)), body: small, conns: 32},
		{id: "79-h2c", name: fmt.Sprintf("%d B Prepare, h2c, 8 conns × 16 streams", len(small)), body: small, h2: true, conns: 8, streams: 16},
		{id: "79-h2tls", name: fmt.Sprintf("%d B Prepare, h2 over TLS, 8 conns × 16 streams", len(small)), body: small, h2: true, tls: true, conns: 8, streams: 16},
		{id: "stream-h1", name: fmt.Sprintf("%d B Prepare, HTTP/1.1, 32 conns", len(stream)), body: stream, conns: 32},
		{id: "stream-h2c", name: fmt.Sprintf("%d B Prepare, h2c, 8 conns × 16 streams", len(stream)), body: stream, h2: true, conns: 8, streams: 16},
		// Latency below saturation: a fixed rate all contenders can carry.
		{id: "79-h1-rate", name: fmt.Sprintf("%d B Prepare, HTTP/1.1, 32 conns, %d packets/s offered", len(small), rate), body: small, conns: 32, rate: rate},
		{id: "79-h1tls", name: fmt.Sprintf("%d B Prepare, HTTP/1.1 over TLS, 32 conns", len(small)), body: small, tls: true, conns: 32},
		newConnWorkload("79-newconn", small, false, o.newConnRate),
		newConnWorkload("79-newconn-tls", small, true, o.newConnRate),
		manyPeersWorkload("79-peers", small, o.peersRate),
	}
}

func workloadIDs() string {
	return "79-h1,79-h2c,79-h2tls,stream-h1,stream-h2c,79-h1-rate,79-h1tls,79-newconn,79-newconn-tls,79-peers"
}

// destination is what the ILP-Destination header says for body.
func destination(body []byte) string {
	p, err := ilpdest.ReadPrepareHeader(body)
	if err != nil {
		panic(err) // the harness built it
	}
	return string(p.Destination)
}

// headers are the request headers for c. Every contender gets the same
// credentials so that requests are the same size; only caddy-ilp reads them.
func (b *bench) headers(c contender, wl workload) []string {
	h := []string{"Content-Type: application/octet-stream"}
	if c.header {
		h = append(h, "ILP-Destination: "+destination(wl.body))
	}
	if c.jwt {
		h = append(h, "Authorization: Bearer "+b.jwt)
	} else {
		h = append(h, "Authorization: Bearer "+benchToken)
	}
	return h
}

// measure starts c fresh, checks that it answers wl's packet with a
// Fulfill, loads it, and stops it. With profileTo set it also records a
// CPU profile of the measured period through Caddy's admin endpoint.
func (b *bench) measure(ctx context.Context, c contender, wl workload, o options, profileTo string) (sample, error) {
	dir, err := os.MkdirTemp(b.dir, c.id+"-")
	if err != nil {
		return sample{}, err
	}
	srv, err := c.start(b, dir)
	if err != nil {
		return sample{}, err
	}
	if srv.proc != nil {
		defer srv.proc.Stop()
	}
	url, client := srv.h1, h1Client
	switch {
	case wl.tls:
		url, client = srv.https, b.h2Client
	case wl.h2:
		url, client = srv.h2c, h2cClient
	}
	if url == "" {
		return sample{}, fmt.Errorf("%s serves no URL for %s", c.id, wl.id)
	}
	headers := b.headers(c, wl)
	err = srv.proc.WaitReady(ctx, 20*time.Second, func() error {
		reply, err := ilpclient.Post(client, url, wl.body, headers)
		if err != nil {
			return err
		}
		return expectFulfill(reply, len(b.fulfill))
	})
	if err != nil {
		return sample{}, err
	}

	var proxy0, stubs0 usage
	profileErr := make(chan error, 1)
	load := runH2load
	if wl.goClient {
		load = b.runGoRow
	}
	r, err := load(ctx, url, wl, headers, o.warmup, o.duration, dir, func() {
		proxy0, stubs0 = b.usage(srv), b.stubUsage()
		if profileTo != "" {
			go func() { profileErr <- fetchProfile(srv.admin, o.duration, profileTo) }()
		}
	})
	if err != nil {
		return sample{}, err
	}
	proxy1, stubs1 := b.usage(srv), b.stubUsage()
	if profileTo != "" {
		if err := <-profileErr; err != nil {
			return sample{}, err
		}
	}

	s := sample{
		tls:     r.tls,
		packets: r.done,
		pps:     r.rate,
		p50:     r.p50, p99: r.p99,
		proxyCPU: math.NaN(), proxySys: math.NaN(), proxySwitches: math.NaN(),
		stubCPU:  perPacket(stubs1.cpu-stubs0.cpu, r.done),
		failures: r.failed + (r.done - r.ok),
		conns:    r.conns, resumed: r.resumed,
	}
	if srv.proc != nil {
		s.proxyCPU = perPacket(proxy1.cpu-proxy0.cpu, r.done)
		s.proxySys = perPacket(proxy1.sys-proxy0.sys, r.done)
		s.proxySwitches = float64(proxy1.switches-proxy0.switches) / float64(max(r.done, 1))
		s.peakMB = float64(proxy1.peakKB) / 1024
	}
	if !r.checked {
		s.failures += wrongAnswers(r, len(b.fulfill))
	}
	if s.failures > 0 && r.checked {
		log.Printf("%s, %s: %d of %d Prepares failed; the first: %s", c.id, wl.id, s.failures, r.started, r.failure)
	} else if s.failures > 0 { // the report has only the count: say what they were, for a CI run that failed
		log.Printf("%s, %s: %d failures: h2load counted %d failed; %d of %d answers not 2xx; %d bytes of answers "+
			"for %d 2xx of a %d-byte Fulfill, %d requests unfinished", c.id, wl.id, s.failures, r.failed, r.done-r.ok,
			r.done, r.dataBytes, r.ok, len(b.fulfill), r.started-r.done)
	}
	return s, nil
}

// wrongAnswers estimates how many 200 answers were not the stub's Fulfill.
// h2load cannot show bodies, only their total size, which also counts the
// answers to requests still in flight when it stopped, whole or in part
// (a body cut by the stop: CI once saw 20 whole and 37 bytes of another).
// Every finished answer must be a Fulfill's size; an edge's Reject is
// another size.
func wrongAnswers(r loadResult, fulfillSize int) int64 {
	size := int64(fulfillSize)
	extra := r.dataBytes - r.ok*size
	if extra >= 0 && extra <= (r.started-r.done)*size {
		return 0
	}
	return max(1, abs(extra)/size)
}

func perPacket(cpu time.Duration, packets int64) float64 {
	if packets == 0 {
		return math.NaN()
	}
	return float64(cpu.Microseconds()) / float64(packets)
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

func (b *bench) usage(srv *server) usage {
	if srv.proc == nil {
		return usage{}
	}
	u, _ := groupUsage(srv.proc.Cmd.Process.Pid)
	return u
}

func (b *bench) stubUsage() usage {
	var total usage
	for _, p := range b.stubs {
		u, _ := groupUsage(p.Cmd.Process.Pid)
		total.cpu += u.cpu
		total.peakKB += u.peakKB
	}
	return total
}

// profile runs c once more (not counted) while Caddy's admin endpoint
// records a CPU profile, and returns pprof's top entries.
func (b *bench) profile(ctx context.Context, c contender, wl workload, o options) (string, error) {
	path := filepath.Join(b.dir, c.id+".pprof")
	if _, err := b.measure(ctx, c, wl, o, path); err != nil {
		return "", err
	}
	var out strings.Builder
	for _, sortBy := range []string{"-flat", "-cum"} {
		cmd := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", sortBy, "-nodecount=10", b.caddy, path)
		cmd.Dir = b.root
		text, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("go tool pprof: %w", err)
		}
		// Keep the table and its summary, not the binary's build ID.
		for _, line := range strings.SplitAfter(string(text), "\n") {
			if !strings.HasPrefix(line, "File:") && !strings.HasPrefix(line, "Build ID:") && !strings.HasPrefix(line, "Time:") {
				out.WriteString(line)
			}
		}
		out.WriteString("\n")
	}
	if o.keepProfile != "" {
		raw, err := os.ReadFile(path)
		kept := filepath.Join(o.keepProfile, c.id+".pprof")
		if err == nil {
			err = os.MkdirAll(o.keepProfile, 0o755)
		}
		if err == nil {
			err = os.WriteFile(kept, raw, 0o644)
		}
		if err != nil {
			return "", err
		}
		log.Printf("CPU profile kept: go tool pprof -http : %s", kept)
	}
	return out.String(), nil
}

func fetchProfile(admin string, d time.Duration, path string) error {
	secs := max(1, int(d.Seconds()))
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

var (
	h1Client  = &http.Client{Timeout: 5 * time.Second}
	h2cClient = ilpclient.H2C(5 * time.Second)
)

// expectFulfill checks that reply is an ILP Fulfill of size n (any size
// if n < 0) with a one-byte length prefix.
func expectFulfill(reply []byte, n int) error {
	t, err := ilpdest.ReadResponseType(reply)
	if err != nil {
		return err
	}
	if t != ilpdest.TypeFulfill {
		code, _ := ilpdest.ReadRejectCode(reply)
		return fmt.Errorf("got %v %s, want a Fulfill", t, code)
	}
	if len(reply) < 34 || reply[1] >= 0x80 || (n >= 0 && len(reply) != n) {
		return fmt.Errorf("unexpected Fulfill of %d bytes", len(reply))
	}
	return nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() int {
	port, err := proc.FreePort()
	if err != nil {
		panic(err)
	}
	return port
}

// installTools installs the contenders and the load generator from
// Debian packages if they are missing.
func installTools() error {
	var pkgs []string
	for bin, pkg := range map[string]string{"nginx": "nginx-light", "haproxy": "haproxy", "h2load": "nghttp2-client", "redis-server": "redis-server"} {
		if _, err := exec.LookPath(bin); err != nil {
			pkgs = append(pkgs, pkg)
		}
	}
	if len(pkgs) == 0 {
		return nil
	}
	log.Printf("installing %s", strings.Join(pkgs, " "))
	sudo := []string{}
	if os.Geteuid() != 0 {
		sudo = []string{"sudo"}
	}
	for _, args := range [][]string{
		append(sudo, "apt-get", "update", "-q"),
		append(append(sudo, "apt-get", "install", "-y", "-q"), pkgs...),
	} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}
