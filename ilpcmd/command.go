// Package ilpcmd adds `caddy ilp` to the Caddy binary: the operator's
// commands for looking at what an ILP edge does without writing Go.
//
//	caddy ilp route <ilp-address> --config <file>  where a packet goes
//	caddy ilp fleet --admin <host:port>            the edges, peers' tables
//	caddy ilp egress --admin <host:port>           ilp_egress' peers, replies owed
//	caddy ilp send <url> --token <t>               one Prepare, and its answer
//	caddy ilp decode [<file>|-]                     an OER packet as JSON
//	caddy ilp secret                                a fresh peer secret
//	caddy ilp fingerprint <cert.pem>                a client_cert fingerprint
package ilpcmd

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "ilp",
		Short: "Inspect an ILP edge: routes, packets, secrets, fingerprints",
		Long: `
Commands for operating caddy-ilp. Each prints to standard output and exits
non-zero with a message on standard error when it cannot do its job.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(routeCommand(), fleetCommand(), egressCommand(), sendCommand(), decodeCommand(), secretCommand(), fingerprintCommand())
		},
	})
}
