package integration

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// caddyILP runs `caddy ilp <args>` from ./cmd/caddy with stdin and
// returns its standard output; it fails the test if the command fails
// and wantErr is empty, or does not fail with wantErr in its stderr.
func caddyILP(t *testing.T, stdin []byte, wantErr string, args ...string) []byte {
	t.Helper()
	bin, err := buildCaddy()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"ilp"}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	switch {
	case wantErr == "" && err != nil:
		t.Fatalf("caddy ilp %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	case wantErr != "" && err == nil:
		t.Fatalf("caddy ilp %s succeeded, want an error containing %q", strings.Join(args, " "), wantErr)
	case wantErr != "" && !strings.Contains(stderr.String(), wantErr):
		t.Fatalf("caddy ilp %s: stderr %q, want %q in it", strings.Join(args, " "), stderr.String(), wantErr)
	}
	return stdout.Bytes()
}

// TestRouteCommandAgreesWithTheEdge runs `caddy ilp route` on the config
// a running edge has, and sends a packet to each address through both
// front doors: the connector that fulfils it must be the command's first
// choice for that forwarder.
// namedConnectors starts n stand-in connectors, c0 to c<n-1>, each of
// which fulfils with its name as the data, and returns their host:port
// and the name at each.
func namedConnectors(t *testing.T, n int) (upstreams []string, byAddr map[string]string) {
	byAddr = map[string]string{}
	for i := range n {
		name := fmt.Sprintf("c%d", i)
		c := newConnector(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
			w.Write(ilptest.Fulfill([]byte(name)))
		})
		upstreams = append(upstreams, hostport(c.Server))
		byAddr[hostport(c.Server)] = name
	}
	return upstreams, byAddr
}

func TestRouteCommandAgreesWithTheEdge(t *testing.T) {
	upstreams, byAddr := namedConnectors(t, 3)
	sites := bothDoors(9080, hostileToken, strings.Join(upstreams, " "), "", "")
	startInProcess(t, sites)
	config := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(config, []byte(sites), 0o600); err != nil {
		t.Fatal(err)
	}

	client := testClient(t, 10*time.Second)
	chosen := map[string]bool{}
	for i := range 10 {
		dest := fmt.Sprintf("g.route%d.bank.alice", i)
		var routes []struct {
			Forwarder string   `json:"forwarder"`
			Key       string   `json:"key"`
			Upstreams []string `json:"upstreams"`
		}
		out := caddyILP(t, nil, "", "route", dest, "--config", config, "--adapter", "caddyfile", "--json")
		if err := json.Unmarshal(out, &routes); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		if len(routes) != 2 {
			t.Fatalf("%d forwarders found, want reverse_proxy and ilp_proxy: %s", len(routes), out)
		}
		for _, r := range routes {
			door := map[string]string{"ilp_proxy": "ilp_proxy", "reverse_proxy (ilp_prefix)": "reverse_proxy"}[r.Forwarder]
			if door == "" || r.Key != fmt.Sprintf("g.route%d.bank", i) || len(r.Upstreams) != 3 {
				t.Fatalf("unexpected route %+v", r)
			}
			got := fulfiller(t, client, "http://127.0.0.1:9080/"+door, dest)
			if want := byAddr[r.Upstreams[0]]; got != want {
				t.Errorf("%s via %s: fulfilled by %s, the command said %s", dest, door, got, want)
			}
			chosen[got] = true
		}
	}
	if len(chosen) < 2 {
		t.Errorf("10 prefixes all went to %v: the test cannot tell a ranking from a constant", chosen)
	}

	caddyILP(t, nil, "not a valid ILP address", "route", "not an address", "--config", config, "--adapter", "caddyfile")
	empty := filepath.Join(t.TempDir(), "Caddyfile")
	os.WriteFile(empty, []byte(":9999 {\n\trespond ok\n}\n"), 0o600)
	caddyILP(t, nil, "no ilp_proxy", "route", "g.a.b", "--config", empty, "--adapter", "caddyfile")
}

