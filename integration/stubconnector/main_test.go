package main

import (
	"bytes"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

func TestStubAnswers(t *testing.T) {
	s := newStub("stub-7")
	prepare := ilptest.NewPrepare(ilpdest.Prepare{Amount: 5, Destination: []byte("g.bench.alice"),
		Data: bytes.Repeat([]byte{7}, 5000)}) // larger than a pooled buffer
	for _, tc := range []struct {
		name, method, path string
		body               []byte
		status             int
		want               []byte
	}{
		{"a Prepare is fulfilled with the stub's name", "POST", "/", prepare, 200,
			ilpdest.AppendFulfill(nil, []byte(Fulfillment), []byte("stub-7"))},
		{"anything else is rejected F01", "POST", "/", []byte("GET / HTTP/1.1"), 200,
			ilpdest.AppendReject(nil, ilpdest.Reject{Code: ilpdest.CodeF01, TriggeredBy: "private.stub", Message: "not an ILP Prepare"})},
		{"health", "GET", "/health", nil, 200, nil},
		{"other methods", "GET", "/", nil, 405, []byte("ILP over HTTP takes POST\n")},
		{"over the size limit", "POST", "/", make([]byte, maxPacket+1), 400, []byte("packet too large\n")},
	} {
		for range 2 { // the second time with a pooled buffer
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, bytes.NewReader(tc.body)))
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != tc.status || !bytes.Equal(body, tc.want) {
				t.Errorf("%s: got %d %q, want %d %q", tc.name, rec.Code, body, tc.status, tc.want)
			}
		}
	}
}

func TestFulfillmentIsPrintable(t *testing.T) {
	// The benchmark writes a whole Fulfill into a JSON Caddy config.
	if len(Fulfillment) != 32 || strings.IndexFunc(Fulfillment, func(r rune) bool { return r < ' ' || r > '~' }) >= 0 {
		t.Errorf("Fulfillment %q must be 32 printable ASCII bytes", Fulfillment)
	}
}
