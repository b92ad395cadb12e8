package async

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// CallbackPolicy is where the edge may POST a peer's replies. A peer
// names its callback URL in each Prepare (Callback-Url), and the edge
// then makes a request to a URL the peer chose: without a policy, any
// peer could aim the edge at an internal admin port or a cloud metadata
// address (SSRF). So the URL must be URL exactly, or under one of
// Prefixes; with URL alone, a Prepare without Callback-Url gets its reply
// there (the URL exchanged out of band, as the draft allows).
type CallbackPolicy struct {
	// The peer's callback URL, exchanged out of band.
	URL string `json:"callback_url,omitempty"`
	// URLs under which the peer's Callback-Url may be: each an http or
	// https URL with a path that ends in "/", so that a prefix always
	// names a whole host and a whole directory of it.
	Prefixes []string `json:"callback_url_prefixes,omitempty"`

	exact    *url.URL
	prefixes []*url.URL
}

// Errors of Resolve, each a reason to refuse the Prepare (HTTP 400)
// before it is accepted.
var (
	ErrNoCallback       = errors.New("no Callback-Url, and none is configured for the peer")
	ErrCallbackRefused  = errors.New("Callback-Url is not one the peer may use")
	ErrCallbackMalforms = errors.New("Callback-Url is not an absolute http or https URL")
)

// Provision checks the policy's URLs.
func (p *CallbackPolicy) Provision() error {
	if p.URL != "" {
		u, err := parseCallback(p.URL)
		if err != nil {
			return fmt.Errorf("callback_url %q: %w", p.URL, err)
		}
		p.exact = u
	}
	p.prefixes = p.prefixes[:0]
	for _, s := range p.Prefixes {
		u, err := parseCallback(s)
		if err != nil {
			return fmt.Errorf("callback_url_prefix %q: %w", s, err)
		}
		if !strings.HasSuffix(u.Path, "/") {
			return fmt.Errorf("callback_url_prefix %q: the path must end in / (a prefix names whole path segments)", s)
		}
		p.prefixes = append(p.prefixes, u)
	}
	return nil
}

// Configured reports whether the peer has any callback URL: without one,
// it cannot be answered asynchronously.
func (p *CallbackPolicy) Configured() bool { return p.exact != nil || len(p.prefixes) > 0 }

// Resolve returns the URL to POST the reply to, for a Prepare whose
// Callback-Url header is header (empty when it has none).
func (p *CallbackPolicy) Resolve(header string) (string, error) {
	if header == "" {
		if p.exact == nil {
			return "", ErrNoCallback
		}
		return p.exact.String(), nil
	}
	u, err := parseCallback(header)
	if err != nil {
		return "", err
	}
	if p.exact != nil && sameURL(u, p.exact) {
		return p.exact.String(), nil
	}
	for _, prefix := range p.prefixes {
		if sameOrigin(u, prefix) && strings.HasPrefix(u.EscapedPath(), prefix.EscapedPath()) {
			return u.String(), nil
		}
	}
	return "", ErrCallbackRefused
}

// parseCallback reads a callback URL strictly: absolute http or https,
// a host, no credentials or fragment, and a path without dot segments or
// escaped slashes or dots, which a server could resolve out from under a
// prefix.
func parseCallback(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" ||
		u.User != nil || u.Fragment != "" || strings.ContainsAny(s, " \t\r\n\\") {
		return nil, ErrCallbackMalforms
	}
	p := u.EscapedPath()
	lower := strings.ToLower(p)
	if strings.Contains(lower, "%2f") || strings.Contains(lower, "%2e") || strings.Contains(lower, "%5c") {
		return nil, ErrCallbackMalforms
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return nil, ErrCallbackMalforms
		}
	}
	if p == "" {
		u.Path = "/"
	}
	u.Host = strings.ToLower(u.Host)
	return u, nil
}

func sameOrigin(a, b *url.URL) bool { return a.Scheme == b.Scheme && a.Host == b.Host }

func sameURL(a, b *url.URL) bool {
	return sameOrigin(a, b) && a.EscapedPath() == b.EscapedPath() && a.RawQuery == b.RawQuery
}
