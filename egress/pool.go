package egress

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// pool is the connections to one peer: one http.Transport, kept across
// reloads while the settings that make its connections stay the same
// (the peer's name, scheme and host, the timeouts, the TLS client
// certificate and roots as loaded), so that a reload does not reconnect
// to every peer, and the packets of the old config and the new share one
// HTTP/2 connection. The credential in Authorization is per request, not
// the pool's: a rotated token takes effect at the next packet.
type pool struct {
	key       string
	transport *http.Transport
}

var pools = caddy.NewUsagePool()

// Destruct closes the idle connections when no config uses the pool any
// more; those in use close when their packets are answered.
func (p *pool) Destruct() error {
	p.transport.CloseIdleConnections()
	return nil
}

func (p *pool) release() { pools.Delete(p.key) }

// loadPool returns the pool for the peer named name at u, with tlsConfig
// (callback_tls, loaded; nil: none): the one in use with the same
// settings, or a new one. Release it when done.
func loadPool(name string, u *url.URL, tlsConfig *tls.Config, dialTimeout, keepAlive time.Duration) (*pool, error) {
	key := fmt.Sprintf("%s %s://%s dial %v keepalive %v tls %s", name, u.Scheme, u.Host, dialTimeout, keepAlive, tlsDigest(tlsConfig))
	v, _, err := pools.LoadOrNew(key, func() (caddy.Destructor, error) {
		return &pool{key: key, transport: newTransport(tlsConfig, dialTimeout, keepAlive)}, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*pool), nil
}

// tlsDigest identifies what a TLS client configuration presents and
// trusts: a certificate renewed in the same files is another pool. "-"
// for none.
func tlsDigest(c *tls.Config) string {
	if c == nil {
		return "-"
	}
	h := sha256.New()
	fmt.Fprintf(h, "%q", c.ServerName)
	for _, cert := range c.Certificates {
		for _, der := range cert.Certificate {
			h.Write(der)
		}
	}
	if c.RootCAs != nil {
		// Subjects is deprecated for a system pool, which it lists
		// incompletely; this one is from ca_file, listed whole.
		for _, s := range c.RootCAs.Subjects() {
			h.Write(s)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// newTransport makes a peer's transport: no proxy from the environment,
// HTTP/2 over TLS when the peer offers it, HTTP/1.1 otherwise.
func newTransport(tlsConfig *tls.Config, dialTimeout, keepAlive time.Duration) *http.Transport {
	t := &http.Transport{
		Proxy:               nil, // never through a proxy from the environment
		DialContext:         (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: dialTimeout,
		TLSClientConfig:     tlsConfig,
		// However many packets are in flight to an HTTP/1.1 peer, each
		// connection is kept until idle for keepAlive (0 would be
		// net/http's 2, and every answer beyond two would close one).
		MaxIdleConnsPerHost: math.MaxInt32,
		IdleConnTimeout:     keepAlive,
		Protocols:           new(http.Protocols),
	}
	// Over plain http, HTTP/1.1: ilp-plugin-http's server speaks no h2c.
	t.Protocols.SetHTTP1(true)
	t.Protocols.SetHTTP2(true)
	return t
}
