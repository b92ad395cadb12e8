package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/integration/internal/proc"
)

// These tests run the edge as users do — ./cmd/caddy with a Caddyfile —
// between real ilp-plugin-http@1.6.1 peers (integration/js/client.js) and
// three real ilp-plugin-http servers standing in for connectors
// (integration/js/backend.js). They need node and the npm packages in
// integration/js, which `make test` installs.

const (
	aliceToken = "alice-static-token"
	bobSecret  = "bob-jwt-secret"
	carolToken = "carol-legacy-token"
	connToken  = "edge-to-connector-token"
)

// binDir holds the Caddy binary the tests build; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	var err error
	if binDir, err = os.MkdirTemp("", "caddy-ilp-e2e"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

// buildOnce returns a function that builds the package at dir (relative
// to integration/) into binDir the first time it is called.
func buildOnce(dir string) func() (string, error) {
	return sync.OnceValues(func() (string, error) {
		bin := filepath.Join(binDir, filepath.Base(dir))
		out, err := exec.Command("go", "build", "-o", bin, dir).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go build %s: %v\n%s", dir, err, out)
		}
		return bin, nil
	})
}

// buildCaddy builds ./cmd/caddy once per test binary.
var buildCaddy = buildOnce("../cmd/caddy")

func freePort(t *testing.T) int {
	t.Helper()
	port, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func needNode(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: .ci/run installs it")
	}
	if _, err := os.Stat("js/node_modules/ilp-plugin-http"); err != nil {
		t.Fatal("integration/js has no node_modules: `make test` installs them (or run `npm ci` there)")
	}
}

// process is a subprocess whose stdout lines are collected.
type process struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	lines   []string
	ready   chan string
	drained chan struct{} // closed once stdout is read to its end
}

// testLog returns a file for a subprocess's log, printed into the test's
// output only if the test fails, so that a passing run is quiet and a
// failing one shows what Caddy and node said.
func testLog(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), filepath.Base(name)+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if t.Failed() {
			if b, err := os.ReadFile(f.Name()); err == nil && len(b) > 0 {
				const most = 16 << 10
				if len(b) > most {
					b = b[len(b)-most:]
				}
				t.Logf("%s log (last %d bytes):\n%s", name, len(b), b)
			}
		}
	})
	return f
}

func start(t *testing.T, name string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(name, args...), ready: make(chan string, 1), drained: make(chan struct{})}
	p.cmd.Stderr = testLog(t, name)
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.drained)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.lines = append(p.lines, line)
			p.mu.Unlock()
			if strings.HasPrefix(line, "READY ") {
				p.ready <- line
			}
		}
	}()
	t.Cleanup(p.stop)
	return p
}

// stop kills the process (SIGKILL, as a crash) and waits for it.
func (p *process) stop() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Kill()
		_ = p.wait()
	}
}

// wait waits for the process to end, after every line it wrote has been
// read: Wait closes the pipe, and would drop what is still in it.
func (p *process) wait() error {
	<-p.drained
	return p.cmd.Wait()
}

func (p *process) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-p.ready:
	case <-time.After(20 * time.Second):
		t.Fatalf("%v did not become ready", p.cmd.Args)
	}
}

// received returns the destinations this backend has seen, and forgets them.
func (p *process) received() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var dests []string
	for _, l := range p.lines {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "RECV" {
			dests = append(dests, f[1])
		}
	}
	p.lines = nil
	return dests
}

type backendProc struct {
	*process
	name string
	port int
}

func startBackend(t *testing.T, name string, port int) *backendProc {
	t.Helper()
	p := start(t, "node", "js/backend.js", "--port", fmt.Sprint(port), "--name", name,
		"--token", connToken, "--stall-prefix", "g.stall")
	p.waitReady(t)
	return &backendProc{p, name, port}
}

// fleet is the edge in front of three backends.
type fleet struct {
	url      string
	backends []*backendProc
}

