package integration

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// Peers' secrets in the hostile-input suite; none may show up in a log.
const (
	hostileToken     = "alice-hostile-suite-token-5f0c2a"
	hostileJWTSecret = "bob-hostile-suite-jwt-secret-9d41e7"
	hostileUpstream  = "upstream-token-hostile-suite-77aa"
)

// rawExchange writes req on a fresh connection to addr and reads what
// comes back until the edge closes the connection, a reply is complete
// (when wantReplies is reached), or 10 s pass.
func rawExchange(t *testing.T, addr string, req []byte, wantReplies int) (replies []*http.Response, bodies [][]byte, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		return nil, nil, true
	}
	br := bufio.NewReader(c)
	for len(replies) < wantReplies {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			return replies, bodies, !isTimeout(err)
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		replies, bodies = append(replies, res), append(bodies, b)
		if err != nil || res.Close {
			return replies, bodies, true
		}
	}
	return replies, bodies, false
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// post is a raw HTTP/1.1 POST with the given extra header lines and body,
// Content-Length set unless the headers set framing themselves.
func post(path string, headers []string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n", path)
	framed := false
	for _, h := range headers {
		b.WriteString(h + "\r\n")
		l := strings.ToLower(h)
		framed = framed || strings.HasPrefix(l, "content-length:") || strings.HasPrefix(l, "transfer-encoding:")
	}
	if !framed {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// answerOf names what a reply is: "fulfill", a Reject's code, or the HTTP
// status when it is not a 200.
func answerOf(res *http.Response, body []byte) string {
	if res.StatusCode != http.StatusOK {
		return strconv.Itoa(res.StatusCode)
	}
	if _, ok := ilptest.FulfillData(body); ok {
		return "fulfill"
	}
	if code, err := ilpdest.ReadRejectCode(body); err == nil {
		return code.String()
	}
	return fmt.Sprintf("200 with %x", body)
}

// TestHostileInput sends malformed, hostile and edge-case requests to both
// front doors and checks each gets the answer it should (or the
// connection is closed where HTTP has no answer), that nothing reaches a
// connector that should not, and that the edge still serves a normal
// packet after each. It ends by checking the debug and access logs for
// every configured secret.
func TestHostileInput(t *testing.T) {
	var delivered atomic.Int32
	conn := newConnector(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		delivered.Add(1)
		w.Write(ilptest.Fulfill([]byte("ok")))
	})
	logFile := testLog(t, "access").Name()
	edge := fmt.Sprintf(`ilp_edge {
			address test.edge
			peer alice {
				token %s
				upstream_token %s
			}
			peer bob {
				jwt_secret %s
			}
		}`, hostileToken, hostileUpstream, hostileJWTSecret)
	// The ilp app's front door on 9082, with the site's timeouts.
	frontDoor := fmt.Sprintf(`ilp {
		server 127.0.0.1:9082 {
			read_header_timeout 2s
			read_body_timeout 2s
			access_log
			%s
			ilp_proxy %s
		}
	}`, edge, hostport(conn.Server))
	_, caddyLog := startInProcessWith(t, frontDoor, fmt.Sprintf(`
	http://127.0.0.1:9080 {
		log {
			output file %[3]s
			level DEBUG
		}
		%[4]s
		handle /reverse_proxy {
			reverse_proxy %[2]s {
				lb_policy ilp_prefix
			}
		}
		handle /ilp_proxy {
			ilp_proxy %[2]s
		}
	}`, hostileToken, hostport(conn.Server), logFile, edge))
	const addr = "127.0.0.1:9080"
	auth := "Authorization: Bearer " + hostileToken
	prepare := ilptest.Prepare("g.hostile.alice", time.Minute)
	jwt := func(claims map[string]any, secret string) string {
		return "Authorization: Bearer " + ilptest.SignJWT("HS256", secret, claims)
	}
	noExp := map[string]any{"iat": time.Now().Unix()}
	huge := map[string]any{"exp": time.Now().Add(time.Hour).Unix(), "pad": strings.Repeat("x", 100<<10)}
	truncated := prepare[:len(prepare)-10]
	far := ilptest.NewPrepare(ilpdest.Prepare{Amount: math.MaxUint64, ExpiresAt: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
		Destination: []byte("g.hostile.alice")})

	type hostile struct {
		name string
		// raw builds the request bytes for a front door's path.
		raw func(path string) []byte
		// want is the answer ("fulfill", a code, an HTTP status), or
		// "closed" when the edge must end the connection without one.
		want      []string
		delivered int // packets the connector must get
		// The front door's answer where it differs: its HTTP/1.1 server
		// refuses what it cannot frame beyond doubt rather than read it
		// as net/http does, and closes a connection whose head or body
		// stops short, where a site answers 400.
		front []string
	}
	cases := []hostile{
		{"empty body", func(p string) []byte { return post(p, []string{auth}, nil) }, []string{"F01"}, 0, nil},
		{"garbage body", func(p string) []byte { return post(p, []string{auth}, []byte("\x00garbage\xff")) }, []string{"F01"}, 0, nil},
		{"truncated Prepare", func(p string) []byte { return post(p, []string{auth}, truncated) }, []string{"F01"}, 0, nil},
		{"indefinite length prefix", func(p string) []byte { return post(p, []string{auth}, append([]byte{12, 0x80}, prepare[2:]...)) }, []string{"F01"}, 0, nil},
		{"non-canonical length prefix", func(p string) []byte {
			return post(p, []string{auth}, append([]byte{12, 0x81, prepare[1]}, prepare[2:]...))
		}, []string{"F01"}, 0, nil},
		{"a Fulfill instead of a Prepare", func(p string) []byte { return post(p, []string{auth}, ilptest.Fulfill(nil)) }, []string{"F01"}, 0, nil},
		{"a Reject instead of a Prepare", func(p string) []byte {
			return post(p, []string{auth}, ilptest.Reject("F02", "g.x", "no"))
		}, []string{"F01"}, 0, nil},
		{"chunked body", func(p string) []byte {
			return post(p, []string{auth, "Transfer-Encoding: chunked"},
				fmt.Appendf(nil, "%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", 10, prepare[:10], len(prepare)-10, prepare[10:]))
		}, []string{"fulfill"}, 1, []string{"411"}},
		// Transfer-Encoding overrides Content-Length (RFC 9112 §6.1), as
		// net/http reads it: the POST is an empty chunked body, and what
		// followed it is the next request on the connection. A connector
		// never sees the ambiguity: the edge frames the body itself.
		{"Transfer-Encoding with Content-Length (smuggling)", func(p string) []byte {
			smuggled := "GET /admin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
			body := fmt.Appendf(nil, "0\r\n\r\n%s", smuggled)
			return post(p, []string{auth, "Transfer-Encoding: chunked", "Content-Length: " + strconv.Itoa(len(body))}, body)
		}, []string{"F01", "405"}, 0, []string{"400"}},
		{"two Content-Lengths that differ", func(p string) []byte {
			return post(p, []string{auth, "Content-Length: 5", "Content-Length: 6"}, prepare)
		}, []string{"400"}, 0, nil},
		{"pipelined requests answered in order", func(p string) []byte {
			return append(post(p, []string{auth}, prepare), post(p, []string{auth}, []byte("junk"))...)
		}, []string{"fulfill", "F01"}, 1, nil},
		{"ILP-Destination with a NUL", func(p string) []byte {
			return post(p, []string{auth, "ILP-Destination: g.a\x00b"}, prepare)
		}, []string{"400"}, 0, nil},
		{"ILP-Destination of 2000 bytes", func(p string) []byte {
			return post(p, []string{auth, "ILP-Destination: g." + strings.Repeat("a", 2000)}, prepare)
		}, []string{"fulfill"}, 1, nil},
		{"ILP-Destination with an invalid scheme", func(p string) []byte {
			return post(p, []string{auth, "ILP-Destination: nope.a.b"}, prepare)
		}, []string{"fulfill"}, 1, nil},
		{"expiresAt in 9999, amount 2^64-1", func(p string) []byte { return post(p, []string{auth}, far) }, []string{"fulfill"}, 1, nil},
		{"GET", func(p string) []byte {
			return []byte("GET " + p + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + "\r\n\r\n")
		}, []string{"405"}, 0, nil},
		{"lowercase bearer", func(p string) []byte {
			return post(p, []string{"Authorization: bearer " + hostileToken}, prepare)
		}, []string{"fulfill"}, 1, nil},
		{"trailing space after the token", func(p string) []byte { return post(p, []string{auth + " "}, prepare) }, []string{"fulfill"}, 1, nil},
		{"empty token", func(p string) []byte { return post(p, []string{"Authorization: Bearer "}, prepare) }, []string{"401"}, 0, nil},
		{"no credentials", func(p string) []byte { return post(p, nil, prepare) }, []string{"401"}, 0, nil},
		{"alice's token, ILP-Peer-Name bob", func(p string) []byte {
			return post(p, []string{auth, "ILP-Peer-Name: bob"}, prepare)
		}, []string{"fulfill"}, 1, nil},
		{"JWT with alg none", func(p string) []byte {
			return post(p, []string{"Authorization: Bearer " + noneJWT()}, prepare)
		}, []string{"401"}, 0, nil},
		{"JWT without exp", func(p string) []byte { return post(p, []string{jwt(noExp, hostileJWTSecret)}, prepare) }, []string{"401"}, 0, nil},
		{"JWT of 100 KB", func(p string) []byte { return post(p, []string{jwt(huge, hostileJWTSecret)}, prepare) }, []string{"431"}, 0, nil},
		{"JWT signed with another peer's secret", func(p string) []byte {
			return post(p, []string{jwt(ilptest.PluginClaims(time.Hour), hostileToken), "ILP-Peer-Name: bob"}, prepare)
		}, []string{"401"}, 0, nil},
		{"bob's JWT", func(p string) []byte {
			return post(p, []string{jwt(ilptest.PluginClaims(time.Hour), hostileJWTSecret)}, prepare)
		}, []string{"fulfill"}, 1, nil},
		{"body over max_packet_size", func(p string) []byte { return post(p, []string{auth}, make([]byte, 40001)) }, []string{"413"}, 0, nil},
		// Refusals come before the body, which is never read nor waited
		// for, on the front door as on a site: the connection closes
		// after them (every refusal must say Connection: close), and a
		// peer that waits for 100 Continue gets the refusal instead.
		{"a bad token announcing a body it never sends", func(p string) []byte {
			return post(p, []string{"Authorization: Bearer wrong", "Content-Length: 40000"}, nil)
		}, []string{"401"}, 0, nil},
		{"a bad token expecting 100-continue, the body never sent", func(p string) []byte {
			return post(p, []string{"Authorization: Bearer wrong", "Expect: 100-continue", "Content-Length: 40000"}, nil)
		}, []string{"401"}, 0, nil},
		{"GET announcing a body it never sends", func(p string) []byte {
			return []byte("GET " + p + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + "\r\nContent-Length: 40000\r\n\r\n")
		}, []string{"405"}, 0, nil},
		{"a body over max_packet_size announced, never sent", func(p string) []byte {
			return post(p, []string{auth, "Content-Length: 40001"}, nil)
		}, []string{"413"}, 0, nil},
		{"a TLS ClientHello on the plaintext port", func(string) []byte { return clientHello(t) }, []string{"400"}, 0, nil},
		{"h2 preface, then garbage frames", func(string) []byte {
			return append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), bytes.Repeat([]byte{0xff}, 64)...)
		}, []string{"closed"}, 0, nil},
		{"garbage instead of HTTP", func(string) []byte { return []byte("garbage\r\n\r\n") }, []string{"400"}, 0, nil},
		// A TLS record header announcing 26 KB that never come, and a body
		// that stops short: the read_header and read_body timeouts end
		// them with a 400 and a closed connection, never a hung one.
		{"a TLS record header, then nothing", func(string) []byte { return []byte("\x16\x03\x01\x67\x61") }, []string{"400"}, 0, []string{"closed"}},
		{"a body shorter than its Content-Length", func(p string) []byte {
			return post(p, []string{auth, "Content-Length: 500"}, prepare)
		}, []string{"400"}, 0, []string{"closed"}},
		{"a header line of 1 MB", func(p string) []byte {
			return post(p, []string{auth, "X-Big: " + strings.Repeat("b", 1<<20)}, prepare)
		}, []string{"431"}, 0, nil},
		{"10,000 header lines", func(p string) []byte {
			lines := []string{auth}
			for i := range 10_000 {
				lines = append(lines, fmt.Sprintf("X-H%d: v", i))
			}
			return post(p, lines, prepare)
		}, []string{"431"}, 0, nil},
	}
	for _, door := range []string{"/reverse_proxy", "/ilp_proxy", "front_door"} {
		addr, path := addr, door
		if door == "front_door" {
			addr, path = "127.0.0.1:9082", "/"
		}
		for _, c := range cases {
			if door == "front_door" && c.front != nil {
				c.want = c.front
				if c.delivered > 0 && !slices.Contains(c.front, "fulfill") {
					c.delivered = 0
				}
			}
			t.Run(strings.TrimPrefix(door, "/")+"/"+c.name, func(t *testing.T) {
				before := delivered.Load()
				replies, bodies, closed := rawExchange(t, addr, c.raw(path), len(c.want))
				var got []string
				for i, r := range replies {
					got = append(got, answerOf(r, bodies[i]))
				}
				if len(c.want) == 1 && c.want[0] == "closed" {
					if len(replies) != 0 || !closed {
						t.Errorf("got %v (closed %v), want the connection closed without an answer", got, closed)
					}
				} else if strings.Join(got, " ") != strings.Join(c.want, " ") {
					t.Errorf("got %v (closed %v), want %v", got, closed, c.want)
				}
				for i, r := range replies {
					if refused := r.StatusCode == 401 || r.StatusCode == 405 || r.StatusCode == 413; refused && !r.Close {
						t.Errorf("reply %d: HTTP %d without Connection: close, so net/http would wait for the body first", i, r.StatusCode)
					}
				}
				if n := delivered.Load() - before; int(n) != c.delivered {
					t.Errorf("the connector got %d packets, want %d", n, c.delivered)
				}
				// Still alive and serving.
				replies, bodies, _ = rawExchange(t, addr, post(path, []string{auth}, prepare), 1)
				if len(replies) != 1 || answerOf(replies[0], bodies[0]) != "fulfill" {
					t.Fatalf("the edge does not serve a normal packet after this")
				}
			})
		}
	}
	wantFrontDoorAccessLog(t, caddyLog, hostport(conn.Server))
	// What the front door's HTTP/1.1 server refused itself never reached
	// ilp_edge: its own metric counts it.
	metrics := scrape(t, "http://localhost:2999/metrics")
	if n := metrics[`caddy_ilp_front_door_refusals_total{answer="400",protocol="h1",server="srv0"}`]; n == 0 {
		t.Error("caddy_ilp_front_door_refusals_total does not count the front door's 400s")
	}
	if _, ok := metrics[`caddy_ilp_front_door_connections{protocol="h1",server="srv0"}`]; !ok {
		t.Error("no caddy_ilp_front_door_connections series for the front door")
	}
	bobJWT := ilptest.SignJWT("HS256", hostileJWTSecret, ilptest.PluginClaims(time.Hour))
	wantNoSecrets(t, []string{hostileToken, hostileJWTSecret, hostileUpstream, bobJWT[strings.LastIndexByte(bobJWT, '.')+1:]}, logFile, caddyLog)
}

