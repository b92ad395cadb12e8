package frontdoor

import (
	"crypto/tls"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
)

// TLS is a front door's HTTPS, with certificates from Caddy's tls app.
type TLS struct {
	// The names to get and renew certificates for with Caddy's tls app,
	// as a site's names are: by ACME, or from Caddy's local CA under the
	// local_certs global option. Certificates the tls app has otherwise
	// (load_files, load_pem, …) serve too, chosen by the name a peer asks
	// for (SNI).
	Names []string `json:"names,omitempty"`

	// Whether and how peers' client certificates are asked for and
	// verified, with the options of a site's `tls { client_auth }`:
	// ilp_edge's client_cert peers need at least mode request, and a
	// trust_pool makes the handshake verify the chain too.
	ClientAuthentication *caddytls.ClientAuthentication `json:"client_authentication,omitempty"`

	app    *caddytls.TLS
	config *tls.Config
}

// provision builds the TLS configuration from the tls app.
func (t *TLS) provision(ctx caddy.Context) error {
	app, err := ctx.App("tls")
	if err != nil {
		return fmt.Errorf("tls app: %w", err)
	}
	t.app = app.(*caddytls.TLS)
	// A client that negotiates h2 sends HTTP/2's preface, which the
	// HTTP/1.1 server hands to the HTTP/2 one.
	policies := caddytls.ConnectionPolicies{{ClientAuthentication: t.ClientAuthentication, ALPN: []string{"h2", "http/1.1"}}}
	if err := policies.Provision(ctx); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	t.config = policies.TLSConfig(ctx)
	return nil
}

// manage has the tls app get and renew the names' certificates.
func (t *TLS) manage() error {
	if len(t.Names) == 0 {
		return nil
	}
	names := make(map[string]struct{}, len(t.Names))
	for _, n := range t.Names {
		names[n] = struct{}{}
	}
	if err := t.app.Manage(names); err != nil {
		return fmt.Errorf("tls: managing certificates for %v: %w", t.Names, err)
	}
	return nil
}
