package frontdoor

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/net/http2"

	"github.com/ilp-edge/caddy-ilp/frontdoor/h1"
	"github.com/ilp-edge/caddy-ilp/frontdoor/h2"
)

// TestOpenConnectionsGauge checks caddy_ilp_front_door_connections: two
// HTTP/1.1 connections and one h2c connection open on a server are
// counted by protocol, and none once they are closed.
func TestOpenConnectionsGauge(t *testing.T) {
	s := &Server{name: "gauge-test",
		srv2: &h2.Server{Handler: h2.HandlerFunc(func(w *h2.ResponseWriter, _ *h2.Request) { w.Write([]byte("ok")) })}}
	s.srv = &h1.Server{Handler: h1.HandlerFunc(func(w *h1.ResponseWriter, _ *h1.Request) { w.Write([]byte("ok")) }),
		HTTP2: s.srv2.ServeConn}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.srv.Serve(ln)
	defer s.srv.Close()
	defer s.srv2.Close()
	openConns.add(s)
	defer openConns.remove(s)

	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("HTTP/1.1 answer %v, %v", resp, err)
		}
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conns = append(conns, c)
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	if f, err := fr.ReadFrame(); err != nil || f.Header().Type != http2.FrameSettings {
		t.Fatalf("h2c: %v, %v", f, err)
	}

	waitForConns(t, s.name, map[string]float64{"h1": 2, "h2": 1})
	for _, c := range conns {
		c.Close()
	}
	waitForConns(t, s.name, map[string]float64{"h1": 0, "h2": 0})
}

// waitForConns waits up to 5 s for the gauge's series of server to be
// want, by protocol.
func waitForConns(t *testing.T, server string, want map[string]float64) {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(openConns)
	var got map[string]float64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got = map[string]float64{}
		for _, f := range families {
			for _, m := range f.GetMetric() {
				if label(m, "server") == server {
					got[label(m, "protocol")] = m.GetGauge().GetValue()
				}
			}
		}
		if got["h1"] == want["h1"] && got["h2"] == want["h2"] {
			return
		}
	}
	t.Fatalf("caddy_ilp_front_door_connections of %s: %v, want %v", server, got, want)
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
