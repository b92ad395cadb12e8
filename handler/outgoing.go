package handler

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/go-jose/go-jose/v4"
)

// This file is the edge's side toward a peer, for every request the edge
// itself makes to it (the replies to its asynchronous Prepares, and
// ilp_egress's packets): the peer's URL and the credential the edge
// presents. One reading of them, so that a callback and an egress packet
// to one peer carry the same credential, signed the same way.

// errMultiTemplate: ilp-plugin-http's multi mode replaces a `%` in its
// outgoing URL with a segment of the destination; the edge does so only
// with url_segment_after, which says which segment.
var errMultiTemplate = errors.New("% in the URL: ilp-plugin-http's multi-mode template needs url_segment_after")

// multiMarker stands for a multi-mode url's `%` while the URL is parsed:
// letters only, which url.Parse keeps as they are.
const multiMarker = "ilpmultisegment"

// ParsePeerURLTemplate checks a peer's `url` in ilp-plugin-http's multi
// mode: ParsePeerURL's checks, with one `%`, in the path, which ilp_egress
// replaces by a segment of the packet's destination. The `%` may sit
// nowhere else: a destination comes from whoever sent the packet, and
// must never choose the host or port the edge connects to (ilp-plugin-http
// allows it anywhere). It returns the URL, and its text before and after
// the `%`.
func ParsePeerURLTemplate(s string) (u *url.URL, before, after string, err error) {
	i := strings.IndexByte(s, '%')
	switch {
	case i < 0:
		return nil, "", "", errors.New("url_segment_after needs a % in url's path, where the segment goes")
	case strings.IndexByte(s[i+1:], '%') >= 0:
		return nil, "", "", errors.New("more than one % in the URL: the template has one")
	}
	if u, err = ParsePeerURL(s[:i] + multiMarker + s[i+1:]); err != nil {
		return nil, "", "", err
	}
	full := u.String()
	if !strings.Contains(u.Path, multiMarker) || strings.Count(full, multiMarker) != 1 {
		return nil, "", "", errors.New("the % of the URL must be in its path: a destination never chooses the host or port")
	}
	before, after, _ = strings.Cut(full, multiMarker)
	return u, before, after, nil
}

// checkEgressURL checks url and url_segment_after together: a template
// needs the address its segment follows, and the address a template.
func (c *Peer) checkEgressURL() error {
	switch {
	case c.URLSegmentAfter == "":
		_, err := ParsePeerURL(c.EgressURL)
		if c.EgressURL == "" {
			err = nil
		}
		return err
	case c.EgressURL == "":
		return errors.New("url_segment_after without url")
	}
	_, _, _, err := ParsePeerURLTemplate(c.EgressURL)
	return err
}

// ParsePeerURL checks a peer's `url`: an absolute http or https URL with
// a host, without userinfo (the credential goes in callback_token or
// callback_jwt_secret, which never appear in a log) or a fragment. Its
// errors do not quote the URL, whose query may hold a secret.
func ParsePeerURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil && strings.Contains(s, "%"):
		return nil, errMultiTemplate
	case err != nil:
		return nil, errors.New("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("scheme %q: want http or https", u.Scheme)
	case u.Host == "" || u.Opaque != "":
		return nil, errors.New("no host: want an absolute URL")
	case u.User != nil:
		return nil, errors.New("userinfo in the URL: put the credential in callback_token or callback_jwt_secret")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return nil, errors.New("the URL has a fragment")
	}
	return u, nil
}

// OutgoingAuthorization returns what the edge sends as Authorization in
// each request it makes to the peer, called once per request: a static
// bearer token (callback_token), or an HS256 JWT signed with
// callback_jwt_secret as ilp-plugin-http signs its own, the callbacks'
// (callbackJWT: signed afresh once half its lifetime has passed, so none
// goes out near its expiry). nil when the peer has neither. Placeholders
// ({env.*}, {file.*}) are resolved with repl, once.
func (c *Peer) OutgoingAuthorization(repl *caddy.Replacer) (func() string, error) {
	switch {
	case c.CallbackToken != "" && c.CallbackJWTSecret != "":
		return nil, errors.New("callback_token and callback_jwt_secret are exclusive")
	case c.CallbackToken != "":
		token, err := resolveSecret(repl, c.CallbackToken)
		if err != nil {
			return nil, fmt.Errorf("callback_token: %w", err)
		}
		v := "Bearer " + token
		return func() string { return v }, nil
	case c.CallbackJWTSecret != "":
		secret, err := resolveSecret(repl, c.CallbackJWTSecret)
		if err != nil {
			return nil, fmt.Errorf("callback_jwt_secret: %w", err)
		}
		// hmacKey: the same MAC as jsonwebtoken's with the secret as it is.
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: hmacKey(secret)}, (&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			return nil, fmt.Errorf("callback_jwt_secret: %w", err)
		}
		return (&callbackJWT{signer: signer}).authorization, nil
	}
	return nil, nil
}
