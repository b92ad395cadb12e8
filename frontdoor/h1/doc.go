// Package h1 is the server side of HTTP/1.1 for caddy-ilp's front door,
// outside net/http: a raw listener, a goroutine per connection, and a
// parser strict enough for a proxy, at nginx's cost per packet.
//
// An ILP peer POSTs a Prepare of at most 40,000 bytes with a
// Content-Length and gets a 200 whose body is a Fulfill or a Reject. This
// package serves exactly that kind of exchange: a request is parsed in
// place from the connection's read buffer (request.go), handed whole to a
// Handler that runs on the connection's goroutine and may block
// (conn.go), and answered with a Content-Length, never chunked
// (response.go). With Server.HandleOnHead, a request whose body has not
// all arrived with its head is handed over on its head, and the handler
// reads the body or refuses the request without it (body.go). Server
// (server.go) accepts, tracks and shuts down connections.
//
// # Accepted
//
//   - HTTP/1.1 and HTTP/1.0 requests, every line ending in CRLF;
//   - a request line "METHOD SP target SP HTTP/1.x" with single spaces, a
//     token method other than CONNECT, and an origin-form target ("/"
//     then RFC 3986 path and query characters, percent-escapes
//     well-formed), or "*" with OPTIONS;
//   - header fields "name:value", the name a token, the value any bytes
//     but controls other than HTAB and DEL (obs-text is kept as sent);
//     whitespace around the value is dropped;
//   - a body framed by one Content-Length of 1 to 18 digits, none meaning
//     no body;
//   - Expect: 100-continue in HTTP/1.1: "HTTP/1.1 100 Continue" is sent
//     before the body is read, unless the body is already buffered (it
//     is ignored in HTTP/1.0, as RFC 9110 §10.1.1 says); with
//     HandleOnHead, only once the handler reads the body, so that a
//     request it refuses on its head gets the refusal and no 100;
//   - pipelining: requests are answered in order, and the answers to
//     those already buffered go out in one write.
//
// HTTP/1.1 connections stay open unless the request or the handler says
// Connection: close, or the server is shutting down; HTTP/1.0 ones only
// with Connection: keep-alive. Every answer is HTTP/1.1 with a
// Content-Length (none for 204) and a Date, formatted once a second per
// connection, as nginx sends one.
//
// # Refused
//
// Each refusal is answered with its status and a short text body, then
// the connection is closed: after a request this server could not frame,
// nothing later on the connection can be trusted to start where it
// seems to (RFC 9112 §11.2, request smuggling).
//
//	status  request
//	400     a line ending in a bare LF, or a bare CR anywhere
//	400     a request line without exactly two single spaces, a method not a token
//	400     a version not "HTTP/" DIGIT "." DIGIT
//	400     absolute-form, authority-form, "*" with a method other than OPTIONS; CONNECT
//	400     a target byte outside RFC 3986's, a malformed percent-escape
//	400     a line starting with SP or HTAB (obs-fold, or before the first field)
//	400     a field name not a token, empty, or followed by whitespace before its colon
//	400     a control character other than HTAB, or DEL, in a field value (NUL, VT, CR)
//	400     HTTP/1.1 without a Host, or any request with two Host fields; a Host with
//	        bytes no host name, IP literal or port has
//	400     Content-Length not 1 to 18 digits ("+5", "5, 5", "0x10", 19 digits)
//	400     Content-Length twice, even with equal values: RFC 9110 §8.6 lets a
//	        recipient merge them, but two parsers may not agree which one counts
//	400     Transfer-Encoding with Content-Length (CL.TE and TE.CL smuggling),
//	        Transfer-Encoding in HTTP/1.0, or one whose last coding is not chunked
//	        ("xchunked", "chunked, gzip"): RFC 9112 §6.1 and §6.3
//	411     Transfer-Encoding ending in chunked, alone: a body of unknown length is
//	        not supported; a Content-Length is what the client should send
//	413     Content-Length over Limits.MaxBodyBytes, answered before the body is read
//	414     a target over Limits.MaxTargetBytes, as soon as that many bytes arrive
//	417     an Expect other than 100-continue
//	431     a head over Limits.MaxHeaderBytes, or over Limits.MaxFields fields
//	505     a well-formed version other than 1.0 and 1.1, and HTTP/2's preface
//	        "PRI * HTTP/2.0" (ErrHTTP2Preface) unless Server.HTTP2 takes
//	        the connection, as it does when it starts with the preface
//
// A field with whitespace between its name and colon ("Transfer-Encoding :
// chunked") is refused as malformed, so it can never be taken as framing
// by one parser and ignored by another. Several refusals may apply to one
// request; framing errors are judged first, then Host, 413, 417.
//
// With HandleOnHead, a handler that answers without reading a body still
// to come has refused the request on its head: the answer goes out at
// once with Connection: close, and the connection is closed after a
// linger (what still comes is read and dropped, at most 4 MiB within
// 1 s), never read on for a next request.
//
// A connection is closed without an answer when a request's head is not
// whole within ReadHeaderTimeout of its first byte (a slowloris), its body
// within BodyTimeout, or an answer not written within WriteTimeout; an
// idle connection after IdleTimeout.
//
// # Cost
//
// A request costs no allocation in the steady state: it is parsed into
// slices of the read buffer, and the answer is built in a write buffer;
// both come from a pool when bytes arrive and go back to it when the
// connection is idle, so that an idle keep-alive connection holds only
// its goroutine and a few hundred bytes.
package h1
