package h1

import (
	"bytes"
	"crypto/tls"
	"errors"

	"github.com/ilp-edge/caddy-ilp/internal/httpsyntax"
)

// This file parses a request's head from bytes already read: the request
// line and the header section, strictly (doc.go lists what is refused),
// into slices of the caller's buffer, so that a request costs no
// allocation once its Request has held as many fields before.

// Limits bound what one request may hold. A zero field takes its default.
type Limits struct {
	// MaxHeaderBytes bounds the request line and header section, their
	// CRLFs included: over it, 431.
	MaxHeaderBytes int
	// MaxFields bounds the number of header fields: over it, 431.
	MaxFields int
	// MaxTargetBytes bounds the request target: over it, 414.
	MaxTargetBytes int
	// MaxBodyBytes bounds the Content-Length: over it, 413.
	MaxBodyBytes int
}

// The default limits: an ILP packet is at most 40,000 bytes, and a peer's
// head a few hundred.
const (
	DefaultMaxHeaderBytes = 8 << 10
	DefaultMaxFields      = 64
	DefaultMaxTargetBytes = 2 << 10
	DefaultMaxBodyBytes   = 64 << 10
)

// withDefaults returns l with each zero field at its default.
func (l Limits) withDefaults() Limits {
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxFields <= 0 {
		l.MaxFields = DefaultMaxFields
	}
	if l.MaxTargetBytes <= 0 {
		l.MaxTargetBytes = DefaultMaxTargetBytes
	}
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	return l
}

// Error is a refused request: the status to answer before closing the
// connection, and why.
type Error struct {
	Status int
	Reason string
}

func (e *Error) Error() string { return "h1: " + e.Reason }

// ErrIncomplete says the buffer ends before the request head does: read
// more and parse again.
var ErrIncomplete = errors.New("h1: incomplete request head")

// ErrHTTP2Preface is the request line of HTTP/2's connection preface,
// "PRI * HTTP/2.0". It is answered 505 unless the caller hands the
// connection to an HTTP/2 server instead.
var ErrHTTP2Preface = &Error{505, "HTTP/2 connection preface"}

// The refusals, one per rule of doc.go's table.
var (
	errBareLF         = &Error{400, "line not ending in CRLF"}
	errRequestLine    = &Error{400, "malformed request line"}
	errMethod         = &Error{400, "method not a token"}
	errTarget         = &Error{400, "request target not origin-form or OPTIONS *"}
	errConnect        = &Error{400, "CONNECT not supported"}
	errVersion        = &Error{400, "malformed HTTP version"}
	errObsFold        = &Error{400, "folded header line"}
	errFieldName      = &Error{400, "field name not a token"}
	errSpaceColon     = &Error{400, "whitespace before a field's colon"}
	errFieldValue     = &Error{400, "control character in a field value"}
	errNoHost         = &Error{400, "HTTP/1.1 request without one Host"}
	errHost           = &Error{400, "invalid Host"}
	errLength         = &Error{400, "invalid Content-Length"}
	errRepeatedLength = &Error{400, "repeated Content-Length"}
	errTEAndLength    = &Error{400, "both Transfer-Encoding and Content-Length"}
	errTE10           = &Error{400, "Transfer-Encoding in HTTP/1.0"}
	errTENotChunked   = &Error{400, "Transfer-Encoding not ending in chunked"}
	errChunked        = &Error{411, "chunked request body; send a Content-Length"}
	errBodyTooLarge   = &Error{413, "body over the limit"}
	errTargetTooLong  = &Error{414, "request target over the limit"}
	errExpectation    = &Error{417, "expectation other than 100-continue"}
	errHeadTooLarge   = &Error{431, "header section over the limit"}
	errTooManyFields  = &Error{431, "too many header fields"}
	errVersionUnsupp  = &Error{505, "HTTP version other than 1.0 and 1.1"}
)

// Field is one header field line: its name as sent, and its value without
// the whitespace around it.
type Field struct {
	Name, Value []byte
}

// Request is one parsed request. Its slices point into the buffer it was
// parsed from, and are valid until the handler returns.
type Request struct {
	Method []byte
	Target []byte // origin-form ("/path?query"), or "*" for OPTIONS
	// ProtoMinor is 1 for HTTP/1.1 and 0 for HTTP/1.0.
	ProtoMinor int
	// ContentLength is the body's length, 0 without a Content-Length.
	ContentLength int64
	// Body is the whole body when the handler is called, unless the
	// handler was called on the head (Server.HandleOnHead, BodyPending):
	// then ReadBody reads it.
	Body []byte

	fields         []Field
	host           []byte
	close          bool   // Connection: close
	keepAlive      bool   // Connection: keep-alive
	expectContinue bool   // Expect: 100-continue in HTTP/1.1
	remote         string // the connection's, formatted once
	tls            *tls.ConnectionState
	pending        *conn // the body is still to be read, from this connection (body.go)
	headLen        int   // the head's length, where the body starts
	bodyErr        error // reading the body failed: the connection is lost
}

