package frontdoor

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// These tests check that ilp_edge's 401 and 405 go out on the request's
// head, over HTTP/1.1 and HTTP/2, before any of a body announced at
// 40000 bytes is sent, and that "100 Continue" goes to an authenticated
// peer only. A client waits answerWithin for an answer: far less than
// the body timeout (10 s) a front door waiting for the body takes.

const (
	onHeadToken  = "alice-front-door-on-head-token-3c51d0"
	answerWithin = 2 * time.Second
)

// startFrontDoor serves, on a loopback port, a front door whose ilp_edge
// has the peer alice (token onHeadToken) and, with certFingerprint, carol
// (that TLS client certificate), and whose forwarder fulfills every
// packet. With cfg, the port serves TLS.
func startFrontDoor(t *testing.T, cfg *tls.Config, certFingerprint string) string {
	t.Helper()
	peers := []*handler.Peer{{Name: "alice", Tokens: []string{onHeadToken}}}
	if certFingerprint != "" {
		peers = append(peers, &handler.Peer{Name: "carol", ClientCerts: []string{certFingerprint}})
	}
	e := &handler.Edge{Address: "test.edge", Peers: peers, DisableMetrics: true}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := e.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Cleanup() })
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	fulfill := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, err := w.Write(ilptest.Fulfill([]byte("ok")))
		return err
	})
	s := &Server{name: "on-head-test", ctx: context.Background(), logger: zap.NewNop(), edge: e}
	s.chain = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return e.ServeHTTP(w, r, fulfill)
	})
	s.setupServers()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	go s.srv.Serve(ln)
	t.Cleanup(func() {
		s.srv.Close()
		s.srv2.Close()
	})
	return ln.Addr().String()
}

// refusal is a request refused on its head, and what its answer has.
type refusal struct {
	name   string
	method string
	fields []string // name, value, ...
	status int
	field  [2]string // a field the answer has, canonical name and value
}

var refusals = []refusal{
	{"no credentials", "POST", nil, 401, [2]string{"Www-Authenticate", "Bearer"}},
	{"unknown token", "POST", []string{"Authorization", "Bearer wrong"}, 401, [2]string{"Www-Authenticate", "Bearer"}},
	{"unknown token, expect 100-continue", "POST", []string{"Authorization", "Bearer wrong", "Expect", "100-continue"},
		401, [2]string{"Www-Authenticate", "Bearer"}},
	{"GET", "GET", []string{"Authorization", "Bearer " + onHeadToken}, 405, [2]string{"Allow", "POST"}},
	{"PUT, expect 100-continue", "PUT", []string{"Authorization", "Bearer " + onHeadToken, "Expect", "100-continue"},
		405, [2]string{"Allow", "POST"}},
}

// h1Head is an HTTP/1.1 request's head, announcing a body of length bytes.
func h1Head(method string, fields []string, length int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s / HTTP/1.1\r\nHost: edge\r\n", method)
	for i := 0; i < len(fields); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", fields[i], fields[i+1])
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", length)
	return b.String()
}

// dialWithin connects to addr, over TLS with cfg, with a deadline of
// answerWithin: a test that waits for an answer the front door does not
// give fails instead of hanging.
func dialWithin(t *testing.T, addr string, cfg *tls.Config) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	if cfg != nil {
		c, err = tls.Dial("tcp", addr, cfg)
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(answerWithin))
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRefusedOnTheHeadH1: a 401 or 405 answers the head of an HTTP/1.1
// request that announces 40000 bytes and sends none, with no "100
// Continue" before it; it is the answer the same request gets with its
// body; the connection is closed, what the client sends next never read
// as a request.
func TestRefusedOnTheHeadH1(t *testing.T) {
	addr := startFrontDoor(t, nil, "")
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			c := dialWithin(t, addr, nil)
			io.WriteString(c, h1Head(tc.method, tc.fields, 40000))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer to the head within %v: %v", answerWithin, err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || resp.Header.Get(tc.field[0]) != tc.field[1] || !resp.Close || len(body) != 0 {
				t.Fatalf("answer %d %v %q; want %d with %s: %s, Connection: close and no body (a 100 first fails too)",
					resp.StatusCode, resp.Header, body, tc.status, tc.field[0], tc.field[1])
			}
			// The announced body, here a request of its own: never answered.
			io.WriteString(c, h1Head("POST", []string{"Authorization", "Bearer " + onHeadToken}, 0))
			if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Fatalf("after the refusal: %d bytes, %v; want the connection closed", n, err)
			}

			// With its body, the request gets the same answer.
			whole := dialWithin(t, addr, nil)
			io.WriteString(whole, h1Head(tc.method, tc.fields, 100)+strings.Repeat("x", 100))
			want, err := http.ReadResponse(bufio.NewReader(whole), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Header.Del("Date")
			want.Header.Del("Date")
			if want.StatusCode != resp.StatusCode || fmt.Sprint(want.Header) != fmt.Sprint(resp.Header) {
				t.Fatalf("on the head: %d %v; with the body: %d %v", resp.StatusCode, resp.Header, want.StatusCode, want.Header)
			}
		})
	}
}

