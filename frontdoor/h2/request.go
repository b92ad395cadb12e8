package h2

import (
	"crypto/tls"
)

// This file is a request as a handler sees it: the pseudo-headers, the
// regular fields and the body, all slices of the stream's pooled buffers.

// Field is one regular header field, its name in lower case as HTTP/2
// carries it.
type Field struct {
	Name, Value []byte
}

// Request is one request, whole: its header block decoded and checked
// (headers.go), its body received to END_STREAM. Its slices point into
// the stream's buffers and are valid until the handler returns.
type Request struct {
	Method    []byte // :method
	Path      []byte // :path, "/" then the path and query, or "*" for OPTIONS
	Authority []byte // :authority, empty when the client sent none
	Scheme    []byte // :scheme
	// Body is the whole body, at most Server.MaxBodyBytes, unless the
	// handler was called on the head (Server.HandleOnHead, BodyPending):
	// then ReadBody waits for it.
	Body []byte
	// ContentLength is the content-length field's value, -1 without one.
	// When present it equals len(Body): a request whose DATA disagrees is
	// refused before a handler sees it, or, when the handler was called
	// on the head, before ReadBody returns (it fails).
	ContentLength int64

	fields []Field
	remote string // the connection's, formatted once
	tls    *tls.ConnectionState
	id     uint32

	pending bool  // the body is still to come: ReadBody waits for it (body.go)
	bodyErr error // why it did not come
	c       *conn
	st      *stream
}

// Fields returns the regular header fields in the order received;
// pseudo-headers are not among them.
func (r *Request) Fields() []Field { return r.fields }

// Lookup returns the value of the first field named name, in any case.
func (r *Request) Lookup(name string) (value []byte, ok bool) {
	for i := range r.fields {
		if equalLower(r.fields[i].Name, name) {
			return r.fields[i].Value, true
		}
	}
	return nil, false
}

// Header returns the value of the first field named name, in any case,
// or nil.
func (r *Request) Header(name string) []byte {
	v, _ := r.Lookup(name)
	return v
}

// TLS returns the connection's TLS state, or nil on a connection without
// TLS. It is the connection's, shared by its requests: do not modify it.
func (r *Request) TLS() *tls.ConnectionState { return r.tls }

// RemoteAddr returns the peer's address as host:port, as net/http's
// Request.RemoteAddr has it.
func (r *Request) RemoteAddr() string { return r.remote }

// StreamID returns the request's stream identifier, for logs.
func (r *Request) StreamID() uint32 { return r.id }

// equalLower reports whether lower, a field name in lower case, is name
// in any case.
func equalLower(lower []byte, name string) bool {
	if len(lower) != len(name) {
		return false
	}
	for i := range len(name) {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if lower[i] != c {
			return false
		}
	}
	return true
}
