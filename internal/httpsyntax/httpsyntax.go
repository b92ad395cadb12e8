// Package httpsyntax classifies the bytes of HTTP messages (RFC 9110 §5,
// RFC 3986) for caddy-ilp's parsers, ilp_proxy's HTTP/1.1 reply reader and
// the front door's HTTP/1.1 and HTTP/2 request readers, so that all of
// them accept the same names, values, targets and hosts, checked with one
// table lookup a byte.
package httpsyntax

import "strings"

// The classes of a byte.
const (
	Token  = 1 << iota // in a field name or method: tchar (RFC 9110 §5.6.2)
	Value              // in a field value: VCHAR, SP, HTAB, obs-text
	Target             // in an origin-form target, besides pct-encoded (RFC 3986 pchar, "/" and "?")
	Host               // in a Host or :authority value: reg-name, IP literal, port
)

// Chars classifies each byte.
var Chars = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c == ' ' || c == '\t' || c >= 0x80:
			t[c] = Value
		case c > ' ' && c < 0x7f:
			t[c] = Value
			if strings.IndexByte(`"(),/:;<=>?@[\]{}`, byte(c)) < 0 {
				t[c] |= Token
			}
		}
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if alnum || c < 0x80 && strings.IndexByte(`-._~!$&'()*+,;=:@/?`, byte(c)) >= 0 {
			t[c] |= Target
		}
		if alnum || c < 0x80 && strings.IndexByte(`-._~!$&'()*+,;=:[]%`, byte(c)) >= 0 {
			t[c] |= Host
		}
	}
	return t
}()

// IsHex reports whether c is a hexadecimal digit.
func IsHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// EqualFold reports whether b is name in any ASCII case. Unlike
// strings.EqualFold it folds nothing beyond ASCII: field names and the
// tokens compared with it are ASCII.
func EqualFold[T ~string | ~[]byte](b T, name string) bool {
	if len(b) != len(name) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], name[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