// TestContinueAfterAuthenticationH1: an authenticated POST that expects
// 100-continue gets it, then the answer to its packet, and keeps its
// connection; one whose body comes after its head is answered too.
func TestContinueAfterAuthenticationH1(t *testing.T) {
	addr := startFrontDoor(t, nil, "")
	prepare := ilptest.Prepare("g.test.bob", time.Minute)
	auth := []string{"Authorization", "Bearer " + onHeadToken}
	c := dialWithin(t, addr, nil)
	br := bufio.NewReader(c)
	io.WriteString(c, h1Head("POST", append(auth, "Expect", "100-continue"), len(prepare)))
	if line, err := br.ReadString('\n'); err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("%q, %v; want 100 Continue", line, err)
	}
	if line, _ := br.ReadString('\n'); line != "\r\n" {
		t.Fatalf("after 100 Continue: %q", line)
	}
	c.Write(prepare)
	wantFulfill(t, br)

	io.WriteString(c, h1Head("POST", auth, len(prepare)))
	time.Sleep(50 * time.Millisecond) // the head alone, most likely read alone
	c.Write(prepare)
	wantFulfill(t, br)
}

func wantFulfill(t *testing.T, br *bufio.Reader) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if _, ok := ilptest.FulfillData(body); resp.StatusCode != 200 || !ok || resp.Close {
		t.Fatalf("%d %v %x; want 200 with a Fulfill, connection kept", resp.StatusCode, resp.Header, body)
	}
}

// h2Client is a raw HTTP/2 client, h2c with prior knowledge or h2 over
// TLS, that sends frames one by one.
type h2Client struct {
	t    *testing.T
	fr   *http2.Framer
	hbuf bytes.Buffer
	henc *hpack.Encoder
	hdec *hpack.Decoder
}

func dialH2(t *testing.T, addr string, cfg *tls.Config) *h2Client {
	t.Helper()
	if cfg != nil {
		cfg = cfg.Clone()
		cfg.NextProtos = []string{"h2"}
	}
	nc := dialWithin(t, addr, cfg)
	io.WriteString(nc, http2.ClientPreface)
	c := &h2Client{t: t, fr: http2.NewFramer(nc, nc), hdec: hpack.NewDecoder(4096, nil)}
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.fr.WriteSettings()
	return c
}

// headers sends a POST-like request's header block: the pseudo-headers
// for method, then fields, names in lower case.
func (c *h2Client) headers(id uint32, method string, endStream bool, fields ...string) {
	c.hbuf.Reset()
	all := append([]string{":method", method, ":scheme", "http", ":path", "/", ":authority", "edge"}, fields...)
	for i := 0; i < len(all); i += 2 {
		c.henc.WriteField(hpack.HeaderField{Name: strings.ToLower(all[i]), Value: all[i+1]})
	}
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndStream: endStream, EndHeaders: true})
}

// h2Event is the next thing stream id got: a header block, DATA, or
// RST_STREAM.
type h2Event struct {
	status string
	fields http.Header
	data   []byte
	end    bool // END_STREAM
	rst    bool
	code   http2.ErrCode
}

func (c *h2Client) next(id uint32) h2Event {
	c.t.Helper()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("stream %d: no answer within %v: %v", id, answerWithin, err)
		}
		switch f := f.(type) {
		case *http2.HeadersFrame:
			fields, err := c.hdec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				c.t.Fatal(err)
			}
			if f.StreamID != id {
				continue
			}
			ev := h2Event{fields: http.Header{}, end: f.StreamEnded()}
			for _, hf := range fields {
				if hf.Name == ":status" {
					ev.status = hf.Value
				} else {
					ev.fields.Add(hf.Name, hf.Value)
				}
			}
			return ev
		case *http2.DataFrame:
			if f.StreamID == id {
				return h2Event{data: bytes.Clone(f.Data()), end: f.StreamEnded()}
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return h2Event{rst: true, code: f.ErrCode}
			}
		case *http2.GoAwayFrame:
			c.t.Fatalf("stream %d: GOAWAY %v %q", id, f.ErrCode, f.DebugData())
		}
	}
}

