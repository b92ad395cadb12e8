// Package tlsclient is the TLS settings, from PEM files, of the
// connections the edge makes itself: to the shared store (redis's tls
// block) and to a peer's callback URL (a peer's callback_tls block). One
// reader of the files and one Caddyfile block serve both, so that they
// read, and fail, the same way.
package tlsclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Config is how a client connects over TLS. Without files, the system's
// roots verify the server and the client presents no certificate.
type Config struct {
	// PEM file of the CA certificates that verify the server.
	CAFile string `json:"ca_file,omitempty"`
	// PEM files of a client certificate and its key, for servers that
	// ask for one.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// The name the server's certificate is checked against, when it is
	// not the host the client dials.
	ServerName string `json:"server_name,omitempty"`
}

// errCertWithoutKey: a certificate is no use without its key, nor a key
// without its certificate.
var errCertWithoutKey = errors.New("cert_file and key_file go together")

// Load reads c's files into a TLS client configuration. Its errors name
// the option and the file that failed.
func (c *Config) Load() (*tls.Config, error) {
	t := &tls.Config{ServerName: c.ServerName, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err) // the error names the file
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate", c.CAFile)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errCertWithoutKey
	}
	if c.CertFile != "" {
		// LoadX509KeyPair's own errors name no file when the PEM is wrong.
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file %s, key_file %s: %w", c.CertFile, c.KeyFile, err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// UnmarshalCaddyfile reads a TLS block, the dispenser at its name:
//
//	<name> {
//		ca_file <path>
//		cert_file <path>
//		key_file <path>
//		server_name <name>
//	}
//
// where names the block in errors, e.g. "redis: tls" or
// `peer "bob": callback_tls`.
func UnmarshalCaddyfile(d *caddyfile.Dispenser, where string) (*Config, error) {
	if d.NextArg() {
		return nil, d.Errf("%s takes a block, not arguments", where)
	}
	c := new(Config)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		var v string
		if !d.AllArgs(&v) {
			return nil, d.Errf("%s: %s takes exactly one argument", where, opt)
		}
		switch opt {
		case "ca_file":
			c.CAFile = v
		case "cert_file":
			c.CertFile = v
		case "key_file":
			c.KeyFile = v
		case "server_name":
			c.ServerName = v
		default:
			return nil, d.Errf("%s: unrecognized option %q", where, opt)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, d.Errf("%s: %v", where, errCertWithoutKey)
	}
	return c, nil
}
