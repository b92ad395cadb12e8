package handler

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/ilp-edge/caddy-ilp/async"
	"github.com/ilp-edge/caddy-ilp/internal/tlsclient"
	"github.com/ilp-edge/caddy-ilp/store"
)

// Peer configures one peer of the edge and the credentials it may present.
// A request is accepted when any one of them matches.
type Peer struct {
	// The peer's name: what the backend sees in the peer-name header, what
	// `{http.ilp.peer}` and the access log's `user_id` show. Required,
	// unique.
	Name string `json:"name"`

	// Static bearer tokens. The peer sends `Authorization: Bearer <token>`
	// (the scheme is case-insensitive) or, as legacy ilp-plugin-http peers
	// configured with `secretToken` do, the raw token. Accepts `{env.*}`
	// and `{file.*}` placeholders, resolved when the config loads.
	Tokens []string `json:"tokens,omitempty"`

	// Shared secrets for HMAC-signed JWTs (HS256, HS384, HS512), as
	// ilp-plugin-http signs them with `jwtSecret`. Accepts `{env.*}` and
	// `{file.*}` placeholders.
	JWTSecrets []string `json:"jwt_secrets,omitempty"`

	// SHA-256 fingerprints (hex, colons allowed) of TLS client certificates
	// that identify this peer. Only certificates that Caddy's TLS
	// `client_auth` verified count.
	ClientCerts []string `json:"client_certs,omitempty"`

	// If set, sent to the backend as `Authorization: Bearer <upstream_token>`
	// for this peer's packets, for backends (rafiki, interledger-rs) that
	// identify a peer by token. If not set, the peer's Authorization header
	// is removed before proxying. Accepts `{env.*}` and `{file.*}`.
	UpstreamToken string `json:"upstream_token,omitempty"`

	// This peer's limits, field by field over the handler's `limits`.
	Limits *Limits `json:"limits,omitempty"`

	// Answer this peer's ILDCP requests at the edge, in place of the
	// handler's `ildcp`.
	ILDCP *ILDCP `json:"ildcp,omitempty"`

	// This peer's routing_protocol, in place of the handler's.
	RoutingProtocol string `json:"routing_protocol,omitempty"`

	// How the peer's Prepares are answered: "sync", the Fulfill or Reject
	// in the 200 answer (RFC 35 drafts 1 and 2); "async", 202 Accepted at
	// once and the Fulfill or Reject POSTed to the peer's callback URL
	// with its Request-Id (RFC 35 draft 3); "auto" (default), async for a
	// request that has a Request-Id or Prefer: respond-async, else sync.
	Mode string `json:"mode,omitempty"`

	// Where the edge may POST the replies to the peer's asynchronous
	// Prepares: callback_url, the peer's callback URL (also where a
	// Prepare without Callback-Url is answered), and
	// callback_url_prefixes, URLs under which a Prepare's Callback-Url
	// may be. Any other Callback-Url is refused (400): a peer cannot make
	// the edge POST wherever it likes.
	async.CallbackPolicy

	// The edge's credential toward the peer, for every request the edge
	// makes to it: the replies POSTed to its callback URL, and ilp_egress's
	// packets to its url. A static bearer token, or a secret with which
	// it signs HS256 JWTs as ilp-plugin-http signs its own, each signed
	// afresh before it nears its expiry. Accept {env.*} and {file.*}
	// placeholders.
	CallbackToken     string `json:"callback_token,omitempty"`
	CallbackJWTSecret string `json:"callback_jwt_secret,omitempty"`

	// How the edge connects to the peer's https URLs, its callback URLs
	// and its url (ilp_egress): the TLS client certificate it presents
	// (cert_file, key_file), alone or besides a token or JWT, the CA that
	// verifies the peer's server (ca_file; default: the system's roots)
	// and the name checked in its certificate (server_name). Read at
	// provisioning. The peer's replies then go over connections of their
	// own.
	CallbackTLS *tlsclient.Config `json:"callback_tls,omitempty"`

	// The peer's ILP-over-HTTP endpoint, for ilp_egress: where the
	// fleet's packets to this peer are POSTed, with the edge's credential
	// above. An absolute http or https URL without userinfo or fragment;
	// accepts {env.*} placeholders. Unset: ilp_egress sends nothing to
	// this peer. (Named EgressURL in Go because the embedded
	// CallbackPolicy's URL is the callback URL.)
	EgressURL string `json:"url,omitempty"`

	// ilp-plugin-http's multi mode: the `%` in url's path is replaced,
	// for each packet, by the segment of its destination that follows
	// this ILP address (for g.fleet.kids, the packet to
	// g.fleet.kids.alice.x goes to url with alice). A destination not
	// under it, or whose segment is not letters, digits, `_` or `-`,
	// gets F02 from the edge and is not sent.
	URLSegmentAfter string `json:"url_segment_after,omitempty"`

	// What ilp_egress may send this peer, as Limits (max_packet_amount,
	// rate, throughput), on the way out: a Prepare beyond them gets the
	// same Reject an inbound one would (F08, T05, T04), from the edge,
	// and is not sent. Shared across edges on the store, as inbound
	// limits are. Unrelated to Limits, which bound what the peer sends.
	OutgoingLimits *Limits `json:"outgoing_limits,omitempty"`
}

