package frontdoor

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/ilp-edge/caddy-ilp/frontdoor/h1"
)

// BenchmarkExchangeH1 is one ILP request and its answer on a keep-alive
// loopback connection through package h1, set up as setupServers sets
// it up (a request handed over on its head when its body is still to
// come), and the exchange that hands it to the handlers as an
// *http.Request, with a handler that reads what ilp_edge reads and
// answers as it does: what the front door costs around ilp_edge and
// ilp_proxy, client included. Its allocations per request are the
// adapter's: with no access log and no placeholders in the upstreams,
// one string for the header values.
func BenchmarkExchangeH1(b *testing.B) {
	answer := bytes.Repeat([]byte{0x0d}, 40)
	octetStream := []string{"application/octet-stream"}
	var body [80]byte
	s := &Server{ctx: context.Background(), logger: zap.NewNop()}
	s.chain = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if r.Header["Authorization"] == nil || r.Header["Ilp-Destination"] == nil || r.ContentLength != 79 {
			b.Errorf("request %v", r.Header)
		}
		if n, _ := io.ReadFull(r.Body, body[:]); n != 79 {
			b.Errorf("body of %d bytes", n)
		}
		caddyhttp.SetVar(r.Context(), "ilp_peer", "alice")
		w.Header()["Content-Type"] = octetStream
		w.WriteHeader(http.StatusOK)
		_, err := w.Write(answer)
		return err
	})
	srv := &h1.Server{Handler: h1.HandlerFunc(s.serveH1), HandleOnHead: true}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()

	in := []byte("POST / HTTP/1.1\r\nHost: edge.example\r\nAuthorization: Bearer " + strings.Repeat("t", 43) +
		"\r\nILP-Destination: g.example.alice\r\nContent-Type: application/octet-stream\r\nContent-Length: 79\r\n\r\n" +
		strings.Repeat("\x0c", 79))
	out := make([]byte, 4096)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(in); err != nil {
			b.Fatal(err)
		}
		if n, err := c.Read(out); err != nil || !bytes.HasPrefix(out[:n], []byte("HTTP/1.1 200 OK\r\n")) {
			b.Fatalf("%v %q", err, out[:n])
		}
	}
}
