// Package integration holds caddy-ilp's end-to-end tests: Caddyfile
// adaptation, ilp_edge inside a real in-process Caddy (caddytest), and the
// whole edge built as ./cmd/caddy in front of real ilp-plugin-http peers
// (run with node). caddytest runs one Caddy on fixed ports, so every test
// that uses it lives in this one package and none runs in parallel.
package integration
