package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// readReplyCase is one connector reply and what readReply must make of
// it. The cases also seed the fuzz targets.
type readReplyCase struct {
	name, raw string
	status    int
	body      string
	keepAlive bool
	rest      string // what must be left unread: the next reply's bytes
	err       bool
}

var readReplyCases = []readReplyCase{
	{name: "content-length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", status: 200, body: "abc", keepAlive: true},
	{name: "header names in any case", raw: "HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh: 2\r\n\r\nab", status: 200, body: "ab", keepAlive: true},
	{name: "connection close", raw: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx", status: 200, body: "x"},
	{name: "HTTP/1.0 closes", raw: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", status: 200, body: "x"},
	{name: "HTTP/1.0 keep-alive", raw: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\nx", status: 200, body: "x", keepAlive: true},
	{name: "chunked", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n", status: 200, body: "abc", keepAlive: true},
	{name: "to the end of the connection", raw: "HTTP/1.1 200 OK\r\n\r\nabc", status: 200, body: "abc"},
	{name: "interim 100 first", raw: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", status: 200, body: "x", keepAlive: true},
	{name: "error status relayed", raw: "HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy", status: 503, body: "busy", keepAlive: true},
	{name: "body cut short", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", err: true},
	{name: "no reply at all", raw: "", err: true},
	{name: "not HTTP", raw: "SSH-2.0-OpenSSH\r\n\r\n", err: true},
	{name: "bad status", raw: "HTTP/1.1 2x0 OK\r\n\r\n", err: true},
	{name: "header without colon", raw: "HTTP/1.1 200 OK\r\nbroken\r\n\r\n", err: true},
	{name: "negative length", raw: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", err: true},
	{name: "conflicting lengths", raw: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", err: true},
	{name: "gzip transfer coding", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", err: true},
	{name: "too large", raw: "HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n", err: true},
	{name: "too large unannounced", raw: "HTTP/1.1 200 OK\r\n\r\n" + strings.Repeat("x", handler.MaxReplySize+1), err: true},
	{name: "header line too long", raw: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("x", 5000) + "\r\n\r\n", err: true},

	// Replies without a body by definition (RFC 9112 §6.3) are complete
	// after their header section, whatever it says.
	{name: "204 has no body", raw: "HTTP/1.1 204 No Content\r\n\r\n", status: 204, keepAlive: true},
	{name: "304 has no body", raw: "HTTP/1.1 304 Not Modified\r\n\r\n", status: 304, keepAlive: true},
	{name: "204 then the next reply", raw: "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", status: 204, keepAlive: true, rest: "HTTP/1.1 200 OK\r\n\r\n"},
	{name: "304 ignores Content-Length", raw: "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", status: 304, keepAlive: true},
	{name: "204 ignores chunked", raw: "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", status: 204, keepAlive: true},
	{name: "204 with Connection close", raw: "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", status: 204},
	{name: "interim 100 then 204", raw: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", status: 204, keepAlive: true},
	{name: "content-length zero", raw: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", status: 200, keepAlive: true},
	{name: "101 ends the exchange", raw: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nother protocol", status: 101, rest: "other protocol"},

	{name: "content-length leaves the next reply", raw: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 204 No Content\r\n\r\n", status: 200, body: "x", keepAlive: true, rest: "HTTP/1.1 204 No Content\r\n\r\n"},
	{name: "interim replies' headers do not frame", raw: "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\nContent-Length: 9\r\nConnection: close\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", status: 200, body: "x", keepAlive: true},
	{name: "interim reply in HTTP/1.0", raw: "HTTP/1.0 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", status: 200, body: "x", keepAlive: true},

	// A chunked reply ends after its trailer section.
	{name: "chunked leaves the next reply", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\nNEXT", status: 200, body: "a", keepAlive: true, rest: "NEXT"},
	{name: "chunked with trailer fields", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n1\r\na\r\n0\r\nX-Sum: 1\r\nX-More: 2\r\n\r\nNEXT", status: 200, body: "a", keepAlive: true, rest: "NEXT"},
	{name: "chunk extensions", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nab\r\n0;z\r\n\r\n", status: 200, body: "ab", keepAlive: true},
	{name: "chunk size upper case hex", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n", status: 200, body: "0123456789", keepAlive: true},
	{name: "chunk size with spaces after", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1 \t\r\na\r\n0\r\n\r\n", status: 200, body: "a", keepAlive: true},
	{name: "chunk size with a space before", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n 1\r\na\r\n0\r\n\r\n", err: true},
	{name: "chunk size with a space before its extension", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1 ;x\r\na\r\n0\r\n\r\n", err: true},
	{name: "chunk size not hex", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nx\r\na\r\n0\r\n\r\n", err: true},
	{name: "chunk data without CRLF", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n", err: true},
	{name: "chunk line with bare LF", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\na\r\n0\r\n\r\n", err: true},
	{name: "chunked cut before the trailer", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n", err: true},
	{name: "trailer field without colon", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbroken\r\n\r\n", err: true},
	{name: "trailer line with bare LF", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\r\n", err: true},
	{name: "trailer section over 4 KiB", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + strings.Repeat("X: "+strings.Repeat("y", 1000)+"\r\n", 5) + "\r\n", err: true},
	{name: "chunk lines longer than their data", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("1;"+strings.Repeat("x", 4000)+"\r\na\r\n", 5) + "0\r\n\r\n", err: true},
	{name: "Trailer names Content-Length", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X, content-length\r\n\r\n0\r\n\r\n", err: true},
	{name: "chunked too large", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10001\r\n" + strings.Repeat("x", handler.MaxReplySize+1) + "\r\n0\r\n\r\n", err: true},
	{name: "chunked too large in chunks", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("8000\r\n"+strings.Repeat("x", 0x8000)+"\r\n", 3) + "0\r\n\r\n", err: true},

	// Connection is a list of tokens, in any case (RFC 9110 §7.6.1).
	{name: "Connection Close", raw: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: Close\r\n\r\n", status: 200},
	{name: "close in a Connection list", raw: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive, close\r\n\r\n", status: 200},
	{name: "close in a second Connection field", raw: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n", status: 200},
	{name: "HTTP/1.0 keep-alive in a list", raw: "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: Keep-Alive, Upgrade\r\n\r\n", status: 200, keepAlive: true},
	{name: "HTTP/1.0 keep-alive and close", raw: "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive,close\r\n\r\n", status: 200},
	{name: "Connection token is not a prefix", raw: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: closed\r\n\r\n", status: 200, keepAlive: true},

	// Framing as net/http reads it, or refused where it is stricter (the
	// list is in FuzzReadReplyMatchesNetHTTP).
	{name: "signed length", raw: "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx", err: true},
	{name: "empty length", raw: "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", err: true},
	{name: "length as a list", raw: "HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\nx", err: true},
	{name: "repeated length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", err: true},
	{name: "chunked and length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n", err: true},
	{name: "two Transfer-Encoding fields", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", err: true},
	{name: "chunked in HTTP/1.0", raw: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", err: true},
	{name: "length with trailing whitespace", raw: "HTTP/1.1 200 OK\r\nContent-Length: 1 \t\r\n\r\nx", status: 200, body: "x", keepAlive: true},
	{name: "bare LF line ends", raw: "HTTP/1.1 200 OK\nContent-Length: 1\n\nx", status: 200, body: "x", keepAlive: true},
	{name: "status without reason", raw: "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", status: 200, keepAlive: true},
	{name: "spaces before the status", raw: "HTTP/1.1   200 OK\r\nContent-Length: 0\r\n\r\n", status: 200, keepAlive: true},
	{name: "status glued to the reason", raw: "HTTP/1.1 200OK\r\nContent-Length: 0\r\n\r\n", err: true},
	{name: "status followed by CR", raw: "HTTP/1.1 200\r\r\nContent-Length: 0\r\n\r\n", err: true},
	{name: "status code under 100", raw: "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n", err: true},
	{name: "unknown minor version", raw: "HTTP/1.x 200 OK\r\nContent-Length: 0\r\n\r\n", err: true},
	{name: "HTTP/2.0 status line", raw: "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", err: true},
	{name: "CR line does not end the header", raw: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\r\nx", err: true},
	{name: "CR inside a value", raw: "HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n", err: true},
	{name: "CR at the end of a value", raw: "HTTP/1.1 200 OK\r\nX: a\r\r\nContent-Length: 0\r\n\r\n", err: true},
	{name: "CR then space at the end of a value", raw: "HTTP/1.0 200 \n0:\r \n\n", err: true},
	{name: "control byte in a value", raw: "HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n", err: true},
	{name: "space before the colon", raw: "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\nx", err: true},
	{name: "field name not a token", raw: "HTTP/1.1 200 OK\r\nX(y): 1\r\nContent-Length: 0\r\n\r\n", err: true},
	{name: "obs-fold", raw: "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n", err: true},
	{name: "obs-fold of a framing field", raw: "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding:\n chunked\r\n\r\n", err: true},
	{name: "endless interim replies", raw: strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", handler.MaxReplySize/25+1), err: true},
}

func TestReadReply(t *testing.T) {
	for _, tc := range readReplyCases {
		t.Run(tc.name, func(t *testing.T) {
			r := strings.NewReader(tc.raw)
			br := bufio.NewReaderSize(r, 4096)
			reply, keepAlive, err := readReply(br, make([]byte, 0, 16))
			if tc.err {
				if err == nil {
					t.Fatalf("no error; got %d %q", reply.status, reply.body)
				}
				if !errors.Is(err, errMalformedReply) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("error %v is neither a malformed reply nor a cut one", err)
				}
				return
			}
			if err != nil || reply.status != tc.status || string(reply.body) != tc.body || keepAlive != tc.keepAlive {
				t.Errorf("got %d %q keepAlive=%v err=%v; want %d %q keepAlive=%v",
					reply.status, reply.body, keepAlive, err, tc.status, tc.body, tc.keepAlive)
			}
			if rest := unread(br, r); rest != tc.rest {
				t.Errorf("left %q unread, want %q", rest, tc.rest)
			}
		})
	}
}

func TestReadReplyRefusesFoldsAsSuch(t *testing.T) {
	// A field whose value is folded onto the next line is refused for the
	// fold, whatever its first line says: FuzzReadReplyEditsMatchNetHTTP
	// found a refusal for a bad Transfer-Encoding that net/http reads.
	for _, raw := range []string{
		"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding:\n chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length:\r\n 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length:\r\n\t1\r\n\r\nx",
	} {
		_, _, err := readReply(bufio.NewReader(strings.NewReader(raw)), nil)
		if !errors.Is(err, errObsFold) {
			t.Errorf("%q: error %v, want %v", raw, err, errObsFold)
		}
	}
}

// unread returns what readReply left of the input: in br's buffer and
// not yet read from r.
func unread(br *bufio.Reader, r io.Reader) string {
	b, _ := br.Peek(br.Buffered())
	more, _ := io.ReadAll(r)
	return string(b) + string(more)
}

// countingReader is a 10 MB connector reply that counts the bytes taken
// from it: head, then fill over and over.
type countingReader struct {
	head []byte
	fill []byte
	off  int // in fill
	n    int
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.n >= 10<<20 {
		return 0, io.EOF
	}
	n := copy(p, r.head)
	r.head = r.head[n:]
	for n < len(p) {
		m := copy(p[n:], r.fill[r.off:])
		n += m
		r.off = (r.off + m) % len(r.fill)
	}
	r.n += n
	return n, nil
}

func TestReadReplyReadsNoMoreThanTheLimit(t *testing.T) {
	// 10 MB replies: each is refused having read at most limit bytes,
	// plus what the 4096-byte reader buffers ahead.
	for _, tc := range []struct {
		name, head, fill string
		limit            int
	}{
		{"unannounced", "HTTP/1.1 200 OK\r\n\r\n", "x", handler.MaxReplySize + 1},
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n", "x", 0},
		{"one chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n989680\r\n", "x", 0},
		{"many chunks", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "4\r\nxxxx\r\n", handler.MaxReplySize / 4 * 10},
		{"endless interim replies", "", "HTTP/1.1 100 Continue\r\n\r\n", handler.MaxReplySize},
		{"endless header", "HTTP/1.1 200 OK\r\n", "X: y\r\n", handler.MaxReplySize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &countingReader{head: []byte(tc.head), fill: []byte(tc.fill)}
			_, _, err := readReply(bufio.NewReaderSize(r, 4096), make([]byte, 0, 16))
			if !errors.Is(err, errMalformedReply) {
				t.Fatalf("error %v, want a malformed reply", err)
			}
			if max := len(tc.head) + tc.limit + 4096; r.n > max {
				t.Errorf("read %d bytes, want at most %d", r.n, max)
			}
		})
	}
	t.Run("readAllInto", func(t *testing.T) {
		r := &countingReader{fill: []byte("x")}
		buf, err := readAllInto(r, nil)
		if !errors.Is(err, errReplyTooLarge) || r.n > handler.MaxReplySize+1 || cap(buf) > 2*handler.MaxReplySize {
			t.Errorf("read %d bytes into a %d-byte buffer, err %v; want at most %d bytes and %v",
				r.n, cap(buf), err, handler.MaxReplySize+1, errReplyTooLarge)
		}
	})
}

func TestWriteRequest(t *testing.T) {
	h := http.Header{
		"Ilp-Peer-Name": {"alice"}, "Authorization": {"Bearer up"},
		"Connection": {"keep-alive"}, "Content-Length": {"999"}, "Host": {"evil"},
	}
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	writeRequest(w, &h1Request{path: "/ilp", host: "10.0.0.1:7768", header: h, body: []byte("PKT")})
	w.Flush()
	req, err := http.ReadRequest(bufio.NewReader(&buf))
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 3)
	req.Body.Read(body)
	if req.Method != "POST" || req.URL.Path != "/ilp" || req.Host != "10.0.0.1:7768" || req.ContentLength != 3 ||
		string(body) != "PKT" || req.Header.Get("Ilp-Peer-Name") != "alice" || req.Header.Get("Authorization") != "Bearer up" ||
		req.Header.Get("Connection") != "" {
		t.Errorf("backend would read %s %s host=%s len=%d body=%q headers=%v", req.Method, req.URL, req.Host, req.ContentLength, body, req.Header)
	}
}

// TestConnectionFieldsNotForwarded: fields the peer's Connection header
// names are hop-by-hop and do not reach the connector, also when
// ilp_proxy runs without ilp_edge (handler.ReadPacket drops them).
func TestConnectionFieldsNotForwarded(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.Write(ilptest.Fulfill(nil))
	}))
	t.Cleanup(srv.Close)
	p := testProxy(t, nil, srv.URL)
	r := newRequest(ilptest.Prepare("g.usd.x", time.Minute))
	r.Header = http.Header{
		"Ilp-Peer-Name": {"alice"}, "Connection": {"close, X-Hop", " x-other "}, "X-Hop": {"1"},
		"X-Other": {"2"}, "X-Kept": {"3"},
	}
	if err := p.ServeHTTP(httptest.NewRecorder(), r, nil); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Connection", "X-Hop", "X-Other"} {
		if v, ok := got[k]; ok {
			t.Errorf("%s: %q forwarded; the Connection header names it hop-by-hop", k, v)
		}
	}
	if got.Get("X-Kept") != "3" || got.Get("Ilp-Peer-Name") != "alice" {
		t.Errorf("headers %v, want X-Kept and Ilp-Peer-Name forwarded", got)
	}
}

// serverWriter writes like net/http's server, which takes an empty
// write after a 204 or 304; httptest's recorder refuses it.
type serverWriter struct{ *httptest.ResponseRecorder }

func (w serverWriter) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	return w.ResponseRecorder.Write(b)
}

func TestWriteRequestAllocatesNothing(t *testing.T) {
	for _, h := range []http.Header{
		{"Ilp-Peer-Name": {"alice"}, "Authorization": {"Bearer up"}, "Content-Type": {"application/octet-stream"}},
		{"Ilp-Peer-Name": {"alice"}, "Connection": {"keep-alive, X-Hop"}, "X-Hop": {"1"}},
	} {
		req := &h1Request{path: "/", host: "c:1", header: h, body: []byte("PKT")}
		w := bufio.NewWriterSize(io.Discard, 4096)
		if n := testing.AllocsPerRun(100, func() { writeRequest(w, req); w.Flush() }); n != 0 {
			t.Errorf("%d allocations writing a request with %v", int(n), h)
		}
	}
}

// rawConnector is a connector on loopback that speaks HTTP/1.1 by hand:
// it answers the n-th request on its c-th connection (both from 0) with
// reply(c, n), which may be anything.
type rawConnector struct {
	ln    net.Listener
	conns atomic.Int32 // connections accepted
	reqs  atomic.Int32 // requests read
}

func startRawConnector(t *testing.T, reply func(c, n int) string) *rawConnector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &rawConnector{ln: ln}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, conn)
			mu.Unlock()
			c := int(rc.conns.Add(1)) - 1
			wg.Go(func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for n := 0; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					rc.reqs.Add(1)
					if _, err := io.WriteString(conn, reply(c, n)); err != nil {
						return
					}
				}
			})
		}
	})
	return rc
}

func (rc *rawConnector) addr() string { return rc.ln.Addr().String() }

// fulfillReply is a Fulfill with data in a Content-Length reply.
func fulfillReply(data string) string {
	f := ilptest.Fulfill([]byte(data))
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(f), f)
}

// chunkedFulfillReply is a Fulfill with data in a chunked reply with a
// trailer field, as a streaming connector may send it.
func chunkedFulfillReply(data string) string {
	f := ilptest.Fulfill([]byte(data))
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n%x\r\n%s\r\n0\r\nX-Sum: 1\r\n\r\n", len(f), f)
}

func TestH1NoBodyRepliesAnsweredAtOnce(t *testing.T) {
	for _, raw := range []string{
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	} {
		t.Run(strings.Fields(raw)[1], func(t *testing.T) {
			// The stand-in keeps the connection open: a reply read to the
			// end of the connection would wait until the packet expires.
			rc := startRawConnector(t, func(int, int) string { return raw })
			p := testProxy(t, nil, "http://"+rc.addr())
			want, _ := strconv.Atoi(strings.Fields(raw[strings.LastIndex(raw, "HTTP/"):])[1])
			for range 2 {
				start := time.Now()
				r := newRequest(ilptest.Prepare("g.usd.bob", 2*time.Second))
				ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
				defer cancel()
				w := httptest.NewRecorder()
				err := p.ServeHTTP(serverWriter{w}, r.WithContext(ctx), nil)
				if err != nil || w.Code != want || w.Body.Len() != 0 {
					t.Fatalf("HTTP %d %q, error %v after %v; want %d at once", w.Code, w.Body.Bytes(), err, time.Since(start), want)
				}
			}
			if n := rc.conns.Load(); n != 1 {
				t.Errorf("%d connections for 2 packets, want 1 reused", n)
			}
		})
	}
}

func TestH1ChunkedReplyLeavesConnectionReusable(t *testing.T) {
	rc := startRawConnector(t, func(c, n int) string { return chunkedFulfillReply(fmt.Sprint(c, n)) })
	p := testProxy(t, nil, "http://"+rc.addr())
	for i := range 3 {
		w, _, err := forward(t, p, "g.usd.bob", 5*time.Second)
		if got, want := fulfilledBy(t, w, err), fmt.Sprint(0, i); got != want {
			t.Fatalf("packet %d fulfilled by %q, want %q (the same connection)", i, got, want)
		}
	}
	if n := rc.conns.Load(); n != 1 {
		t.Errorf("%d connections for 3 packets, want 1 reused", n)
	}
}

func TestH1ExtraBytesAfterReplyNotReused(t *testing.T) {
	rc := startRawConnector(t, func(c, n int) string {
		if c == 0 {
			return fulfillReply("first") + "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nJUNK"
		}
		return fulfillReply("fresh")
	})
	p := testProxy(t, nil, "http://"+rc.addr())
	w, _, err := forward(t, p, "g.usd.bob", 5*time.Second)
	if got := fulfilledBy(t, w, err); got != "first" {
		t.Fatalf("first packet fulfilled by %q", got)
	}
	w, _, err = forward(t, p, "g.usd.bob", 5*time.Second)
	if got := fulfilledBy(t, w, err); got != "fresh" {
		t.Fatalf("second packet fulfilled by %q, want a fresh connection's reply", got)
	}
	if n := rc.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2: one with unasked bytes is not reused", n)
	}
}

// benchReply is what a node connector answers to a packet: a Fulfill with
// Express's headers.
var benchReply = []byte("HTTP/1.1 200 OK\r\nX-Powered-By: Express\r\nContent-Type: application/octet-stream\r\n" +
	"Content-Length: 45\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n" +
	strings.Repeat("F", 45))

// benchChunkedReply is the same Fulfill sent chunked.
var benchChunkedReply = []byte("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n" +
	"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n2d\r\n" + strings.Repeat("F", 45) + "\r\n0\r\n\r\n")

// benchmarkReadReply measures the per-packet cost of parsing raw, which
// must allocate nothing.
func benchmarkReadReply(b *testing.B, raw []byte) {
	r := bytes.NewReader(raw)
	br := bufio.NewReaderSize(r, 4096)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(raw)
		br.Reset(r)
		if _, _, err := readReply(br, buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadReply(b *testing.B)        { benchmarkReadReply(b, benchReply) }
func BenchmarkReadReplyChunked(b *testing.B) { benchmarkReadReply(b, benchChunkedReply) }

// BenchmarkWriteRequest measures writing a packet with the headers
// ilp_edge leaves on a request, which must allocate nothing.
func BenchmarkWriteRequest(b *testing.B) {
	h := http.Header{
		"Ilp-Peer-Name": {"alice"}, "Authorization": {"Bearer up"}, "Content-Type": {"application/octet-stream"},
		"User-Agent": {"ilp-plugin-http"}, "Accept": {"*/*"}, "X-Forwarded-For": {"10.0.0.9"},
	}
	req := &h1Request{path: "/ilp", host: "10.0.0.1:7768", header: h, body: make([]byte, 150)}
	w := bufio.NewWriterSize(io.Discard, 4096)
	b.ReportAllocs()
	for b.Loop() {
		writeRequest(w, req)
		w.Flush()
	}
}

// TestH1PoolKeepsWhatConcurrencyNeeded: with no bound (the default), every
// connection that 100 exchanges in flight at once needed goes back to the
// pool, for the next 100 to reuse; with a bound, what is over it is
// closed, and as many have to be dialled again.
func TestH1PoolKeepsWhatConcurrencyNeeded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // holds every connection open until the listener closes
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	for _, c := range []struct{ maxIdle, wantIdle int }{{0, 100}, {8, 8}} {
		p := &h1Pool{addr: ln.Addr().String(), dialTimeout: time.Second, idleTimeout: time.Minute, maxIdle: c.maxIdle}
		held := make([]*h1Conn, 100)
		for i := range held {
			if held[i], err = p.get(time.Now().Add(time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		for _, h := range held {
			p.put(h)
		}
		if len(p.idle) != c.wantIdle {
			t.Errorf("keepalive_idle_conns %d: %d idle after 100 exchanges at once, want %d", c.maxIdle, len(p.idle), c.wantIdle)
		}
		p.close()
	}
}

// TestH1WriteDeadlineOfAnEarlierPacket: packets whose deadlines are less
// than writeSlack apart leave a connection's write deadline at the first
// one's. Once that has passed, while the last one's (the read deadline)
// has not, the next packet on the connection must get a write deadline
// of its own, or its request would fail to be written at all.
func TestH1WriteDeadlineOfAnEarlierPacket(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	p := &h1Pool{addr: srv.Listener.Addr().String(), dialTimeout: time.Second, idleTimeout: time.Minute}
	defer p.close()
	req := &h1Request{path: "/", host: p.addr, header: http.Header{}, body: []byte("packet")}
	start := time.Now()
	for _, d := range []time.Duration{100 * time.Millisecond, 600 * time.Millisecond} {
		if _, err := p.roundTrip(req, start.Add(d), nil); err != nil {
			t.Fatal(err)
		}
	}
	conn := p.idle[0]
	time.Sleep(time.Until(start.Add(200 * time.Millisecond)))
	reply, err := p.roundTrip(req, start.Add(800*time.Millisecond), nil)
	if err != nil || string(reply.body) != "ok" {
		t.Fatalf("the third packet: %q, %v", reply.body, err)
	}
	if len(p.idle) != 1 || p.idle[0] != conn {
		t.Fatal("the third packet did not go on the same connection: the test proves nothing")
	}
}

// TestH1IdleConnectionsReaped: after a burst, the idle connections that
// no packet takes again are closed once idle for the idle timeout, the
// oldest first, not kept open until traffic reaches them.
func TestH1IdleConnectionsReaped(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var closed atomic.Int32
	go func() { // counts the connections the pool closes
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(io.Discard, c)
				closed.Add(1)
				c.Close()
			}()
		}
	}()
	p := &h1Pool{addr: ln.Addr().String(), dialTimeout: time.Second, idleTimeout: 100 * time.Millisecond}
	defer p.close()
	held := make([]*h1Conn, 20)
	for i := range held {
		if held[i], err = p.get(time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range held[:10] {
		p.put(h)
	}
	time.Sleep(50 * time.Millisecond)
	for _, h := range held[10:] {
		p.put(h)
	}
	waitFor(t, "every idle connection closed", func() bool { return closed.Load() == 20 })
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) != 0 {
		t.Errorf("%d connections still in the pool", len(p.idle))
	}
}
