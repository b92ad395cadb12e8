package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/ilp-edge/caddy-ilp"
	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// connector is an httptest stand-in for a connector that records what it
// was sent.
type connector struct {
	*httptest.Server
	got chan *http.Request
}

func newConnector(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, body []byte)) *connector {
	c := &connector{got: make(chan *http.Request, 100)}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		select {
		case c.got <- r:
		default: // a test that reads none would block the connector at the 101st packet
		}
		answer(w, r, body)
	}))
	t.Cleanup(c.Close)
	return c
}

func hostport(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// startInProcess runs Caddy in the test process with the sites given, on
// http://127.0.0.1:9080. Its log, at debug level, goes to the file whose
// path it returns, shown only if the test fails.
func startInProcess(t *testing.T, sites string) (*caddytest.Tester, string) {
	t.Helper()
	return startInProcessWith(t, "", sites)
}

// startInProcessWith is startInProcess with more global options, such as
// the ilp app's.
func startInProcessWith(t *testing.T, globalOptions, sites string) (*caddytest.Tester, string) {
	t.Helper()
	logPath := testLog(t, "caddy").Name()
	tester := caddytest.NewTester(t)
	tester.InitServer(fmt.Sprintf(`
	{
		skip_install_trust
		admin localhost:2999
		http_port 9080
		https_port 9443
		grace_period 1ns
		log {
			output file %s
			level DEBUG
		}
		servers {
			protocols h1 h2 h2c
			timeouts {
				read_header 2s
				read_body 2s
			}
		}
		%s
	}`, logPath, globalOptions)+sites, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	return tester, logPath
}

// testClient is an HTTP client with a connection pool of its own, closed
// when the test ends. http.DefaultTransport would hand a test a keep-alive
// connection to the Caddy of the test before it, on the same fixed port,
// and a POST on it fails (EOF) without being retried.
func testClient(t *testing.T, timeout time.Duration) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: timeout}
}

// runEdge runs ./cmd/caddy with bothDoors to upstreams on a free port,
// its admin endpoint on another, and the global options given, and waits
// until it fulfils a packet through ilp_proxy. It returns the process,
// the site's host:port and the admin port.
func runEdge(t *testing.T, globalOptions, upstreams string) (p *process, addr string, admin int) {
	t.Helper()
	return runSite(t, globalOptions, func(port int) string { return bothDoors(port, hostileToken, upstreams, "", "") })
}

