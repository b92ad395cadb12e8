package h1

import (
	"errors"
	"strings"
	"testing"
)

// testLimits are small enough for the table to cross each.
var testLimits = Limits{MaxHeaderBytes: 1024, MaxFields: 8, MaxTargetBytes: 64, MaxBodyBytes: 100}.withDefaults()

// requestCase is a request, the status it gets (200 is accepted: the
// test handler answers 200) and whether the connection closes after it.
type requestCase struct {
	name   string
	in     string
	status int
	closes bool // the connection closes after the answer
}

const ok = 200

// requestCases covers each rule of doc.go's table, the smuggling
// variants, and odd but valid requests.
var requestCases = []requestCase{
	{"ilp post", "POST / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer t\r\nContent-Type: application/octet-stream\r\nContent-Length: 3\r\n\r\nabc", ok, false},
	{"http/1.0 without host", "GET / HTTP/1.0\r\n\r\n", ok, true},
	{"http/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", ok, false},
	{"connection close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", ok, true},
	{"empty host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", ok, false},
	{"host with port", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", ok, false},
	{"unicode value kept", "GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9\r\n\r\n", ok, false},
	{"tab in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\r\n\r\n", ok, false},
	{"asterisk-form options", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", ok, false},
	{"unknown method token", "FOO /x?y=%41 HTTP/1.1\r\nHost: a\r\n\r\n", ok, false},
	{"content-length leading zeros", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 003\r\n\r\nabc", ok, false},
	{"expect 100-continue", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nx", ok, false},

	{"bare LF request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400, true},
	{"bare LF field", "GET / HTTP/1.1\r\nHost: a\n\r\n", 400, true},
	{"bare LF end of head", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400, true},
	{"bare CR", "GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", 400, true},
	{"leading empty line", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, true},
	{"two spaces in request line", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, true},
	{"trailing space in request line", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, true},
	{"tab as separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, true},
	{"missing version", "GET /\r\nHost: a\r\n\r\n", 400, true},
	{"bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, true},
	{"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400, true},
	{"version garbage", "GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400, true},
	{"absolute-form", "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, true},
	{"asterisk-form with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, true},
	{"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 400, true},
	{"CONNECT origin-form", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 400, true},
	{"bad percent-escape", "GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400, true},
	{"non-ascii target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400, true},
	{"fragment in target", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400, true},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400, true},
	{"space before first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, true},
	{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, true},
	{"TE with space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc", 400, true},
	{"empty field name", "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", 400, true},
	{"field without colon", "GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n", 400, true},
	{"unicode field name", "GET / HTTP/1.1\r\nHost: a\r\nX-caf\xc3\xa9: 1\r\n\r\n", 400, true},
	{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400, true},
	{"VT in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x0bb\r\n\r\n", 400, true},
	{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400, true},
	{"NUL in name", "GET / HTTP/1.1\r\nHost: a\r\nX\x00: b\r\n\r\n", 400, true},
	{"no host in 1.1", "GET / HTTP/1.1\r\n\r\n", 400, true},
	{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, true},
	{"two hosts in 1.0", "GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", 400, true},
	{"bad host", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, true},
	{"content-length sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", 400, true},
	{"content-length list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400, true},
	{"content-length hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\nabc", 400, true},
	{"content-length empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400, true},
	{"content-length overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400, true},
	{"content-length repeated equal", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400, true},
	{"content-length repeated differing", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, true},
	{"CL.TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX", 400, true},
	{"TE.CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", 400, true},
	{"TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400, true},
	{"TE chunked then gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400, true},
	{"TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, true},
	{"TE with tab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\nContent-Length: 3\r\n\r\nabc", 400, true},
	{"TE chunked alone", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 411, true},
	{"TE Chunked in gzip list", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n0\r\n\r\n", 411, true},
	{"body over limit", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n", 413, true},
	{"target over limit", "GET /" + strings.Repeat("a", 64) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414, true},
	{"target over limit, line unfinished", "GET /" + strings.Repeat("a", 70), 414, true},
	{"expect other", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx", 417, true},
	{"head over limit", "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", 1024) + "\r\n\r\n", 431, true},
	{"head over limit, unfinished", "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", 1024), 431, true},
	{"too many fields", "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: 1\r\n", 8) + "\r\n", 431, true},
	{"http/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505, true},
	{"http/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, true},
	{"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, true},
}

// parseStatus is the status the parser alone gives in: 200 when it
// accepts, -1 when it wants more bytes.
func parseStatus(in string) int {
	var r Request
	n, err := r.ParseHead([]byte(in), testLimits)
	var e *Error
	switch {
	case errors.Is(err, ErrIncomplete):
		return -1
	case errors.As(err, &e):
		return e.Status
	case err != nil || n <= 0:
		return -2
	}
	return ok
}

func TestParseHeadTable(t *testing.T) {
	if len(requestCases) < 30 {
		t.Fatalf("only %d cases", len(requestCases))
	}
	for _, tc := range requestCases {
		if got := parseStatus(tc.in); got != tc.status {
			t.Errorf("%s: %q: got %d, want %d", tc.name, tc.in, got, tc.status)
		}
	}
}

func TestParseHeadFields(t *testing.T) {
	in := "POST /ilp?x=1 HTTP/1.1\r\nhost: edge\r\nAuthorization:  Bearer tok \r\nILP-Peer-Name: alice\r\n" +
		"X: 1\r\nx: 2\r\nContent-Length: 3\r\nConnection: Keep-Alive, close\r\n\r\nabcGET"
	var r Request
	n, err := r.ParseHead([]byte(in), testLimits)
	if err != nil {
		t.Fatal(err)
	}
	if got := in[n:]; got != "abcGET" {
		t.Errorf("after the head: %q", got)
	}
	checks := []struct{ got, want string }{
		{string(r.Method), "POST"},
		{string(r.Target), "/ilp?x=1"},
		{string(r.Host()), "edge"},
		{string(r.Header("AUTHORIZATION")), "Bearer tok"},
		{string(r.Header("ilp-peer-name")), "alice"},
		{string(r.Header("x")), "1"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	if r.ContentLength != 3 || r.ProtoMinor != 1 || r.KeepAlive() || len(r.Fields()) != 7 {
		t.Errorf("length %d, minor %d, keep-alive %v, %d fields", r.ContentLength, r.ProtoMinor, r.KeepAlive(), len(r.Fields()))
	}
	if _, ok := r.Lookup("ILP-Destination"); ok {
		t.Error("found a field that is not there")
	}
}

func TestParseHeadIncremental(t *testing.T) {
	in := requestCases[0].in
	head := strings.Index(in, "\r\n\r\n") + 4
	var r Request
	for i := range head {
		if n, err := r.ParseHead([]byte(in[:i]), testLimits); err != ErrIncomplete {
			t.Fatalf("after %d bytes: %d, %v", i, n, err)
		}
	}
	if n, err := r.ParseHead([]byte(in[:head]), testLimits); n != head || err != nil {
		t.Fatalf("whole head: %d, %v", n, err)
	}
}

func TestParseHeadHTTP10KeepAlive(t *testing.T) {
	for in, want := range map[string]bool{
		"GET / HTTP/1.0\r\n\r\n":                                    false,
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n":          true,
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n":                         true,
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n":    false,
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: x, CLOSE\r\n\r\n": false,
	} {
		var r Request
		if _, err := r.ParseHead([]byte(in), testLimits); err != nil || r.KeepAlive() != want {
			t.Errorf("%q: keep-alive %v (%v), want %v", in, r.KeepAlive(), err, want)
		}
	}
}