// TestRefusedOnTheHeadH2: over HTTP/2, the same refusals answer the
// HEADERS of a request that announces 40000 bytes and sends no DATA,
// with END_STREAM and no 100 before, then RST_STREAM NO_ERROR so that
// the client stops sending; DATA still in flight is ignored, and the
// connection serves on.
func TestRefusedOnTheHeadH2(t *testing.T) {
	addr := startFrontDoor(t, nil, "")
	c := dialH2(t, addr, nil)
	id := uint32(1)
	for _, tc := range refusals {
		c.headers(id, tc.method, false, append(tc.fields, "content-length", "40000")...)
		ev := c.next(id)
		if ev.status != strconv.Itoa(tc.status) || !ev.end || ev.fields.Get(tc.field[0]) != tc.field[1] ||
			ev.fields.Get("content-length") != "0" {
			t.Fatalf("%s: %+v; want %d with %s: %s, END_STREAM (a 100 first fails too)", tc.name, ev, tc.status, tc.field[0], tc.field[1])
		}
		if ev := c.next(id); !ev.rst || ev.code != http2.ErrCodeNo {
			t.Fatalf("%s: after the answer %+v, want RST_STREAM NO_ERROR", tc.name, ev)
		}
		c.fr.WriteData(id, true, make([]byte, 100)) // in flight: ignored
		id += 2
	}

	// The connection serves on: an authenticated POST that expects
	// 100-continue gets it, then the answer to its packet.
	prepare := ilptest.Prepare("g.test.bob", time.Minute)
	c.headers(id, "POST", false, "authorization", "Bearer "+onHeadToken, "expect", "100-continue",
		"content-length", strconv.Itoa(len(prepare)))
	if ev := c.next(id); ev.status != "100" || ev.end {
		t.Fatalf("%+v, want 100 (Continue)", ev)
	}
	c.fr.WriteData(id, true, prepare)
	wantFulfillH2(t, c, id)
}

func wantFulfillH2(t *testing.T, c *h2Client, id uint32) {
	t.Helper()
	if ev := c.next(id); ev.status != "200" || ev.end {
		t.Fatalf("%+v, want 200 with a body", ev)
	}
	var body []byte
	for {
		ev := c.next(id)
		if ev.rst {
			t.Fatalf("RST_STREAM %v in the answer", ev.code)
		}
		body = append(body, ev.data...)
		if ev.end {
			break
		}
	}
	if _, ok := ilptest.FulfillData(body); !ok {
		t.Fatalf("answer %x, want a Fulfill", body)
	}
}

// TestClientCertPeerOnTheHead: over TLS, a peer with a client
// certificate is authenticated on the head, from its connection's TLS
// state: it gets 100 Continue, over HTTP/1.1 and HTTP/2, and a client
// without one gets the 401 at once.
func TestClientCertPeerOnTheHead(t *testing.T) {
	serverCfg, clientCfg, fingerprint := testPKI(t)
	addr := startFrontDoor(t, serverCfg, fingerprint)
	prepare := ilptest.Prepare("g.test.bob", time.Minute)
	noCert := clientCfg.Clone()
	noCert.Certificates = nil
	expect := []string{"Expect", "100-continue"}

	c := dialWithin(t, addr, clientCfg)
	br := bufio.NewReader(c)
	io.WriteString(c, h1Head("POST", expect, len(prepare)))
	if line, err := br.ReadString('\n'); err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("HTTP/1.1 with a client certificate: %q, %v; want 100 Continue", line, err)
	}
	br.ReadString('\n')
	c.Write(prepare)
	wantFulfill(t, br)

	c = dialWithin(t, addr, noCert)
	io.WriteString(c, h1Head("POST", expect, 40000))
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 401 {
		t.Fatalf("HTTP/1.1 without a client certificate: %v, %v; want 401", resp, err)
	}

	h2c := dialH2(t, addr, clientCfg)
	h2c.headers(1, "POST", false, "expect", "100-continue", "content-length", strconv.Itoa(len(prepare)))
	if ev := h2c.next(1); ev.status != "100" {
		t.Fatalf("HTTP/2 with a client certificate: %+v, want 100 (Continue)", ev)
	}
	h2c.fr.WriteData(1, true, prepare)
	wantFulfillH2(t, h2c, 1)

	h2c = dialH2(t, addr, noCert)
	h2c.headers(1, "POST", false, "expect", "100-continue", "content-length", "40000")
	if ev := h2c.next(1); ev.status != "401" || !ev.end {
		t.Fatalf("HTTP/2 without a client certificate: %+v, want 401", ev)
	}
}

// testPKI makes a CA, a server certificate for 127.0.0.1 and a client
// certificate, both from the CA, and returns the server's config (client
// certificates verified if given), a client's, and the client
// certificate's SHA-256 fingerprint.
func testPKI(t *testing.T) (server, client *tls.Config, fingerprint string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	issue := func(serial int64, usage x509.ExtKeyUsage, ip net.IP) tls.Certificate {
		key := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "test"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature}
		if ip != nil {
			tmpl.IPAddresses = []net.IP{ip}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	serverCert := issue(2, x509.ExtKeyUsageServerAuth, net.IPv4(127, 0, 0, 1))
	clientCert := issue(3, x509.ExtKeyUsageClientAuth, nil)
	sum := sha256.Sum256(clientCert.Certificate[0])
	server = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs: pool, NextProtos: []string{"h2", "http/1.1"}}
	client = &tls.Config{Certificates: []tls.Certificate{clientCert}, RootCAs: pool}
	return server, client, hex.EncodeToString(sum[:])
}
