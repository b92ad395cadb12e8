// Command caddy is a Caddy binary with the standard modules plus caddy-ilp,
// so tests, CI, the demo and the benchmarks never need xcaddy.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/ilp-edge/caddy-ilp"
)

func main() {
	caddycmd.Main()
}
