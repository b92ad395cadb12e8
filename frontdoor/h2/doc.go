// Package h2 is the server side of HTTP/2 for caddy-ilp's front door,
// outside net/http: the frames read and written with x/net's http2.Framer,
// header blocks through its hpack package, a goroutine per connection
// reading frames and one per request running its handler.
package h2
