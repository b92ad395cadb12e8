package h1

import "github.com/ilp-edge/caddy-ilp/internal/httpsyntax"

// This file classifies bytes and compares names, so that checking a
// request line or a field is one table lookup a byte and a lookup by name
// allocates nothing.

// The classes of a byte: the field name and value classes every
// HTTP/1.1 parser here shares, and the request line's own.
// The classes of a byte, httpsyntax's.
const (
	tokenChar  = httpsyntax.Token  // in a method or field name (RFC 9110 §5.6.2 tchar)
	valueChar  = httpsyntax.Value  // in a field value: VCHAR, SP, HTAB, obs-text
	targetChar = httpsyntax.Target // in an origin-form target, besides pct-encoded
	hostChar   = httpsyntax.Host   // in a Host value: reg-name, IP literal, port
)

// chars classifies each byte.
var chars = httpsyntax.Chars

// equalFold reports whether b is name in any ASCII case. name must be
// lower case.
func equalFold(b []byte, name string) bool {
	if len(b) != len(name) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

// trimOWS returns b without the spaces and tabs around it.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// hasToken reports whether the comma-separated list holds token (lower
// case), in any case.
func hasToken(list []byte, token string) bool {
	for len(list) > 0 {
		i := 0
		for i < len(list) && list[i] != ',' {
			i++
		}
		if equalFold(trimOWS(list[:i]), token) {
			return true
		}
		if i == len(list) {
			break
		}
		list = list[i+1:]
	}
	return false
}

// lastElem returns the last element of a comma-separated list.
func lastElem(list []byte) []byte {
	for i := len(list) - 1; i >= 0; i-- {
		if list[i] == ',' {
			return trimOWS(list[i+1:])
		}
	}
	return trimOWS(list)
}
