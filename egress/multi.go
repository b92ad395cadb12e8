package egress

import (
	"errors"
	"strings"
)

// multiURL is a peer's url in ilp-plugin-http's multi mode: one server
// for many children, each at the url with its name in place of the `%`,
// its name being the segment of the destination after the peer's
// url_segment_after (index.js:102-124 of ilp-plugin-http).
type multiURL struct {
	before, rest string // the url's text around its `%` (in the path)
	after        string // url_segment_after and a dot
}

var (
	errNotUnder   = errors.New("destination is not under the peer's url_segment_after: no child to send it to")
	errBadSegment = errors.New("destination's child segment is empty or not letters, digits, _ or -")
)

// url is the URL of the child the destination is for. The segment must be
// what ilp-plugin-http accepts, [A-Za-z0-9_-] (it throws on anything
// else), and not empty (which it allows, making a path with "//"): so it
// can only name a path segment, never leave it.
func (m *multiURL) url(destination string) (string, error) {
	rest, ok := strings.CutPrefix(destination, m.after)
	if !ok {
		return "", errNotUnder
	}
	segment, _, _ := strings.Cut(rest, ".")
	if segment == "" {
		return "", errBadSegment
	}
	for i := range len(segment) {
		switch c := segment[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return "", errBadSegment
		}
	}
	return m.before + segment + m.rest, nil
}