// TestRouteCommandWithKeyPeer: for an ilp_proxy with key peer, the route
// command (from the config, and from the running edge's admin endpoint)
// ranks by the peer given with --peer, and every packet of alice's, to
// any destination, goes to the upstream it names first.
func TestRouteCommandWithKeyPeer(t *testing.T) {
	upstreams, byAddr := namedConnectors(t, 3)
	sites := bothDoors(9080, hostileToken, strings.Join(upstreams, " "), "", "key peer")
	startInProcess(t, sites)
	config := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(config, []byte(sites), 0o600); err != nil {
		t.Fatal(err)
	}
	var routes []struct {
		Forwarder string   `json:"forwarder"`
		Key       string   `json:"key"`
		Upstreams []string `json:"upstreams"`
	}
	out := caddyILP(t, nil, "", "route", "g.any.where", "--peer", "alice", "--config", config, "--adapter", "caddyfile", "--json")
	if err := json.Unmarshal(out, &routes); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	var want string
	for _, r := range routes {
		if r.Forwarder == "ilp_proxy" {
			if r.Key != "alice" {
				t.Fatalf("ilp_proxy's route key %q, want the peer's name", r.Key)
			}
			want = byAddr[r.Upstreams[0]]
		}
	}
	var live []struct {
		RouteBy     string `json:"route_by"`
		Key         string `json:"key"`
		WouldSendTo string `json:"would_send_to"`
	}
	if err := json.Unmarshal(caddyILP(t, nil, "", "route", "g.any.where", "--peer", "alice", "--admin", "localhost:2999"), &live); err != nil {
		t.Fatal(err)
	}
	if len(live) != 1 || live[0].RouteBy != "peer" || live[0].Key != "alice" || byAddr[live[0].WouldSendTo] != want {
		t.Errorf("the running edge says %+v, want route_by peer, key alice, to %s", live, want)
	}
	client := testClient(t, 10*time.Second)
	for i := range 10 {
		dest := fmt.Sprintf("g.route%d.bank.alice", i)
		if got := fulfiller(t, client, "http://127.0.0.1:9080/ilp_proxy", dest); got != want {
			t.Errorf("alice's packet to %s: fulfilled by %s, the command said %s for all of hers", dest, got, want)
		}
	}
}

// fulfiller sends one Prepare to dest and returns the data of its
// Fulfill: the name of the connector that answered.
func fulfiller(t *testing.T, client *http.Client, url, dest string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(ilptest.Prepare(dest, 10*time.Second)))
	req.Header.Set("Authorization", "Bearer "+hostileToken)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	data, ok := ilptest.FulfillData(body)
	if !ok {
		t.Fatalf("%s via %s: %s", dest, url, answerOf(res, body))
	}
	return string(data)
}

func TestDecodeCommand(t *testing.T) {
	expiry := time.Date(2030, 1, 2, 3, 4, 5, 678e6, time.UTC)
	prepare := ilptest.NewPrepare(ilpdest.Prepare{Amount: math.MaxUint64, Destination: []byte("g.us.bank.alice"), ExpiresAt: expiry})
	var p map[string]any
	if err := json.Unmarshal(caddyILP(t, prepare, "", "decode"), &p); err != nil {
		t.Fatal(err)
	}
	if p["type"] != "prepare" || p["destination"] != "g.us.bank.alice" || p["amount"] != "18446744073709551615" ||
		p["expiresAt"] != "2030-01-02T03:04:05.678Z" || p["executionCondition"] != hex.EncodeToString(ilptest.Condition()) {
		t.Errorf("prepare decoded as %v", p)
	}

	// A Reject given as hex text in a file.
	file := filepath.Join(t.TempDir(), "reject.hex")
	os.WriteFile(file, []byte(hex.EncodeToString(ilptest.Reject("T04", "g.edge", "no liquidity"))+"\n"), 0o600)
	var r map[string]any
	if err := json.Unmarshal(caddyILP(t, nil, "", "decode", file), &r); err != nil {
		t.Fatal(err)
	}
	if r["type"] != "reject" || r["code"] != "T04" || r["triggeredBy"] != "g.edge" || r["message"] != "no liquidity" {
		t.Errorf("reject decoded as %v", r)
	}
	var f map[string]any
	if err := json.Unmarshal(caddyILP(t, ilptest.Fulfill([]byte("ok")), "", "decode", "-"), &f); err != nil {
		t.Fatal(err)
	}
	if f["type"] != "fulfill" || f["fulfillment"] != hex.EncodeToString(ilptest.Fulfillment) || f["data"] != hex.EncodeToString([]byte("ok")) {
		t.Errorf("fulfill decoded as %v", f)
	}

	caddyILP(t, prepare[:len(prepare)-3], "truncated", "decode")
	caddyILP(t, []byte("garbage"), "not an ILP packet", "decode")
	caddyILP(t, nil, "empty", "decode")
}

func TestSecretCommand(t *testing.T) {
	a := strings.TrimSpace(string(caddyILP(t, nil, "", "secret")))
	b := strings.TrimSpace(string(caddyILP(t, nil, "", "secret")))
	raw, err := base64.RawURLEncoding.DecodeString(a)
	if err != nil || len(raw) != 32 {
		t.Errorf("secret %q: %d bytes, %v; want 32 in base64url", a, len(raw), err)
	}
	if a == b {
		t.Error("two secrets are the same")
	}
}

