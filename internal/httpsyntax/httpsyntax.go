// Package httpsyntax classifies the bytes of HTTP/1.1 header fields (RFC
// 9110 §5.1, §5.5) for caddy-ilp's two HTTP/1.1 parsers, ilp_proxy's
// reply reader and the front door's request reader, so that both accept
// the same names and values, checked with one table lookup a byte.
package httpsyntax

import "strings"

// The classes of a byte.
const (
	Token = 1 << iota // in a field name or method: tchar (RFC 9110 §5.6.2)
	Value             // in a field value: VCHAR, SP, HTAB, obs-text

	// NextClass is the first bit free for a parser's own classes.
	NextClass
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
	}
	return t
}()
