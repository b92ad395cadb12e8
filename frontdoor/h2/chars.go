package h2

import "github.com/ilp-edge/caddy-ilp/internal/httpsyntax"

// This file classifies bytes, so that checking a field is one table
// lookup a byte: the same classes as package h1's, with field names in
// lower case only, as HTTP/2 has them.

// The classes of a byte: httpsyntax's, with field names in lower case
// only (RFC 9113 §8.2.1).
const (
	nameChar   = httpsyntax.Token  // in a field name: tchar, no upper case
	valueChar  = httpsyntax.Value  // in a field value: VCHAR, SP, HTAB, obs-text
	targetChar = httpsyntax.Target // in :path, besides pct-encoded
	hostChar   = httpsyntax.Host   // in :authority: reg-name, IP literal, port
)

// chars classifies each byte.
var chars = func() (t [256]uint8) {
	t = httpsyntax.Chars
	for c := 'A'; c <= 'Z'; c++ {
		t[c] &^= nameChar
	}
	return t
}()

// validValue reports whether v may be a field value: no control
// character but HTAB, no DEL, no whitespace at either end (RFC 9113
// §8.2.1 forbids NUL, CR and LF anywhere; the other controls are refused
// as package h1 refuses them, so that no value passes one door and not
// the other).
func validValue(v string) bool {
	if v != "" && (v[0] == ' ' || v[0] == '\t' || v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		return false
	}
	for i := range len(v) {
		if chars[v[i]]&valueChar == 0 {
			return false
		}
	}
	return true
}

// validPath accepts "/" then RFC 3986 path and query characters with
// well-formed percent-escapes, or "*" for OPTIONS.
func validPath[T ~string | ~[]byte](method string, p T) bool {
	if len(p) == 1 && p[0] == '*' {
		return method == "OPTIONS"
	}
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' {
			if i+2 >= len(p) || !httpsyntax.IsHex(p[i+1]) || !httpsyntax.IsHex(p[i+2]) {
				return false
			}
			i += 2
			continue
		}
		if chars[c]&targetChar == 0 {
			return false
		}
	}
	return true
}

// validAuthority accepts host name, IP literal and port characters.
func validAuthority[T ~string | ~[]byte](a T) bool {
	for i := range len(a) {
		if chars[a[i]]&hostChar == 0 {
			return false
		}
	}
	return true
}

// parseLength reads a content-length value: 1 to 18 decimal digits, so
// that it cannot overflow.
func parseLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := range len(v) {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