// wantFrontDoorAccessLog checks the access log lines the front door's
// access_log wrote to the log file: a fulfilled packet with the peer and
// the connector it went to, an edge's Reject with its code, and a 401
// with no peer.
func wantFrontDoorAccessLog(t *testing.T, logFile, connector string) {
	t.Helper()
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	type line struct {
		Logger   string `json:"logger"`
		Msg      string `json:"msg"`
		Status   int    `json:"status"`
		Size     int    `json:"size"`
		UserID   string `json:"user_id"`
		Result   string `json:"ilp_result"`
		Code     string `json:"ilp_code"`
		Upstream string `json:"ilp_upstream"`
		Req      struct {
			Method   string `json:"method"`
			URI      string `json:"uri"`
			RemoteIP string `json:"remote_ip"`
		} `json:"request"`
	}
	var fulfilled, rejected, refused int
	for _, raw := range bytes.Split(b, []byte("\n")) {
		var l line
		if json.Unmarshal(raw, &l) != nil || l.Logger != "ilp.log.access" {
			continue
		}
		if l.Msg != "handled request" || l.Req.RemoteIP != "127.0.0.1" || l.Req.URI == "" {
			t.Errorf("access log line %s: want msg \"handled request\", the request's URI and remote_ip 127.0.0.1", raw)
		}
		switch {
		case l.Status == 200 && l.Result == "fulfill":
			if l.UserID != "alice" && l.UserID != "bob" || l.Upstream != connector || l.Req.Method != "POST" || l.Size == 0 {
				t.Errorf("access log line of a Fulfill %s: want user_id alice or bob, ilp_upstream %s, POST and a size", raw, connector)
			}
			fulfilled++
		case l.Status == 200 && l.Result == "edge_reject" && l.Code == "F01":
			rejected++
		case l.Status == 401:
			if l.UserID != "" || l.Result != "" {
				t.Errorf("access log line of a 401 %s: want no user_id and no ilp_result", raw)
			}
			refused++
		}
	}
	if fulfilled == 0 || rejected == 0 || refused == 0 {
		t.Errorf("front door access log: %d Fulfills, %d F01 Rejects from the edge, %d 401s; want each at least once",
			fulfilled, rejected, refused)
	}
}