// peer is a provisioned Peer: what the per-packet path needs, precomputed.
type peer struct {
	name         string
	nameHeader   []string // the header value, shared and never modified
	nameValue    any      // name boxed once, for vars and placeholders
	jwtKeys      [][]byte
	upstreamAuth []string     // nil: remove Authorization
	metrics      *peerMetrics // nil: metrics off
	limits       *peerLimits  // nil: none
	ildcpReply   []byte       // the Fulfill to its peer.config requests; nil: forward them
	routing      string       // routing_protocol: RoutingSticky, RoutingLocal or RoutingFanout
	store        *store.Store // the edge's shared store; nil: none
	async        *peerAsync
}

// Authentication failures, by reason. The 401 error names the reason only.
var (
	errNoCredentials = errors.New("no credentials")
	errUnknownToken  = errors.New("unknown token")
)

// authenticator finds the peer a request comes from.
type authenticator struct {
	tokens     map[[sha256.Size]byte]*tokenEntry
	certs      map[[sha256.Size]byte]*peer
	jwtPeers   []*peer
	jwtByName  map[string]*peer
	names      map[string]bool // every configured peer name
	jwtCache   *jwtCache
	leeway     time.Duration
	requireExp bool
	peerHeader string // canonical
}

type tokenEntry struct {
	token string
	peer  *peer
}

// newAuthenticator resolves the peers' secrets and indexes them. Two peers
// sharing a secret is an error: the edge could not tell them apart.
func newAuthenticator(cfgs []*Peer, repl *caddy.Replacer) (*authenticator, []*peer, error) {
	a := &authenticator{
		tokens:    make(map[[sha256.Size]byte]*tokenEntry),
		certs:     make(map[[sha256.Size]byte]*peer),
		jwtByName: make(map[string]*peer),
	}
	names := make(map[string]bool, len(cfgs))
	a.names = names
	jwtSecrets := make(map[string]string)
	peers := make([]*peer, 0, len(cfgs))
	for _, c := range cfgs {
		if c == nil || c.Name == "" {
			return nil, nil, errors.New("a peer has no name")
		}
		if names[c.Name] {
			return nil, nil, fmt.Errorf("peer %q: defined twice", c.Name)
		}
		names[c.Name] = true
		if len(c.Tokens)+len(c.JWTSecrets)+len(c.ClientCerts) == 0 {
			return nil, nil, fmt.Errorf("peer %q: no token, jwt_secret or client_cert", c.Name)
		}
		p := &peer{name: c.Name, nameHeader: []string{c.Name}, nameValue: c.Name}
		for i, raw := range c.Tokens {
			tok, err := resolveSecret(repl, raw)
			if err != nil {
				return nil, nil, fmt.Errorf("peer %q: token %d: %w", c.Name, i+1, err)
			}
			key := sha256.Sum256([]byte(tok))
			if other, dup := a.tokens[key]; dup {
				return nil, nil, fmt.Errorf("peer %q: token %d is also a token of peer %q", c.Name, i+1, other.peer.name)
			}
			a.tokens[key] = &tokenEntry{token: tok, peer: p}
		}
		for i, raw := range c.JWTSecrets {
			secret, err := resolveSecret(repl, raw)
			if err != nil {
				return nil, nil, fmt.Errorf("peer %q: jwt_secret %d: %w", c.Name, i+1, err)
			}
			if other, dup := jwtSecrets[secret]; dup {
				return nil, nil, fmt.Errorf("peer %q: jwt_secret %d is also a jwt_secret of peer %q", c.Name, i+1, other)
			}
			jwtSecrets[secret] = c.Name
			p.jwtKeys = append(p.jwtKeys, hmacKey(secret))
		}
		if len(p.jwtKeys) > 0 {
			a.jwtPeers = append(a.jwtPeers, p)
			a.jwtByName[p.name] = p
		}
		for _, fp := range c.ClientCerts {
			key, err := parseFingerprint(fp)
			if err != nil {
				return nil, nil, fmt.Errorf("peer %q: client_cert %q: %w", c.Name, fp, err)
			}
			if other, dup := a.certs[key]; dup {
				return nil, nil, fmt.Errorf("peer %q: client_cert %q is also a client_cert of peer %q", c.Name, fp, other.name)
			}
			a.certs[key] = p
		}
		if c.UpstreamToken != "" {
			tok, err := resolveSecret(repl, c.UpstreamToken)
			if err != nil {
				return nil, nil, fmt.Errorf("peer %q: upstream_token: %w", c.Name, err)
			}
			p.upstreamAuth = []string{"Bearer " + tok}
		}
		peers = append(peers, p)
	}
	a.jwtCache = newJWTCache(max(1024, 4*len(a.jwtPeers)))
	return a, peers, nil
}

