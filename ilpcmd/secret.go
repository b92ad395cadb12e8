package ilpcmd

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// secretBytes is the entropy of a secret from `caddy ilp secret`: RFC 35's
// auth profiles ask for at least 32 random bytes.
const secretBytes = 32

func secretCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "secret",
		Short: "Print a fresh random secret for a peer's token, jwt_secret or upstream_token",
		Long: `
Prints 32 random bytes from the operating system's generator, base64url
without padding (43 characters, safe in a header, an environment variable
and a Caddyfile).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := make([]byte, secretBytes)
			if _, err := rand.Read(b); err != nil {
				return fmt.Errorf("reading random bytes: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), base64.RawURLEncoding.EncodeToString(b))
			return nil
		},
	}
}

func fingerprintCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "fingerprint <cert.pem>",
		Short: "Print a certificate's SHA-256 fingerprint as client_cert takes it",
		Long: `
Reads the first CERTIFICATE block of a PEM file and prints the SHA-256 of
its DER bytes as colon-separated hex, the form ilp_edge's client_cert takes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fp, err := certFingerprint(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), fp)
			return nil
		},
	}
}

// certFingerprint is the SHA-256 fingerprint of the first certificate in
// the PEM file at path.
func certFingerprint(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return "", fmt.Errorf("%s: no CERTIFICATE block", path)
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		sum := sha256.Sum256(block.Bytes)
		hex := make([]string, len(sum))
		for i, c := range sum {
			hex[i] = fmt.Sprintf("%02X", c)
		}
		return strings.Join(hex, ":"), nil
	}
}