// runSite runs ./cmd/caddy with the global options and the Caddyfile
// site(port), for a free port, and waits until alice (hostileToken) gets
// a packet fulfilled at /ilp_proxy on it. It returns the process, the
// site's host:port and the admin port.
func runSite(t *testing.T, globalOptions string, site func(port int) string) (p *process, addr string, admin int) {
	t.Helper()
	bin, err := buildCaddy()
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	admin = freePort(t)
	path := filepath.Join(t.TempDir(), "Caddyfile")
	cfg := fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n%s\n}\n", admin, globalOptions) + site(port)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p = start(t, bin, "run", "--config", path, "--adapter", "caddyfile")
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for deadline := time.Now().Add(20 * time.Second); sendOnce(client, "http://"+addr+"/ilp_proxy", "g.warm.up") != "fulfill"; {
		if time.Now().After(deadline) {
			t.Fatal("edge did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p, addr, admin
}

// bothDoors is a site on http://127.0.0.1:<port> whose peer alice (with
// token) reaches upstreams through /reverse_proxy (reverse_proxy with
// lb_policy ilp_prefix, plus rpOptions) and /ilp_proxy (ilp_proxy, plus
// proxyOptions): the two front doors side by side.
func bothDoors(port int, token, upstreams, rpOptions, proxyOptions string) string {
	return fmt.Sprintf(`
http://127.0.0.1:%d {
	ilp_edge {
		address test.edge
		peer alice {
			token %s
		}
	}
	handle /reverse_proxy {
		reverse_proxy %[3]s {
			lb_policy ilp_prefix
			%[4]s
		}
	}
	handle /ilp_proxy {
		ilp_proxy %[3]s {
			%[5]s
		}
	}
}
`, port, token, upstreams, rpOptions, proxyOptions)
}

func TestEdgeEndToEnd(t *testing.T) {
	live := newConnector(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(ilptest.Fulfill([]byte("live")))
	})
	slow := newConnector(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	broken := newConnector(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		http.Error(w, "database on fire", http.StatusInternalServerError)
	})

	tester, _ := startInProcess(t, fmt.Sprintf(`
	http://127.0.0.1:9080 {
		ilp_edge {
			address test.edge
			peer alice {
				token alice-token
				upstream_token alice-at-connector
			}
		}
		handle /live {
			reverse_proxy %s
		}
		handle /dead {
			reverse_proxy %s
		}
		handle /slow {
			reverse_proxy %s
		}
		handle /broken {
			reverse_proxy %s
		}
	}`, hostport(live.Server), ilptest.DeadAddress(t), hostport(slow.Server), hostport(broken.Server)))

	post := func(path string, body []byte, auth string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:9080"+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/ilp+octet-stream")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := tester.Client.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, b
	}
	wantCode := func(path string, res *http.Response, body []byte, code string) {
		t.Helper()
		got, err := ilpdest.ReadRejectCode(body)
		if res.StatusCode != 200 || err != nil || got.String() != code {
			t.Errorf("%s: HTTP %d, reply %x; want 200 + %s Reject", path, res.StatusCode, body, code)
		}
	}

	t.Run("fulfill relayed, identity rewritten", func(t *testing.T) {
		pkt := ilptest.Prepare("g.us.bank.alice", 10*time.Second)
		res, body := post("/live", pkt, "Bearer alice-token")
		if typ, err := ilpdest.ReadResponseType(body); res.StatusCode != 200 || err != nil || typ != ilpdest.TypeFulfill {
			t.Fatalf("HTTP %d, %x", res.StatusCode, body)
		}
		r := <-live.got
		if r.Header.Get("Authorization") != "Bearer alice-at-connector" || r.Header.Get("ILP-Peer-Name") != "alice" ||
			r.Header.Get("Content-Type") != "application/octet-stream" || r.ContentLength != int64(len(pkt)) {
			t.Errorf("connector saw headers %v, length %d", r.Header, r.ContentLength)
		}
		if b, _ := io.ReadAll(r.Body); !bytes.Equal(b, pkt) {
			t.Errorf("connector got different bytes")
		}
	})
	t.Run("no credentials: 401", func(t *testing.T) {
		res, _ := post("/live", ilptest.Prepare("g.a", 10*time.Second), "")
		if res.StatusCode != 401 || res.Header.Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("HTTP %d, WWW-Authenticate %q", res.StatusCode, res.Header.Get("WWW-Authenticate"))
		}
	})
	t.Run("dead connector: T01", func(t *testing.T) {
		res, body := post("/dead", ilptest.Prepare("g.a", 10*time.Second), "Bearer alice-token")
		wantCode("/dead", res, body, "T01")
	})
	t.Run("slower than expiry: R00", func(t *testing.T) {
		start := time.Now()
		res, body := post("/slow", ilptest.Prepare("g.a", time.Second), "Bearer alice-token")
		wantCode("/slow", res, body, "R00")
		if took := time.Since(start); took > 4*time.Second {
			t.Errorf("R00 came after %v for a packet with 1 s to live", took)
		}
	})
	t.Run("connector 500: T00", func(t *testing.T) {
		res, body := post("/broken", ilptest.Prepare("g.a", 10*time.Second), "Bearer alice-token")
		wantCode("/broken", res, body, "T00")
	})
	t.Run("malformed: F01", func(t *testing.T) {
		res, body := post("/live", []byte("not a packet"), "Bearer alice-token")
		wantCode("/live", res, body, "F01")
	})
	t.Run("expired: R02", func(t *testing.T) {
		res, body := post("/live", ilptest.Prepare("g.a", -time.Second), "Bearer alice-token")
		wantCode("/live", res, body, "R02")
	})
	t.Run("GET: 405", func(t *testing.T) {
		res, err := tester.Client.Get("http://127.0.0.1:9080/live")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 405 || res.Header.Get("Allow") != "POST" {
			t.Errorf("HTTP %d, Allow %q", res.StatusCode, res.Header.Get("Allow"))
		}
	})
	t.Run("too large: 413", func(t *testing.T) {
		res, _ := post("/live", make([]byte, 50000), "Bearer alice-token")
		if res.StatusCode != 413 {
			t.Errorf("HTTP %d", res.StatusCode)
		}
	})
}
