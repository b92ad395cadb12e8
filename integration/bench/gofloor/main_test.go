package main

import (
	"bufio"
	"strings"
	"testing"
)

// TestReadMessage checks the little HTTP/1.1 the floor reads: the body by
// Content-Length and the ILP-Destination, in any case, and no message
// without a usable length.
func TestReadMessage(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("POST / HTTP/1.1\r\nHost: x\r\nilp-DESTINATION:  g.a.b \r\ncontent-length: 3\r\n\r\nabc" +
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" +
		"POST / HTTP/1.1\r\nHost: x\r\n\r\n"))
	buf := make([]byte, 16)
	dest, body, err := readMessage(br, buf)
	if err != nil || dest != "g.a.b" || string(body) != "abc" {
		t.Fatalf("request: %q, %q, %v", dest, body, err)
	}
	dest, body, err = readMessage(br, buf)
	if err != nil || dest != "" || string(body) != "ok" {
		t.Fatalf("reply: %q, %q, %v", dest, body, err)
	}
	if _, _, err := readMessage(br, buf); err != errLength {
		t.Fatalf("no Content-Length: %v, want errLength", err)
	}
	br = bufio.NewReader(strings.NewReader("POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n"))
	if _, _, err := readMessage(br, buf); err != errLength {
		t.Fatalf("a body larger than the buffer: %v, want errLength", err)
	}
}
