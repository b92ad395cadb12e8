package async

import (
	"errors"
	"testing"
)

func TestCallbackPolicy(t *testing.T) {
	p := CallbackPolicy{URL: "https://peer.example/ilp/callback", Prefixes: []string{"https://cb.peer.example/replies/", "http://10.0.5.1:8080/ilp/"}}
	if err := p.Provision(); err != nil {
		t.Fatal(err)
	}
	for header, want := range map[string]string{
		"":                                  "https://peer.example/ilp/callback", // out of band
		"https://peer.example/ilp/callback": "https://peer.example/ilp/callback",
		"https://PEER.example/ilp/callback": "https://peer.example/ilp/callback",
		"https://cb.peer.example/replies/":  "https://cb.peer.example/replies/",
		"https://cb.peer.example/replies/node-3/x?y=1": "https://cb.peer.example/replies/node-3/x?y=1",
		"http://10.0.5.1:8080/ilp/cb":                  "http://10.0.5.1:8080/ilp/cb",
	} {
		got, err := p.Resolve(header)
		if err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", header, got, err, want)
		}
	}
	for header, want := range map[string]error{
		"https://peer.example/ilp/callback2":                 ErrCallbackRefused,
		"https://peer.example/ilp/callback?x=1":              ErrCallbackRefused,
		"http://peer.example/ilp/callback":                   ErrCallbackRefused, // scheme
		"https://cb.peer.example/replies":                    ErrCallbackRefused, // not under the directory
		"https://cb.peer.example/repliesx/":                  ErrCallbackRefused,
		"https://cb.peer.example.evil.test/replies/":         ErrCallbackRefused,
		"https://cb.peer.example:8443/replies/":              ErrCallbackRefused, // port
		"http://10.0.5.1:8081/ilp/cb":                        ErrCallbackRefused,
		"http://169.254.169.254/latest/meta-data/":           ErrCallbackRefused,
		"https://cb.peer.example/replies/../admin":           ErrCallbackMalforms,
		"https://cb.peer.example/replies/%2e%2e/admin":       ErrCallbackMalforms,
		"https://cb.peer.example/replies/..%2fadmin":         ErrCallbackMalforms,
		"https://user:pw@cb.peer.example/replies/":           ErrCallbackMalforms,
		"https://cb.peer.example/replies/#frag":              ErrCallbackMalforms,
		"ftp://cb.peer.example/replies/":                     ErrCallbackMalforms,
		"/replies/":                                          ErrCallbackMalforms,
		"https://cb.peer.example/replies/\\..\\admin":        ErrCallbackMalforms,
		"https://cb.peer.example/replies/ x":                 ErrCallbackMalforms,
		"https://cb.peer.example/replies/./../../etc/passwd": ErrCallbackMalforms,
	} {
		if got, err := p.Resolve(header); !errors.Is(err, want) {
			t.Errorf("%q: %q, %v; want %v", header, got, err, want)
		}
	}

	// A bare origin is its root, "/"; hosts are compared whole, so it is
	// no prefix of cb.peer.example.evil.test.
	none := CallbackPolicy{Prefixes: []string{"https://cb.peer.example"}}
	if err := none.Provision(); err != nil {
		t.Fatal(err)
	}
	if _, err := none.Resolve(""); !errors.Is(err, ErrNoCallback) {
		t.Errorf("no header, no callback_url: %v", err)
	}
	if _, err := none.Resolve("https://cb.peer.example.evil.test/"); !errors.Is(err, ErrCallbackRefused) {
		t.Errorf("another host under a bare origin's prefix: %v", err)
	}
	if got, err := none.Resolve("https://cb.peer.example/x"); err != nil {
		t.Errorf("under a bare origin: %q, %v", got, err)
	}
	for _, bad := range []CallbackPolicy{
		{Prefixes: []string{"https://cb.peer.example/replies"}},
		{URL: "peer.example/cb"},
	} {
		if err := bad.Provision(); err == nil {
			t.Errorf("%+v provisioned", bad)
		}
	}
}

// FuzzCallbackPolicy: whatever Resolve returns is the configured URL or
// under a configured prefix, on its host, without dot segments.
func FuzzCallbackPolicy(f *testing.F) {
	p := CallbackPolicy{URL: "https://peer.example/cb", Prefixes: []string{"https://cb.peer.example/replies/"}}
	if err := p.Provision(); err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"https://cb.peer.example/replies/a", "https://peer.example/cb", "https://cb.peer.example/replies/../x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := p.Resolve(s)
		if err != nil {
			return
		}
		u, perr := parseCallback(got)
		if perr != nil {
			t.Fatalf("%q resolved to %q, which does not parse: %v", s, got, perr)
		}
		if got != "https://peer.example/cb" && (u.Host != "cb.peer.example" || u.Scheme != "https" || len(u.EscapedPath()) < len("/replies/") || u.EscapedPath()[:len("/replies/")] != "/replies/") {
			t.Fatalf("%q resolved to %q, outside the policy", s, got)
		}
	})
}
