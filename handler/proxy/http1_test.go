package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/ilp-edge/caddy-ilp/handler"
)

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		status    int
		body      string
		keepAlive bool
		err       bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", 200, "abc", true, false},
		{"header names in any case", "HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh: 2\r\n\r\nab", 200, "ab", true, false},
		{"connection close", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx", 200, "x", false, false},
		{"HTTP/1.0 closes", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", 200, "x", false, false},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\nx", 200, "x", true, false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n", 200, "abc", true, false},
		{"to the end of the connection", "HTTP/1.1 200 OK\r\n\r\nabc", 200, "abc", false, false},
		{"interim 100 first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", 200, "x", true, false},
		{"error status relayed", "HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy", 503, "busy", true, false},
		{"body cut short", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", 0, "", false, true},
		{"no reply at all", "", 0, "", false, true},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", 0, "", false, true},
		{"bad status", "HTTP/1.1 2x0 OK\r\n\r\n", 0, "", false, true},
		{"header without colon", "HTTP/1.1 200 OK\r\nbroken\r\n\r\n", 0, "", false, true},
		{"negative length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, "", false, true},
		{"conflicting lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 0, "", false, true},
		{"gzip transfer coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 0, "", false, true},
		{"too large", "HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n", 0, "", false, true},
		{"too large unannounced", "HTTP/1.1 200 OK\r\n\r\n" + strings.Repeat("x", handler.MaxReplySize+1), 0, "", false, true},
		{"header line too long", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("x", 5000) + "\r\n\r\n", 0, "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply, keepAlive, err := readReply(bufio.NewReaderSize(strings.NewReader(tc.raw), 4096), make([]byte, 0, 16))
			if tc.err {
				if err == nil {
					t.Fatalf("no error; got %d %q", reply.status, reply.body)
				}
				return
			}
			if err != nil || reply.status != tc.status || string(reply.body) != tc.body || keepAlive != tc.keepAlive {
				t.Errorf("got %d %q keepAlive=%v err=%v; want %d %q keepAlive=%v",
					reply.status, reply.body, keepAlive, err, tc.status, tc.body, tc.keepAlive)
			}
		})
	}
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

// FuzzReadReply checks that no upstream reply makes the parser panic or
// accept more than the size limit.
func FuzzReadReply(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nx"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		reply, _, err := readReply(bufio.NewReaderSize(bytes.NewReader(raw), 4096), nil)
		if err != nil {
			return
		}
		if len(reply.body) > handler.MaxReplySize || reply.status < 100 || reply.status > 999 {
			t.Fatalf("accepted status %d with %d bytes", reply.status, len(reply.body))
		}
	})
}