// wantNoSecrets fails if any of the secrets appears in the files.
func wantNoSecrets(t *testing.T, secrets []string, files ...string) {
	t.Helper()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 {
			t.Errorf("%s is empty: the check would prove nothing", f)
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds a secret (%.6s…)", f, s)
			}
		}
	}
}

// clientHello is the first flight of a TLS client, captured from
// crypto/tls talking to a listener that records it.
func clientHello(t *testing.T) []byte {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		n, _ := c.Read(buf)
		got <- buf[:n]
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "edge.example", InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(time.Second))
	go tc.Handshake()
	hello := <-got
	c.Close()
	return hello
}

// noneJWT is an unsigned token with alg "none", which must never pass.
func noneJWT() string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(fmt.Appendf(nil, `{"exp":%d}`, time.Now().Add(time.Hour).Unix())) + "."
}

// TestSlowlorisClosed: a peer that sends its headers a byte at a time is
// cut off at the read_header timeout (2 s here), while other peers are
// served meanwhile.
func TestSlowlorisClosed(t *testing.T) {
	conn := newConnector(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.Write(ilptest.Fulfill([]byte("ok")))
	})
	startInProcess(t, fmt.Sprintf(`
	http://127.0.0.1:9080 {
		ilp_edge {
			address test.edge
			peer alice {
				token %s
			}
		}
		ilp_proxy %s
	}`, hostileToken, hostport(conn.Server)))
	c, err := net.Dial("tcp", "127.0.0.1:9080")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := post("/", []string{"Authorization: Bearer " + hostileToken}, ilptest.Prepare("g.slow.x", time.Minute))
	dripped := make(chan error, 1)
	go func() {
		for i := range req {
			if _, err := c.Write(req[i : i+1]); err != nil {
				dripped <- err // the edge closed the connection
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		dripped <- nil
	}()
	served := 0
	for {
		select {
		case err := <-dripped:
			if err == nil {
				t.Fatalf("the whole slow request (%d bytes over %v) was taken in", len(req), time.Duration(len(req))*50*time.Millisecond)
			}
			if served == 0 {
				t.Fatal("no normal packet was served while the slow peer dripped")
			}
			return
		default:
		}
		replies, bodies, _ := rawExchange(t, "127.0.0.1:9080", post("/", []string{"Authorization: Bearer " + hostileToken}, ilptest.Prepare("g.fast.x", time.Minute)), 1)
		if len(replies) != 1 || answerOf(replies[0], bodies[0]) != "fulfill" {
			t.Fatal("a normal packet was not served while the slow peer dripped")
		}
		served++
		time.Sleep(100 * time.Millisecond)
	}
}
