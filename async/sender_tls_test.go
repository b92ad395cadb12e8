package async

import (
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ilp-edge/caddy-ilp/internal/pkitest"
)

// mtlsCallback is a peer's callback over TLS, with a certificate from
// the peer's CA, that wants a client certificate from the edge's CA
// (tls.RequireAndVerifyClientCert): it records the name in each
// certificate that came with a POST it took.
type mtlsCallback struct {
	*httptest.Server
	peerCA *pkitest.CA // verifies the callback's certificate
	mu     sync.Mutex
	names  []string
}

func startMTLSCallback(t *testing.T, edgeCA *pkitest.CA) *mtlsCallback {
	c := &mtlsCallback{peerCA: pkitest.NewCA(t, "peer")}
	c.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		c.mu.Lock()
		c.names = append(c.names, r.TLS.VerifiedChains[0][0].Subject.CommonName+" "+r.Proto)
		c.mu.Unlock()
	}))
	c.EnableHTTP2 = true
	c.TLS = c.peerCA.ServerConfig(t, edgeCA)
	c.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	c.StartTLS()
	t.Cleanup(c.Close)
	return c
}

func (c *mtlsCallback) taken() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.names...)
}

// TestDeliverPresentsTheClientCertificate: a reply with the edge's
// client certificate is taken by a callback that wants one; without it,
// the handshake fails, which is no answer: retried until the Prepare
// expires, then abandoned and counted so.
func TestDeliverPresentsTheClientCertificate(t *testing.T) {
	edgeCA := pkitest.NewCA(t, "edge")
	cb := startMTLSCallback(t, edgeCA)
	s := NewSender(testIdle)
	defer s.CloseIdle()
	r := reply(cb.URL+"/cb", 10*time.Second)
	r.TLS = &tls.Config{RootCAs: cb.peerCA.Pool, Certificates: []tls.Certificate{edgeCA.Client(t, "edge-to-alice").Certificate}}
	if got := s.Deliver(t.Context(), r); got.Outcome != Delivered || got.Attempts != 1 {
		t.Fatalf("with the certificate: %+v, want delivered at once", got)
	}
	if got := cb.taken(); len(got) != 1 || got[0] != "edge-to-alice HTTP/2.0" {
		t.Errorf("the callback took %q, want one POST with the edge's certificate, over HTTP/2", got)
	}

	abandoned := metricReplies.WithLabelValues("alice", string(Abandoned))
	before := testutil.ToFloat64(abandoned)
	bare := reply(cb.URL+"/cb", 500*time.Millisecond)
	bare.TLS = &tls.Config{RootCAs: cb.peerCA.Pool}
	got := s.Deliver(t.Context(), bare)
	if got.Outcome != Abandoned || got.Status != 0 || got.Err == nil || got.Attempts < 2 {
		t.Errorf("without a certificate: %+v, want no answer, retried, then abandoned", got)
	}
	if n := testutil.ToFloat64(abandoned) - before; n != 1 {
		t.Errorf("%v more replies counted abandoned, want 1", n)
	}
	if got := cb.taken(); len(got) != 1 {
		t.Errorf("the callback took %q without a certificate", got[1:])
	}
}

// TestDeliverKeepsTLSPoolsApart: replies with different TLS configs
// never share a connection, which carries the certificate it was dialled
// with: after a reply with the certificate went over a kept-alive
// connection, one without it to the same callback is still refused, and
// one with it again still taken.
func TestDeliverKeepsTLSPoolsApart(t *testing.T) {
	edgeCA := pkitest.NewCA(t, "edge")
	cb := startMTLSCallback(t, edgeCA)
	s := NewSender(testIdle)
	defer s.CloseIdle()
	withCert := &tls.Config{RootCAs: cb.peerCA.Pool, Certificates: []tls.Certificate{edgeCA.Client(t, "edge-to-alice").Certificate}}
	without := &tls.Config{RootCAs: cb.peerCA.Pool}
	for i, c := range []struct {
		tls  *tls.Config
		want Outcome
	}{{withCert, Delivered}, {without, Abandoned}, {withCert, Delivered}} {
		r := reply(cb.URL+"/cb", 400*time.Millisecond)
		r.TLS = c.tls
		if got := s.Deliver(t.Context(), r); got.Outcome != c.want {
			t.Errorf("reply %d: %+v, want %s", i, got, c.want)
		}
	}
	if got := cb.taken(); len(got) != 2 {
		t.Errorf("the callback took %q, want the 2 replies with the certificate", got)
	}
}