// TestFingerprintCommand: the fingerprint the command prints is the
// certificate's SHA-256, and a config that uses it as client_cert loads.
func TestFingerprintCommand(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "carol"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile := filepath.Join(dir, "carol.pem")
	keyDER, _ := x509.MarshalECPrivateKey(key)
	pemBytes := append(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...) // the key first: it must be skipped
	os.WriteFile(certFile, pemBytes, 0o600)

	fp := strings.TrimSpace(string(caddyILP(t, nil, "", "fingerprint", certFile)))
	sum := sha256.Sum256(der)
	if got := strings.ReplaceAll(fp, ":", ""); !strings.EqualFold(got, hex.EncodeToString(sum[:])) {
		t.Errorf("fingerprint %s, want the SHA-256 %x", fp, sum)
	}
	config := filepath.Join(dir, "Caddyfile")
	os.WriteFile(config, []byte(fmt.Sprintf(":9999 {\n\tilp_edge {\n\t\taddress g.e\n\t\tpeer carol {\n\t\t\tclient_cert %s\n\t\t}\n\t}\n\trespond ok\n}\n", fp)), 0o600)
	bin, _ := buildCaddy()
	if out, err := exec.Command(bin, "validate", "--config", config, "--adapter", "caddyfile").CombinedOutput(); err != nil {
		t.Errorf("a config with client_cert %s does not validate: %v\n%s", fp, err, out)
	}
	caddyILP(t, nil, "no CERTIFICATE", "fingerprint", config)
}

// TestSendCommand sends with `caddy ilp send` through a running edge: a
// Fulfill with a token, over h2c, and with a JWT; a connector's Reject
// and the edge's own; and a 401.
func TestSendCommand(t *testing.T) {
	conn := newConnector(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		if strings.Contains(string(body), "g.send.reject") {
			w.Write(ilptest.Reject("F99", "g.connector", "no thanks"))
			return
		}
		w.Write(ilptest.Fulfill([]byte("sent")))
	})
	const jwtSecret = "send-command-jwt-secret"
	startInProcess(t, fmt.Sprintf(`
	http://127.0.0.1:9080 {
		ilp_edge {
			address test.edge
			peer alice {
				token %s
			}
			peer bob {
				jwt_secret %s
			}
		}
		handle /dead {
			ilp_proxy %s
		}
		ilp_proxy %s
	}`, hostileToken, jwtSecret, ilptest.DeadAddress(t), hostport(conn.Server)))
	condition := hex.EncodeToString(ilptest.Condition())
	var res struct {
		Answer struct {
			Type, Code, TriggeredBy, Data string
		} `json:"answer"`
		Elapsed      string `json:"elapsed"`
		ConditionMet *bool  `json:"condition_met"`
	}
	for _, auth := range [][]string{{"--token", hostileToken}, {"--token", hostileToken, "--h2c"}, {"--jwt-secret", jwtSecret}} {
		out := caddyILP(t, nil, "", append([]string{"send", "http://127.0.0.1:9080/", "--destination", "g.send.alice",
			"--amount", "42", "--condition", condition}, auth...)...)
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if res.Answer.Type != "fulfill" || res.Answer.Data != hex.EncodeToString([]byte("sent")) ||
			res.ConditionMet == nil || !*res.ConditionMet || res.Elapsed == "" {
			t.Errorf("%v: %s", auth[2:], out)
		}
	}
	got := <-conn.got
	for len(conn.got) > 0 {
		got = <-conn.got
	}
	if got.Header.Get("ILP-Peer-Name") != "bob" {
		t.Errorf("the JWT's packet reached the connector as %q, want bob", got.Header.Get("ILP-Peer-Name"))
	}

	// A random condition: the connector's fulfillment does not match it.
	out := caddyILP(t, nil, "", "send", "http://127.0.0.1:9080/", "--token", hostileToken)
	if err := json.Unmarshal(out, &res); err != nil || res.ConditionMet == nil || *res.ConditionMet {
		t.Errorf("random condition: %s", out)
	}
	out = caddyILP(t, nil, "rejected: F99 from g.connector: no thanks", "send", "http://127.0.0.1:9080/", "--token", hostileToken,
		"--destination", "g.send.reject")
	if err := json.Unmarshal(out, &res); err != nil || res.Answer.Code != "F99" {
		t.Errorf("connector's reject: %s", out)
	}
	caddyILP(t, nil, "rejected: T01 from test.edge", "send", "http://127.0.0.1:9080/dead", "--token", hostileToken)
	caddyILP(t, nil, "HTTP 401", "send", "http://127.0.0.1:9080/", "--token", "not-a-peer")
	caddyILP(t, nil, "give --token or --jwt-secret", "send", "http://127.0.0.1:9080/")
}