// resolveSecret expands {env.*} and {file.*} placeholders. The error never
// contains the secret.
func resolveSecret(repl *caddy.Replacer, raw string) (string, error) {
	s, err := repl.ReplaceOrErr(raw, true, true)
	if err != nil {
		return "", fmt.Errorf("resolving placeholder: %w", err)
	}
	if strings.TrimSpace(s) == "" {
		return "", errors.New("empty secret")
	}
	return s, nil
}

func parseFingerprint(s string) ([sha256.Size]byte, error) {
	var key [sha256.Size]byte
	b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	if err != nil || len(b) != sha256.Size {
		return key, errors.New("not a hex SHA-256 fingerprint")
	}
	copy(key[:], b)
	return key, nil
}

// authenticate returns the peer that r comes from, or an error saying why
// none matched. It tries, in order: a verified TLS client certificate, a
// static token, a JWT.
func (a *authenticator) authenticate(r *http.Request) (*peer, error) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		if p := a.certs[sha256.Sum256(r.TLS.VerifiedChains[0][0].Raw)]; p != nil {
			return p, nil
		}
	}
	token := bearerToken(r.Header.Get("Authorization"))
	if token == "" {
		return nil, errNoCredentials
	}
	// Looking the token up by its SHA-256 makes the lookup O(1) in the
	// number of peers and independent of where a guess first differs from
	// a real token; the final compare is constant-time as well.
	if e := a.tokens[sha256.Sum256([]byte(token))]; e != nil &&
		subtle.ConstantTimeCompare([]byte(e.token), []byte(token)) == 1 {
		return e.peer, nil
	}
	if len(a.jwtPeers) == 0 || strings.Count(token, ".") != 2 {
		return nil, errUnknownToken
	}
	return a.authenticateJWT(token, firstValue(r.Header, a.peerHeader))
}

func (a *authenticator) authenticateJWT(token, claimedName string) (*peer, error) {
	at := now()
	if p := a.jwtCache.get(token, at); p != nil {
		return p, nil
	}
	jws, err := parseJWT(token)
	if err != nil {
		return nil, err
	}
	// ilp-plugin-http's JWTs carry no subject, so the secret that signed a
	// token is what identifies the peer. The peer-name header the plugin
	// always sends narrows the search to one peer when it names one; a
	// false claim simply fails.
	candidates := a.jwtPeers
	if p := a.jwtByName[claimedName]; p != nil {
		candidates = []*peer{p}
	}
	for _, p := range candidates {
		for _, key := range p.jwtKeys {
			payload, signed, err := jwtPayload(jws, key)
			if err != nil {
				return nil, err
			}
			if !signed {
				continue
			}
			// Claims are decoded only once a peer's secret vouches for them.
			claims, err := decodeJWTClaims(payload)
			if err != nil {
				return nil, err
			}
			until, err := claims.validAt(at, a.leeway, a.requireExp)
			if err != nil {
				return nil, err
			}
			a.jwtCache.put(token, p, until, at)
			return p, nil
		}
	}
	return nil, errJWTSignature
}

// bearerToken extracts the credential from an Authorization header value:
// "Bearer <t>" with the scheme in any case, or the raw value, which legacy
// ilp-plugin-http peers (secretToken, secret) send.
func bearerToken(h string) string {
	const scheme = "Bearer "
	if len(h) > len(scheme) && strings.EqualFold(h[:len(scheme)], scheme) {
		return strings.TrimSpace(h[len(scheme):])
	}
	return strings.TrimSpace(h)
}

// credentialKinds names the kinds of credential c has, never their
// values: for the provisioning log line.
func (c *Peer) credentialKinds() string {
	var kinds []string
	for _, k := range []struct {
		name string
		n    int
	}{{"token", len(c.Tokens)}, {"jwt_secret", len(c.JWTSecrets)}, {"client_cert", len(c.ClientCerts)}} {
		if k.n > 0 {
			kinds = append(kinds, k.name)
		}
	}
	if c.UpstreamToken != "" {
		kinds = append(kinds, "upstream_token")
	}
	return strings.Join(kinds, "+")
}