// Forwarders the real-peer suite runs with: what ilp_edge hands packets
// to, in a Caddy HTTP site, or ilp_proxy in the ilp app's front door,
// outside Caddy's HTTP server.
const (
	viaReverseProxy = "reverse_proxy"
	viaILPProxy     = "ilp_proxy"
	viaFrontDoor    = "front_door"
)

// forwarderConfig is the Caddyfile for a forwarder to the upstreams
// (host:port), routing by 3-segment prefix either way.
func forwarderConfig(forwarder string, upstreams []string) string {
	if forwarder != viaReverseProxy {
		return "ilp_proxy http://" + strings.Join(upstreams, " http://") + " {\n\t\tprefix_segments 3\n\t}"
	}
	return "reverse_proxy " + strings.Join(upstreams, " ") + " {\n\t\tlb_policy ilp_prefix 3\n\t}"
}

func startFleet(t *testing.T, forwarder string) *fleet {
	t.Helper()
	needNode(t)
	bin, err := buildCaddy()
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{}
	var upstreams []string
	for i := 1; i <= 3; i++ {
		b := startBackend(t, fmt.Sprintf("b%d", i), freePort(t))
		f.backends = append(f.backends, b)
		upstreams = append(upstreams, fmt.Sprintf("127.0.0.1:%d", b.port))
	}
	port := freePort(t)
	f.url = fmt.Sprintf("http://127.0.0.1:%d/ilp", port)
	handlers := fmt.Sprintf(`ilp_edge {
		address test.edge
		peer alice {
			token %s
			upstream_token %s
		}
		peer bob {
			jwt_secret %s
			upstream_token %s
		}
		peer carol {
			token %s
			upstream_token %s
		}
	}
	%s`, aliceToken, connToken, bobSecret, connToken, carolToken, connToken, forwarderConfig(forwarder, upstreams))
	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	servers {
		protocols h1 h2 h2c
	}
}

