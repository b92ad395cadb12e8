package frontdoor

import (
	"context"
	"net/http"
	"reflect"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/ilp-edge/caddy-ilp/frontdoor/h1"
	"github.com/ilp-edge/caddy-ilp/frontdoor/h2"
)

func fields[F ~struct{ Name, Value []byte }](kv ...string) []F {
	var fs []F
	for i := 0; i < len(kv); i += 2 {
		fs = append(fs, F{Name: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return fs
}

// TestAddFields checks the header an exchange builds from h1's and h2's
// fields: canonical keys, repeated fields in order, and values that share
// one string without sharing a slice, so that a handler appending to one
// field's values does not overwrite the next field's.
func TestAddFields(t *testing.T) {
	for name, add := range map[string]func(*exchange){
		"h1": func(ex *exchange) {
			addFields(ex, fields[h1.Field]("x-a", "one", "Authorization", "Bearer t", "X-A", "two", "ilp-destination", "g.x"))
		},
		"h2": func(ex *exchange) {
			addFields(ex, fields[h2.Field]("x-a", "one", "authorization", "Bearer t", "x-a", "two", "ilp-destination", "g.x"))
		},
	} {
		t.Run(name, func(t *testing.T) {
			ex := exchangePool.Get().(*exchange)
			defer ex.release()
			add(ex)
			want := http.Header{"X-A": {"one", "two"}, "Authorization": {"Bearer t"}, "Ilp-Destination": {"g.x"}}
			if !reflect.DeepEqual(ex.header, want) {
				t.Fatalf("header %v, want %v", ex.header, want)
			}
			ex.header["Authorization"] = append(ex.header["Authorization"], "appended")
			if got := ex.header["Ilp-Destination"]; !reflect.DeepEqual(got, []string{"g.x"}) {
				t.Fatalf("after an append to Authorization, Ilp-Destination is %q", got)
			}
		})
	}
}

// TestCanonicalKey checks that the names found among the known keys, in
// any case, and the others get the key net/http would give them.
func TestCanonicalKey(t *testing.T) {
	names := []string{"host", "HOST", "authorization", "ILP-Destination", "ilp-peer-name", "content-type",
		"CONTENT-LENGTH", "accept", "prefer", "x-a", "X-Forwarded-For", "tracestate", "traceparent-x",
		"a-very-long-field-name-indeed", "content_type"}
	for _, row := range knownKeys {
		names = append(names, row...)
	}
	for _, name := range names {
		if got, want := canonicalKey([]byte(name)), http.CanonicalHeaderKey(name); got != want {
			t.Errorf("canonicalKey(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestExchangeReuse checks that an exchange reset after a request gives
// the handlers of the next one a request with nothing of the one before,
// and with the context values they read.
func TestExchangeReuse(t *testing.T) {
	const remote = "127.0.0.1:4000"
	ex := exchangePool.Get().(*exchange)
	req := ex.request([]byte("POST"), []byte("/ilp?x=1"), []byte("edge"), remote, nil, []byte("body"), context.Background())
	addFields(ex, fields[h1.Field]("authorization", "Bearer t"))
	caddyhttp.SetVar(req.Context(), "ilp_peer", "alice")
	req.Header = nil // as a handler might
	ex.reset()

	req = ex.request([]byte("GET"), []byte("/"), []byte("edge2"), remote, nil, nil, context.Background())
	defer ex.release()
	if req.Method != http.MethodGet || req.URL.Path != "/" || req.URL.RawQuery != "" || req.Host != "edge2" ||
		req.RemoteAddr != "127.0.0.1:4000" || req.ContentLength != 0 || len(req.Header) != 0 {
		t.Fatalf("reused request: %s %v host %q remote %q length %d header %v",
			req.Method, req.URL, req.Host, req.RemoteAddr, req.ContentLength, req.Header)
	}
	if v := caddyhttp.GetVar(req.Context(), "ilp_peer"); v != nil {
		t.Fatalf("var ilp_peer %v left from the request before", v)
	}
	// Without a replacer, none: not a nil *caddy.Replacer, which
	// ilp_edge's type assertion would take and then call.
	if v := req.Context().Value(caddy.ReplacerCtxKey); v != nil {
		t.Fatalf("replacer %#v in the context of a request given none", v)
	}
	ex.ctx.repl = caddy.NewEmptyReplacer()
	if _, ok := req.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); !ok {
		t.Fatal("the replacer given is not in the request's context")
	}
}