// Fields returns the header fields in the order received.
func (r *Request) Fields() []Field { return r.fields }

// Lookup returns the value of the first field named name, in any case.
func (r *Request) Lookup(name string) (value []byte, ok bool) {
	for i := range r.fields {
		if httpsyntax.EqualFold(r.fields[i].Name, name) {
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

// Host returns the Host field's value, nil in an HTTP/1.0 request
// without one.
func (r *Request) Host() []byte { return r.host }

// KeepAlive reports whether the request lets the connection carry
// another one: HTTP/1.1 unless Connection: close, HTTP/1.0 only with
// Connection: keep-alive.
func (r *Request) KeepAlive() bool {
	if r.close {
		return false
	}
	return r.ProtoMinor == 1 || r.keepAlive
}

// TLS returns the connection's TLS state, or nil on a connection without
// TLS. It is the connection's, shared by its requests: do not modify it.
func (r *Request) TLS() *tls.ConnectionState { return r.tls }

// RemoteAddr returns the peer's address as host:port, as net/http's
// Request.RemoteAddr has it, for a request served on a connection.
func (r *Request) RemoteAddr() string { return r.remote }

// headState collects, while the fields are read, what they say about
// framing: each is judged once the header section is whole.
type headState struct {
	hosts     int
	lengths   int
	badLength bool
	te        bool
	teChunked bool // the last Transfer-Encoding's last coding is chunked
	badExpect bool
}

// ParseHead parses the request line and header section at the start of
// buf. It returns the head's length, ErrIncomplete when buf ends before
// the head does (and no limit is crossed yet), or an *Error to answer.
// The body, ContentLength bytes after the head, is the caller's to read.
// A zero field of lim takes its default.
func (r *Request) ParseHead(buf []byte, lim Limits) (int, error) {
	lim = lim.withDefaults()
	return r.parseHead(buf, &lim)
}

// parseHead is ParseHead with every limit set.
func (r *Request) parseHead(buf []byte, lim *Limits) (int, error) {
	fields := r.fields[:0]
	*r = Request{fields: fields, remote: r.remote}

	eol := bytes.IndexByte(buf, '\n')
	if eol < 0 {
		return 0, incompleteRequestLine(buf, lim)
	}
	if eol+1 > lim.MaxHeaderBytes {
		if n := targetLen(buf[:eol]); n > lim.MaxTargetBytes {
			return 0, errTargetTooLong
		}
		return 0, errHeadTooLarge
	}
	if eol == 0 || buf[eol-1] != '\r' {
		return 0, errBareLF
	}
	if err := r.parseRequestLine(buf[:eol-1], lim); err != nil {
		return 0, err
	}

	var st headState
	pos := eol + 1
	for {
		if pos < len(buf) && (buf[pos] == ' ' || buf[pos] == '\t') {
			// RFC 9112 §5.2: obs-fold, and whitespace before the first
			// field, which some parsers take as a field of its own.
			return 0, errObsFold
		}
		eol = bytes.IndexByte(buf[pos:], '\n')
		if eol < 0 {
			if len(buf) >= lim.MaxHeaderBytes {
				return 0, errHeadTooLarge
			}
			return 0, ErrIncomplete
		}
		end := pos + eol + 1
		if end > lim.MaxHeaderBytes {
			return 0, errHeadTooLarge
		}
		if eol == 0 || buf[end-2] != '\r' {
			return 0, errBareLF
		}
		line := buf[pos : end-2]
		pos = end
		if len(line) == 0 {
			break
		}
		if len(r.fields) == lim.MaxFields {
			return 0, errTooManyFields
		}
		if err := r.parseField(line, &st); err != nil {
			return 0, err
		}
	}
	return pos, r.judge(&st, lim)
}

// incompleteRequestLine says whether a request line whose end is not in
// buf can still become a request: its target may already be too long.
func incompleteRequestLine(buf []byte, lim *Limits) error {
	if targetLen(buf) > lim.MaxTargetBytes {
		return errTargetTooLong
	}
	if len(buf) >= lim.MaxHeaderBytes {
		return errHeadTooLarge
	}
	return ErrIncomplete
}

// targetLen returns the length of the target in a request line, or of
// what has arrived of it.
func targetLen(line []byte) int {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return 0
	}
	line = line[sp+1:]
	if sp = bytes.IndexByte(line, ' '); sp >= 0 {
		return sp
	}
	return len(line)
}

// parseRequestLine reads "METHOD SP target SP HTTP/1.x": one space each,
// a token method, an origin-form target (or OPTIONS *).
func (r *Request) parseRequestLine(line []byte, lim *Limits) error {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return errRequestLine
	}
	r.Method = line[:sp]
	for _, c := range r.Method {
		if chars[c]&tokenChar == 0 {
			return errMethod
		}
	}
	rest := line[sp+1:]
	if sp = bytes.IndexByte(rest, ' '); sp < 0 {
		return errRequestLine
	}
	r.Target = rest[:sp]
	version := rest[sp+1:]
	switch string(version) {
	case "HTTP/1.1":
		r.ProtoMinor = 1
	case "HTTP/1.0":
	case "HTTP/2.0":
		if string(r.Method) == "PRI" && string(r.Target) == "*" {
			return ErrHTTP2Preface
		}
		return errVersionUnsupp
	default:
		// HTTP-version is "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3): a
		// well-formed one this server does not speak gets 505.
		if len(version) == 8 && string(version[:5]) == "HTTP/" && version[6] == '.' &&
			version[5] >= '0' && version[5] <= '9' && version[7] >= '0' && version[7] <= '9' {
			return errVersionUnsupp
		}
		return errVersion
	}
	if len(r.Target) > lim.MaxTargetBytes {
		return errTargetTooLong
	}
	if string(r.Method) == "CONNECT" {
		return errConnect
	}
	return checkTarget(r.Method, r.Target)
}

// checkTarget accepts an origin-form target of RFC 3986 characters with
// well-formed percent-escapes, or "*" for OPTIONS. The absolute form is
// refused: its authority and the Host field could name different sites.
func checkTarget(method, t []byte) error {
	if len(t) == 1 && t[0] == '*' {
		if string(method) == "OPTIONS" {
			return nil
		}
		return errTarget
	}
	if len(t) == 0 || t[0] != '/' {
		return errTarget
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c == '%' {
			if i+2 >= len(t) || !httpsyntax.IsHex(t[i+1]) || !httpsyntax.IsHex(t[i+2]) {
				return errTarget
			}
			i += 2
			continue
		}
		if chars[c]&targetChar == 0 {
			return errTarget
		}
	}
	return nil
}

// parseField reads one "name: value" line and notes what it says about
// framing and the connection.
func (r *Request) parseField(line []byte, st *headState) error {
	i := 0
	for i < len(line) && chars[line[i]]&tokenChar != 0 {
		i++
	}
	switch {
	case i == len(line):
		return errFieldName // no colon
	case line[i] != ':':
		if line[i] == ' ' || line[i] == '\t' {
			return errSpaceColon
		}
		return errFieldName
	case i == 0:
		return errFieldName
	}
	name := line[:i]
	value := trimOWS(line[i+1:])
	for _, c := range value {
		if chars[c]&valueChar == 0 {
			return errFieldValue
		}
	}
	r.fields = append(r.fields, Field{Name: name, Value: value})

	switch len(name) {
	case len("host"):
		if equalFold(name, "host") {
			st.hosts++
			r.host = value
		}
	case len("expect"):
		if equalFold(name, "expect") {
			if equalFold(value, "100-continue") {
				// RFC 9110 §10.1.1: ignored in an HTTP/1.0 request.
				r.expectContinue = r.ProtoMinor == 1
			} else {
				st.badExpect = true
			}
		}
	case len("connection"):
		if equalFold(name, "connection") {
			r.close = r.close || hasToken(value, "close")
			r.keepAlive = r.keepAlive || hasToken(value, "keep-alive")
		}
	case len("content-length"):
		if equalFold(name, "content-length") {
			st.lengths++
			n, ok := parseLength(value)
			st.badLength = st.badLength || !ok
			r.ContentLength = n
		}
	case len("transfer-encoding"):
		if equalFold(name, "transfer-encoding") {
			st.te = true
			st.teChunked = equalFold(lastElem(value), "chunked")
		}
	}
	return nil
}

// parseLength reads a Content-Length value: 1 to 18 decimal digits, so
// that it cannot overflow.
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// judge decides on the whole header section, framing first: a request
// whose length is in doubt is refused before anything else about it.
func (r *Request) judge(st *headState, lim *Limits) error {
	switch {
	case st.te && st.lengths > 0:
		return errTEAndLength
	case st.te && r.ProtoMinor == 0:
		return errTE10
	case st.te && !st.teChunked:
		return errTENotChunked
	case st.te:
		return errChunked
	case st.lengths > 1:
		return errRepeatedLength
	case st.badLength:
		return errLength
	case st.hosts > 1 || st.hosts == 0 && r.ProtoMinor == 1:
		return errNoHost
	case !validHost(r.host):
		return errHost
	case r.ContentLength > int64(lim.MaxBodyBytes):
		return errBodyTooLarge
	case st.badExpect:
		return errExpectation
	}
	return nil
}

// validHost accepts an empty Host (RFC 9112 §3.2 allows it) or one of
// host name, IP literal and port characters.
func validHost(h []byte) bool {
	for _, c := range h {
		if chars[c]&hostChar == 0 {
			return false
		}
	}
	return true
}
