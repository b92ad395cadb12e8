package h1

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
)

func BenchmarkParseILPRequest(b *testing.B) {
	in := []byte(ilpRequest)
	lim := Limits{}.withDefaults()
	var r Request
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.ParseHead(in, lim); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRoundTripKeepAlive is one request and its answer on a
// keep-alive loopback connection, client included.
func BenchmarkRoundTripKeepAlive(b *testing.B) {
	benchmarkRoundTrip(b, startServer(b, &Server{Handler: ilpAnswer}))
}

// BenchmarkRoundTripNetHTTP is the same exchange with net/http's server,
// for comparison.
func BenchmarkRoundTripNetHTTP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body[:40])
	})}
	go s.Serve(ln)
	defer s.Close()
	benchmarkRoundTrip(b, ln.Addr().String())
}

func benchmarkRoundTrip(b *testing.B, addr string) {
	c := dial(b, addr)
	in := []byte(ilpRequest)
	answer := make([]byte, 4096)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(in); err != nil {
			b.Fatal(err)
		}
		if n, err := c.Read(answer); err != nil || !bytes.HasPrefix(answer[:n], []byte("HTTP/1.1 200 OK\r\n")) {
			b.Fatalf("%v %q", err, answer[:n])
		}
	}
}