// TestSendCommandAsync sends with `caddy ilp send --async` (RFC 35
// draft 3) through an edge whose peer alice answers by callback: the
// Fulfill comes to the command's own callback listener, with the edge's
// callback_token, and is printed as a synchronous one is. When the
// command expects another token, it refuses the edge's POST (401) and
// one with a Request-Id not in flight (400), takes neither, and says at
// the Prepare's expiry that no reply came.
func TestSendCommandAsync(t *testing.T) {
	upstreams, _ := namedConnectors(t, 1)
	cbPort := freePort(t)
	_, addr, admin := runSite(t, "", func(port int) string {
		return fmt.Sprintf(`
http://127.0.0.1:%d {
	ilp_edge {
		address test.edge
		peer alice {
			token %s
			callback_url_prefix http://127.0.0.1:%d/callback/
			callback_token t1
		}
	}
	handle /ilp_proxy {
		ilp_proxy %s
	}
}
`, port, hostileToken, cbPort, upstreams[0])
	})
	url := "http://" + addr + "/ilp_proxy"
	listen := fmt.Sprintf("127.0.0.1:%d", cbPort)
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", admin)
	const delivered = `caddy_ilp_async_replies_total{outcome="delivered",peer="alice"}`
	const refused = `caddy_ilp_async_replies_total{outcome="refused",peer="alice"}`

	start := time.Now()
	out := caddyILP(t, nil, "", "send", url, "--token", hostileToken, "--destination", "g.async.alice",
		"--condition", hex.EncodeToString(ilptest.Condition()), "--async", "--callback-listen", listen, "--callback-token", "t1")
	t.Logf("--async with the edge's callback_token: %v; printed\n%s", time.Since(start).Round(time.Millisecond), out)
	var res struct {
		Answer struct {
			Type, Data string
		} `json:"answer"`
		Elapsed            string `json:"elapsed"`
		ByCallbackAfter202 string `json:"by_callback_after_202"`
		ConditionMet       *bool  `json:"condition_met"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if res.Answer.Type != "fulfill" || res.Answer.Data != hex.EncodeToString([]byte("c0")) ||
		res.ConditionMet == nil || !*res.ConditionMet || res.Elapsed == "" || res.ByCallbackAfter202 == "" {
		t.Errorf("--async printed %s, want c0's Fulfill, by callback", out)
	}
	waitUntil(t, 5*time.Second, "the edge counts the reply delivered", func() bool { return scrape(t, metrics)[delivered] == 1 })

	// The command expects another token: the edge's POST gets 401.
	bin, err := buildCaddy()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "ilp", "send", url, "--token", hostileToken, "--destination", "g.async.alice",
		"--async", "--callback-listen", listen, "--callback-token", "wrong", "--expiry", "2s")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Meanwhile, a POST with the token the command expects and another
	// Request-Id: 400.
	client := testClient(t, 5*time.Second)
	var stranger int
	waitUntil(t, 2*time.Second, "the command's callback listener", func() bool {
		req, _ := http.NewRequest(http.MethodPost, "http://"+listen+"/callback/x", bytes.NewReader(ilptest.Fulfill(nil)))
		req.Header.Set("Authorization", "Bearer wrong")
		req.Header.Set("Request-Id", "00000000-0000-4000-8000-000000000000")
		res, err := client.Do(req)
		if err != nil {
			return false
		}
		res.Body.Close()
		stranger = res.StatusCode
		return true
	})
	if stranger != http.StatusBadRequest {
		t.Errorf("a reply with another Request-Id: HTTP %d, want 400", stranger)
	}
	var exitErr error
	select {
	case exitErr = <-exited:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the command did not exit")
	}
	took := time.Since(start)
	t.Logf("--async with a --callback-token the edge does not send: %v after %v; stderr\n%s", exitErr, took.Round(time.Millisecond), stderr.Bytes())
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit code %d, want 1; stderr:\n%s", code, stderr.Bytes())
	}
	if took < 2*time.Second {
		t.Errorf("exited after %v, before the Prepare's expiry (2s)", took)
	}
	for _, want := range []string{"no reply came by callback", "refused 2 POST(s)", "401", "400"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr has no %q:\n%s", want, stderr.Bytes())
		}
	}
	if stdout.Len() != 0 {
		t.Errorf("printed %s, with no reply taken", stdout.Bytes())
	}
	if m := scrape(t, metrics); m[refused] != 1 || m[delivered] != 1 {
		t.Errorf("the edge counts %v replies refused and %v delivered, want 1 and 1", m[refused], m[delivered])
	}
}
