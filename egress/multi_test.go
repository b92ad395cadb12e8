package egress

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestEgressMultiMode: with url_segment_after, the `%` in the peer's url
// path takes the destination's segment after that address, as
// ilp-plugin-http's multi mode does; a destination not under it, or whose
// segment is empty or has anything but letters, digits, _ and -, gets F02
// from the edge and nothing is sent.
func TestEgressMultiMode(t *testing.T) {
	p := startTestPeer(t, nil)
	c := bob(p.srv.URL + "/kids/%/ilp?key=k")
	c.URLSegmentAfter = "g.fleet.kids"
	e, g := testEdge(t), testEgress(t, c)
	sent := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.seen)
	}
	for _, c := range []struct{ dest, path string }{
		{"g.fleet.kids.alice.x", "/kids/alice/ilp"},
		{"g.fleet.kids.Bob_2-b", "/kids/Bob_2-b/ilp"},
	} {
		res := send(t, e, g, "/peers/bob/", ilptest.Prepare(c.dest, ttl))
		if res.err != nil || res.w.Code != http.StatusOK {
			t.Fatalf("%s: HTTP %d, %v", c.dest, res.w.Code, res.err)
		}
		if got := p.last(t).path; got != c.path {
			t.Errorf("%s went to %s, want %s", c.dest, got, c.path)
		}
	}
	n := sent()
	for _, dest := range []string{"g.fleet.other.alice", "g.fleet.kidsalice.x", "g.fleet.kids", "g.fleet.kids.a~b.x"} {
		send(t, e, g, "/peers/bob/", ilptest.Prepare(dest, ttl)).wantReject(t, "F02")
	}
	if sent() != n {
		t.Errorf("the peer got %d packets for destinations with no child", sent()-n)
	}
}

// TestParsePeerURLTemplate: the `%` must be one, in the path; the host
// and port are never a destination's to choose.
func TestParsePeerURLTemplate(t *testing.T) {
	for _, c := range []struct{ url, before, after, err string }{
		{"https://kids.example/%/ilp", "https://kids.example/", "/ilp", ""},
		{"http://127.0.0.1:7768/accounts/%?key=s", "http://127.0.0.1:7768/accounts/", "?key=s", ""},
		{"http://%.kids.example/ilp", "", "", "path"},
		{"http://kids.example:%/ilp", "", "", ""},
		{"http://kids.example/ilp?child=%", "", "", "path"},
		{"http://kids.example/%/%", "", "", "more than one"},
		{"http://kids.example/ilp", "", "", "needs a %"},
	} {
		_, before, after, err := handler.ParsePeerURLTemplate(c.url)
		switch {
		case c.before != "" && (err != nil || before != c.before || after != c.after):
			t.Errorf("%s: %q %q, %v; want %q %q", c.url, before, after, err, c.before, c.after)
		case c.before == "" && err == nil:
			t.Errorf("%s: accepted, want an error", c.url)
		case c.before == "" && c.err != "" && !strings.Contains(err.Error(), c.err):
			t.Errorf("%s: %v, want an error about %s", c.url, err, c.err)
		}
	}
}

// FuzzMultiURL: whatever the destination, the URL is the template with
// one segment of letters, digits, _ and - in place of the %, or an
// error; the host and the rest of the URL are never the destination's.
func FuzzMultiURL(f *testing.F) {
	for _, d := range []string{"g.fleet.kids.alice.x", "g.fleet.kids", "g.fleet.kids.a/b", "g.fleet.kids.../", "g.fleet.kids.%2e%2e"} {
		f.Add(d)
	}
	m := &multiURL{before: "https://kids.example/accounts/", rest: "/ilp?key=k", after: "g.fleet.kids."}
	f.Fuzz(func(t *testing.T, destination string) {
		u, err := m.url(destination)
		if err != nil {
			return
		}
		segment, ok := strings.CutPrefix(u, m.before)
		if segment, ok = strings.CutSuffix(segment, m.rest); !ok || segment == "" {
			t.Fatalf("%q gave %q, not the template", destination, u)
		}
		for _, c := range segment {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
				t.Fatalf("%q gave the segment %q", destination, segment)
			}
		}
	})
}

// FuzzParsePeerURLTemplate: a template accepted has its % in the path
// only: the host is the same whatever replaces it.
func FuzzParsePeerURLTemplate(f *testing.F) {
	for _, s := range []string{"https://kids.example/%/ilp", "http://%.kids.example/", "http://kids.example:%/", "http://k/?a=%", "http://[::1]/%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, before, after, err := handler.ParsePeerURLTemplate(s)
		if err != nil {
			return
		}
		for _, segment := range []string{"a", "zz-9_"} {
			got, err := url.Parse(before + segment + after)
			if err != nil || got.Host != u.Host || got.Scheme != u.Scheme {
				t.Fatalf("%q with %q: %v (host %q), want host %q", s, segment, err, got.Host, u.Host)
			}
		}
	})
}