http://127.0.0.1:%d {
	%s
}
`, port, handlers)
	if forwarder == viaFrontDoor {
		caddyfile = fmt.Sprintf(`{
	admin off
	persist_config off
	ilp {
		server 127.0.0.1:%d {
	%s
		}
	}
}
`, port, handlers)
	}
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	waitListening(t, start(t, bin, "run", "--config", path, "--adapter", "caddyfile"), port)
	return f
}

// waitListening waits for the process p (an edge, a connector) to accept
// connections on port, for up to 20 s.
func waitListening(t *testing.T, p *process, port int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) || p.cmd.ProcessState != nil {
			t.Fatalf("%s did not start listening on %d", p.cmd.Args[0], port)
		}
	}
}

type packetPlan struct {
	Destination string `json:"destination"`
	Amount      string `json:"amount"`
	ExpiresInMs int    `json:"expiresInMs"`
}

type plan struct {
	URL                string            `json:"url"`
	Auth               map[string]string `json:"auth"`
	Name               string            `json:"name"`
	HTTP2              bool              `json:"http2"`
	SendIlpDestination bool              `json:"sendIlpDestination"`
	Concurrency        int               `json:"concurrency"`
	Packets            []packetPlan      `json:"packets"`
}

type result struct {
	I           int     `json:"i"`
	Destination string  `json:"destination"`
	Result      string  `json:"result"`
	Code        string  `json:"code"`
	TriggeredBy string  `json:"triggeredBy"`
	Error       string  `json:"error"`
	Ms          float64 `json:"ms"`
}

// send runs client.js with p and returns one result per packet.
func send(t *testing.T, p plan) []result {
	t.Helper()
	if p.Concurrency == 0 {
		p.Concurrency = 8
	}
	in, _ := json.Marshal(p)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "js/client.js")
	cmd.Stdin = strings.NewReader(string(in))
	cmd.Stderr = testLog(t, "client.js")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client.js: %v", err)
	}
	var res []result
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(line, `"done"`) {
			continue
		}
		var r result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("client.js printed %q: %v", line, err)
		}
		res = append(res, r)
	}
	if len(res) != len(p.Packets) {
		t.Fatalf("%d results for %d packets", len(res), len(p.Packets))
	}
	return res
}

func packetsTo(dests []string, each int) []packetPlan {
	var ps []packetPlan
	for k := 0; k < each; k++ {
		for _, d := range dests {
			ps = append(ps, packetPlan{Destination: d, Amount: "10", ExpiresInMs: 30000})
		}
	}
	return ps
}

// testDestinations returns 100 destinations under 50 three-segment
// prefixes (two receivers' streams per prefix).
func testDestinations() []string {
	var d []string
	for i := 0; i < 50; i++ {
		d = append(d, fmt.Sprintf("g.wallet%d.user%d.s1", i%7, i), fmt.Sprintf("g.wallet%d.user%d.s2", i%7, i))
	}
	return d
}

func prefix3(dest string) string {
	parts := strings.SplitN(dest, ".", 4)
	return strings.Join(parts[:min(3, len(parts))], ".")
}

// routes returns which backend saw each prefix, failing if one prefix
// reached two backends.
func (f *fleet) routes(t *testing.T) map[string]string {
	t.Helper()
	seen := map[string]string{}
	for _, b := range f.backends {
		for _, d := range b.received() {
			p := prefix3(d)
			if other, ok := seen[p]; ok && other != b.name {
				t.Errorf("prefix %s reached both %s and %s", p, other, b.name)
			}
			seen[p] = b.name
		}
	}
	return seen
}

func countResults(res []result) (fulfilled, rejected, errored int, codes map[string]int) {
	codes = map[string]int{}
	for _, r := range res {
		switch r.Result {
		case "fulfill":
			fulfilled++
		case "reject":
			rejected++
			codes[r.Code]++
		default:
			errored++
		}
	}
	return
}

func TestRealPeers(t *testing.T) {
	for _, forwarder := range []string{viaReverseProxy, viaILPProxy, viaFrontDoor} {
		t.Run(forwarder, func(t *testing.T) { testRealPeers(t, forwarder) })
	}
}

func testRealPeers(t *testing.T, forwarder string) {
	outer := t // owns processes that outlive a subtest
	f := startFleet(t, forwarder)
	dests := testDestinations()

	// Reference routing: 1,000 packets to 100 destinations, static token,
	// HTTP/1.1, ILP-Destination header.
	res := send(t, plan{URL: f.url, Auth: map[string]string{"staticToken": aliceToken}, Name: "alice",
		SendIlpDestination: true, Packets: packetsTo(dests, 10)})
	if ok, rej, errs, codes := countResults(res); ok != 1000 {
		t.Fatalf("%d fulfilled, %d rejected %v, %d errors; want 1000 fulfilled", ok, rej, codes, errs)
	}
	want := f.routes(t)
	if len(want) != 50 {
		t.Fatalf("%d prefixes seen, want 50", len(want))
	}
	dist := map[string]int{}
	for _, b := range want {
		dist[b]++
	}
	t.Logf("50 prefixes over 3 backends: %v", dist)
	if len(dist) != 3 {
		t.Errorf("only %d backends used", len(dist))
	}

	sameRoutes := func(t *testing.T, label string) map[string]string {
		t.Helper()
		got := f.routes(t)
		for p, b := range got {
			if want[p] != b {
				t.Errorf("%s: prefix %s went to %s, reference %s", label, p, b, want[p])
			}
		}
		if len(got) == 0 {
			t.Errorf("%s: no packets reached a backend", label)
		}
		return got
	}

	for _, c := range []struct {
		name string
		p    plan
	}{
		{"JWT (plugin re-signs), OER fallback", plan{Auth: map[string]string{"jwtSecret": bobSecret}, Name: "bob"}},
		{"JWT, HTTP/2 h2c", plan{Auth: map[string]string{"jwtSecret": bobSecret}, Name: "bob", HTTP2: true, SendIlpDestination: true}},
		{"legacy raw secretToken", plan{Auth: map[string]string{"secretToken": carolToken}, Name: "carol"}},
		{"static token, HTTP/2, OER fallback", plan{Auth: map[string]string{"staticToken": aliceToken}, Name: "alice", HTTP2: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.p.URL = f.url
			c.p.Packets = packetsTo(dests, 2)
			res := send(t, c.p)
			if ok, rej, errs, codes := countResults(res); ok != len(res) {
				t.Fatalf("%d fulfilled, %d rejected %v, %d errors (%+v)", ok, rej, codes, errs, res[0])
			}
			sameRoutes(t, c.name)
		})
	}

	t.Run("wrong credentials get the HTTP error", func(t *testing.T) {
		for _, auth := range []map[string]string{{"staticToken": "wrong"}, {"jwtSecret": "wrong"}, {"secretToken": "wrong"}} {
			res := send(t, plan{URL: f.url, Auth: auth, Name: "alice", Packets: packetsTo(dests[:2], 1)})
			for _, r := range res {
				if r.Result != "error" || !strings.Contains(r.Error, "code=401") {
					t.Errorf("%v: %+v, want failed to fetch. code=401", auth, r)
				}
			}
		}
		if got := f.routes(t); len(got) != 0 {
			t.Errorf("unauthenticated packets reached backends: %v", got)
		}
	})

	t.Run("backend lost and restored", func(t *testing.T) {
		victim := f.backends[1]
		victim.stop()
		res := send(t, plan{URL: f.url, Auth: map[string]string{"staticToken": aliceToken}, Name: "alice",
			SendIlpDestination: true, Packets: packetsTo(dests, 2)})
		for _, r := range res {
			owner := want[prefix3(r.Destination)]
			switch {
			case owner != victim.name && r.Result != "fulfill":
				t.Errorf("%s (on %s): %+v, want fulfilled", r.Destination, owner, r)
			case owner == victim.name && forwarder == viaReverseProxy &&
				(r.Result != "reject" || r.Code != "T01" || r.TriggeredBy != "test.edge"):
				t.Errorf("%s (on the lost backend): %+v, want a T01 Reject from test.edge", r.Destination, r)
			case owner == victim.name && forwarder != viaReverseProxy && r.Result != "fulfill":
				// The dial is refused, so the packet certainly did not
				// arrive: ilp_proxy tries the prefix's next choice.
				t.Errorf("%s (on the lost backend): %+v, want fulfilled by the next-ranked backend", r.Destination, r)
			}
		}
		for p, b := range f.routes(t) {
			if b == victim.name || (want[p] != victim.name && want[p] != b) {
				t.Errorf("while %s is down: prefix %s went to %s, reference %s", victim.name, p, b, want[p])
			}
		}
		f.backends[1] = startBackend(outer, victim.name, victim.port)
		res = send(t, plan{URL: f.url, Auth: map[string]string{"staticToken": aliceToken}, Name: "alice",
			SendIlpDestination: true, Packets: packetsTo(dests, 1)})
		if ok, rej, errs, codes := countResults(res); ok != len(res) {
			t.Fatalf("after restart: %d fulfilled, %d rejected %v, %d errors", ok, rej, codes, errs)
		}
		got := sameRoutes(t, "after restart")
		if len(got) != 50 {
			t.Errorf("after restart %d prefixes seen", len(got))
		}
	})

	t.Run("stalled backend: R00 by expiry", func(t *testing.T) {
		res := send(t, plan{URL: f.url, Auth: map[string]string{"staticToken": aliceToken}, Name: "alice",
			Packets: []packetPlan{{Destination: "g.stall.x.y", Amount: "1", ExpiresInMs: 1000}}})
		r := res[0]
		if r.Result != "reject" || r.Code != "R00" {
			t.Fatalf("%+v, want an R00 Reject", r)
		}
		if r.Ms > 2500 {
			t.Errorf("R00 after %.0f ms for a packet with 1000 ms to live", r.Ms)
		}
		t.Logf("R00 after %.0f ms", r.Ms)
	})
}
