// Package caddyilp registers the caddy-ilp modules with Caddy. It is the
// package that `xcaddy build --with github.com/ilp-edge/caddy-ilp` imports.
package caddyilp
