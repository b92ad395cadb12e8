package redistest

import (
	"net"
	"strconv"
	"testing"

	"github.com/ilp-edge/caddy-ilp/internal/pkitest"
)

// TLSServer is a redis-server that also serves TLS, with a certificate
// for 127.0.0.1 from a CA of the test's own.
type TLSServer struct {
	*Server
	TLSAddr string // 127.0.0.1:port, TLS
	CAFile  string // PEM of the CA that signed the server's certificate
}

// StartTLS runs redis-server as Start does, and on a second port with TLS
// (clients are not asked for a certificate). The plaintext port is for
// the readiness check.
func StartTLS(t testing.TB) *TLSServer {
	t.Helper()
	ca := pkitest.NewCA(t, "redistest")
	cert := ca.Server(t, "127.0.0.1")
	tlsPort := strconv.Itoa(freePort(t, false))
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t, false))), t: t, dir: t.TempDir(),
		extra: []string{"--tls-port", tlsPort, "--tls-cert-file", cert.CertFile,
			"--tls-key-file", cert.KeyFile, "--tls-ca-cert-file", ca.File,
			"--tls-auth-clients", "no"}}
	s.Restart()
	t.Cleanup(s.Kill)
	return &TLSServer{Server: s, TLSAddr: net.JoinHostPort("127.0.0.1", tlsPort), CAFile: ca.File}
}
