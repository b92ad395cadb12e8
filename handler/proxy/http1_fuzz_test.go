package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/internal/httpsyntax"
)

// addReplySeeds seeds a fuzz target with the TestReadReply cases, but for
// the few of over 16 KiB, which TestReadReply runs: mutating them slows
// the fuzzer down tenfold and finds nothing the small ones do not.
func addReplySeeds(f *testing.F) {
	for _, tc := range readReplyCases {
		if len(tc.raw) <= 16<<10 {
			f.Add([]byte(tc.raw))
		}
	}
	f.Add(benchReply)
	f.Add(benchChunkedReply)
}

// FuzzReadReply checks that no upstream reply makes the parser panic,
// accept more than the size limit, fail other than as a malformed or cut
// reply, or depend on how the bytes arrive.
func FuzzReadReply(f *testing.F) {
	addReplySeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		reply, keepAlive, err := readReply(bufio.NewReaderSize(bytes.NewReader(raw), maxLine), nil)
		if err != nil {
			if !errors.Is(err, errMalformedReply) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("error %v would be taken for a broken connection", err)
			}
		} else if len(reply.body) > handler.MaxReplySize || reply.status < 100 || reply.status > 999 {
			t.Fatalf("accepted status %d with %d bytes", reply.status, len(reply.body))
		}
		// A byte at a time, as from a slow connector: the same reading.
		slow, slowKeepAlive, slowErr := readReply(bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(raw)), maxLine), nil)
		if (err == nil) != (slowErr == nil) || slow.status != reply.status || !bytes.Equal(slow.body, reply.body) || slowKeepAlive != keepAlive {
			t.Fatalf("read whole: %d %q %v %v; a byte at a time: %d %q %v %v",
				reply.status, reply.body, keepAlive, err, slow.status, slow.body, slowKeepAlive, slowErr)
		}
	})
}

// netReading is what net/http makes of a connector's reply, read as its
// Transport reads one: ReadResponse until a final (not 1xx, or 101)
// response, then its whole body.
type netReading struct {
	protos      []string // of every response, interim ones first
	statuses    []int
	headerBytes int // the status lines and header sections, interim ones included
	resp        *http.Response
	body        []byte
	consumed    int // the whole reply
}

func readNetHTTP(raw []byte) (*netReading, error) {
	r := bytes.NewReader(raw)
	br := bufio.NewReader(r)
	req, err := http.NewRequest(http.MethodPost, "http://connector/", nil)
	if err != nil {
		return nil, err
	}
	nr := new(netReading)
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nr, err
		}
		nr.protos = append(nr.protos, resp.Proto)
		nr.statuses = append(nr.statuses, resp.StatusCode)
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		nr.headerBytes = len(raw) - r.Len() - br.Buffered()
		nr.resp = resp
		if nr.body, err = io.ReadAll(resp.Body); err != nil {
			return nr, err
		}
		nr.consumed = len(raw) - r.Len() - br.Buffered()
		return nr, nil
	}
}

// allowedDifference is a reply readReply refuses although net/http reads
// it: a deliberate choice, with its reason. holds checks, on the input and
// net/http's reading of it, that the input is of that kind, so that an
// error of that kind cannot hide another divergence.
type allowedDifference struct {
	err     error
	reason  string
	holds   func(raw []byte, nr *netReading) bool
	example string
}

// allowedDifferences are all the replies readReply refuses and net/http
// reads. Everywhere else, the two frame a reply the same way.
var allowedDifferences = []allowedDifference{
	{errReplyTooLarge, "a body over handler.MaxReplySize, however framed: no Fulfill or Reject is that large, " +
		"and reading it would let a connector make the edge buffer without bound",
		func(_ []byte, nr *netReading) bool { return len(nr.body) > handler.MaxReplySize },
		"HTTP/1.1 200 OK\r\nContent-Length: 65537\r\n\r\n" + strings.Repeat("x", 65537)},
	{errHeaderTooLarge, "header sections, interim responses' included, over handler.MaxReplySize: " +
		"net/http's Transport bounds them too (MaxResponseHeaderBytes), ReadResponse alone does not",
		func(_ []byte, nr *netReading) bool { return nr.headerBytes > handler.MaxReplySize },
		"HTTP/1.1 200 OK\r\n" + strings.Repeat("X: "+strings.Repeat("y", 1000)+"\r\n", 66) + "Content-Length: 0\r\n\r\n"},
	{errLineTooLong, "a status, header or trailer line over 4096 bytes: the size of the connection's " +
		"read buffer, which parses without copying (net/http has no limit but for chunk lines)",
		func(raw []byte, _ *netReading) bool { return longestLine(raw) > maxLine },
		"HTTP/1.1 200 OK\r\nX: " + strings.Repeat("y", 5000) + "\r\nContent-Length: 0\r\n\r\n"},
	{errBadVersion, "an HTTP version other than 1.0 and 1.1 (net/http takes any HTTP/d.d): " +
		"nothing else is HTTP/1 framing, and a connector sending it is broken",
		func(_ []byte, nr *netReading) bool {
			return anyOf(nr.protos, func(p string) bool { return p != "HTTP/1.0" && p != "HTTP/1.1" })
		},
		"HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n"},
	{errBadStatus, "a status code under 100, or signed (net/http takes \"000\" and \"+12\"): " +
		"RFC 9110 §15 codes are three digits from 100",
		func(_ []byte, nr *netReading) bool { return anyOf(nr.statuses, func(s int) bool { return s < 100 }) },
		"HTTP/1.1 +12 Odd\r\nContent-Length: 0\r\n\r\n"},
	{errObsFold, "a header line folded onto the previous one (obs-fold): RFC 9112 §5.2 lets a " +
		"recipient refuse it, and no connector sends it",
		func(raw []byte, _ *netReading) bool {
			return bytes.Contains(raw, []byte("\n ")) || bytes.Contains(raw, []byte("\n\t"))
		},
		"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n"},
	{errBadFieldName, "a field name with a space before the colon: net/http keeps " +
		"\"Content-Length : 5\" as another field and so frames the reply differently from a parser " +
		"that trims it (RFC 9112 §5.1: such a response is to be rejected or fixed, never relayed)",
		func(raw []byte, _ *netReading) bool {
			return anyLine(raw, func(l []byte) bool {
				name, _, _ := bytes.Cut(l, []byte(":"))
				return bytes.IndexByte(name, ' ') >= 0
			})
		},
		"HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\nx"},
	{errRepeatedLength, "Content-Length more than once, even with one value (net/http keeps identical " +
		"repeats): one reply framed by two fields is what response splitting uses",
		func(raw []byte, _ *netReading) bool { return countFields(raw, "content-length") >= 2 },
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"},
	{errChunkedLength, "Transfer-Encoding chunked with a Content-Length (net/http drops the length): " +
		"RFC 9112 §6.1 says it ought to be handled as an error, the classic smuggling vector",
		func(raw []byte, _ *netReading) bool {
			return countFields(raw, "content-length") > 0 && countFields(raw, "transfer-encoding") > 0
		},
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{errEncodingHTTP10, "Transfer-Encoding in an HTTP/1.0 reply (net/http ignores the field): " +
		"RFC 9112 §6.1 says the framing is faulty",
		func(raw []byte, nr *netReading) bool {
			return countFields(raw, "transfer-encoding") > 0 &&
				anyOf(nr.protos, func(p string) bool { return p == "HTTP/1.0" })
		},
		"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{errBadTrailer, "a trailer line ending in a bare LF (net/http reads the trailer section as a " +
		"header section if a CRLF CRLF follows within 4 KiB, whatever comes before it)",
		func(raw []byte, _ *netReading) bool { return hasBareLF(raw) },
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\r\n\r\n"},
}

// FuzzReadReplyMatchesNetHTTP checks that readReply frames every reply as
// net/http does: both refuse it, or both read the same status and body and
// stop at the same byte, and a connection readReply would reuse net/http
// would too; or readReply refuses a reply for one of the
// allowedDifferences.
func FuzzReadReplyMatchesNetHTTP(f *testing.F) {
	addReplySeeds(f)
	f.Fuzz(matchNetHTTP)
}

// replyFragments are what FuzzReadReplyFragmentsMatchNetHTTP builds
// replies from: the fuzzer mutates bytes, and a byte at the right place of
// a reply (a space before a chunk size, a CR before an LF) is one in
// millions; a fragment is one in len(replyFragments).
var replyFragments = []string{
	"HTTP/1.1 ", "HTTP/1.0 ", "HTTP/2.0 ", "100 Continue", "101 Switching Protocols", "103 Early Hints",
	"200 OK", "204 No Content", "304 Not Modified", "503 Busy", "099", "+12",
	" ", "\t", "\r", "\n", "\r\n", "\r\n\r\n", ":", ": ", ",", ";", "=",
	"Content-Length", "content-length", "Transfer-Encoding", "chunked", "gzip", "identity",
	"Connection", "close", "keep-alive", "Keep-Alive", "Upgrade", "Trailer", "X-Sum",
	"0", "1", "2", "5", "10", "a", "A", "f", "ff", "10001", "-1", "x", "abcde",
	"\x00", "\x7f", "\x80", "\"", "(", "0\r\n\r\n", "1\r\na\r\n", "",
}

// FuzzReadReplyFragmentsMatchNetHTTP is FuzzReadReplyMatchesNetHTTP on
// replies made of replyFragments, each byte choosing one.
func FuzzReadReplyFragmentsMatchNetHTTP(f *testing.F) {
	index := make(map[string]byte, len(replyFragments))
	for i, frag := range replyFragments {
		index[frag] = byte(i)
	}
	seed := func(frags ...string) {
		var b []byte
		for _, frag := range frags {
			i, ok := index[frag]
			if !ok {
				f.Fatalf("seed fragment %q is not a reply fragment", frag)
			}
			b = append(b, i)
		}
		f.Add(b)
	}
	seed("HTTP/1.1 ", "200 OK", "\r\n", "Content-Length", ": ", "1", "\r\n\r\n", "x")
	seed("HTTP/1.1 ", "200 OK", "\r\n", "Transfer-Encoding", ": ", "chunked", "\r\n", "Trailer", ": ", "X-Sum",
		"\r\n\r\n", "1\r\na\r\n", "2", ";", "x", "\r\n", "ff", "\r\n", "0", "\r\n", "X-Sum", ": ", "1", "\r\n\r\n")
	seed("HTTP/1.1 ", "100 Continue", "\r\n\r\n", "HTTP/1.0 ", "204 No Content", "\r\n", "Connection", ": ",
		"keep-alive", ",", " ", "close", "\r\n", "Content-Length", ": ", "5", "\r\n\r\n", "abcde")
	seed("HTTP/1.0 ", "200 OK", "\n", "Connection", ":", "Keep-Alive", "\n", "Content-Length", ":", " ", "1", "\n", "\n", "a")
	f.Fuzz(func(t *testing.T, choices []byte) {
		var raw []byte
		for _, c := range choices {
			raw = append(raw, replyFragments[int(c)%len(replyFragments)]...)
		}
		matchNetHTTP(t, raw)
	})
}

// editBases are valid replies of every framing, for
// FuzzReadReplyEditsMatchNetHTTP to edit.
var editBases = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n2;x=y\r\nab\r\n1\r\nc\r\n0\r\nX-Sum: 1\r\n\r\n",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.0 200 OK\r\nConnection: Keep-Alive, x\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
	"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc",
	"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
}

// FuzzReadReplyEditsMatchNetHTTP is FuzzReadReplyMatchesNetHTTP on valid
// replies with small edits where framing is decided: at a line's start or
// end, after a colon, space, semicolon or comma. Each pair of bytes of
// edits is one: where, and which fragment to insert, or with the high bit
// to put in place of the byte there ("" deletes it).
func FuzzReadReplyEditsMatchNetHTTP(f *testing.F) {
	for i := range editBases {
		f.Add(uint8(i), []byte{})
		f.Add(uint8(i), []byte{5, 12, 9, 0x80 | 15})
	}
	f.Fuzz(func(t *testing.T, base uint8, edits []byte) {
		raw := []byte(editBases[int(base)%len(editBases)])
		for i := 0; i+1 < len(edits); i += 2 {
			spots := editSpots(raw)
			at := spots[int(edits[i])%len(spots)]
			frag := replyFragments[int(edits[i+1]&0x7f)%len(replyFragments)]
			rest := raw[at:]
			if edits[i+1]&0x80 != 0 && len(rest) > 0 {
				rest = rest[1:]
			}
			raw = slices.Concat(raw[:at], []byte(frag), rest)
		}
		matchNetHTTP(t, raw)
	})
}

// editSpots returns the offsets in raw where framing is decided.
func editSpots(raw []byte) []int {
	spots := []int{0, len(raw)}
	for i := 1; i < len(raw); i++ {
		if bytes.IndexByte([]byte("\n :;,"), raw[i-1]) >= 0 || bytes.IndexByte([]byte("\r\n:;,"), raw[i]) >= 0 {
			spots = append(spots, i)
		}
	}
	return spots
}

// matchNetHTTP fails t unless readReply frames raw as net/http does, or
// refuses it for one of the allowedDifferences.
func matchNetHTTP(t *testing.T, raw []byte) {
	r := bytes.NewReader(raw)
	br := bufio.NewReaderSize(r, maxLine)
	reply, keepAlive, err := readReply(br, nil)
	nr, nerr := readNetHTTP(raw)
	if err != nil {
		if !errors.Is(err, errMalformedReply) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("error %v would be taken for a broken connection", err)
		}
		if nerr == nil {
			if d := allowedFor(err); d == nil {
				t.Fatalf("refused (%v) %q, which net/http reads as %d %q", err, raw, nr.resp.StatusCode, nr.body)
			} else if !d.holds(raw, nr) {
				t.Fatalf("refused with %v %q, which is not one: %v (net/http reads %d %q)", err, raw, d, nr.resp.StatusCode, nr.body)
			}
		}
		return
	}
	if nerr != nil {
		t.Fatalf("read %d %q (keepAlive=%v) from %q, which net/http refuses: %v", reply.status, reply.body, keepAlive, raw, nerr)
	}
	if reply.status != nr.resp.StatusCode || !bytes.Equal(reply.body, nr.body) {
		t.Fatalf("read %d %q from %q, net/http %d %q", reply.status, reply.body, raw, nr.resp.StatusCode, nr.body)
	}
	if keepAlive && nr.resp.Close {
		t.Fatalf("would reuse the connection after %q, net/http would close it", raw)
	}
	if consumed := len(raw) - r.Len() - br.Buffered(); consumed != nr.consumed {
		t.Fatalf("%q ends after %d bytes, net/http says %d", raw, consumed, nr.consumed)
	}
}

// allowedFor returns the allowed difference an error of readReply's is.
func allowedFor(err error) *allowedDifference {
	for i := range allowedDifferences {
		if errors.Is(err, allowedDifferences[i].err) {
			return &allowedDifferences[i]
		}
	}
	return nil
}

func TestAllowedDifferences(t *testing.T) {
	for i, d := range allowedDifferences {
		if !errors.Is(d.err, errMalformedReply) || d.reason == "" {
			t.Errorf("%v: not a malformed reply, or no reason", d.err)
		}
		// The example is read by net/http, refused by readReply for
		// this difference, and of its kind.
		raw := []byte(d.example)
		nr, nerr := readNetHTTP(raw)
		_, _, err := readReply(bufio.NewReaderSize(bytes.NewReader(raw), maxLine), nil)
		if nerr != nil || !errors.Is(err, d.err) || !d.holds(raw, nr) {
			t.Errorf("%v: example: net/http %v, readReply %v, holds %v", d.err, nerr, err, nerr == nil && d.holds(raw, nr))
		}
		for _, e := range allowedDifferences[:i] {
			if errors.Is(d.err, e.err) || errors.Is(e.err, d.err) {
				t.Errorf("%v and %v overlap", d.err, e.err)
			}
		}
	}
}

func anyOf[T any](s []T, f func(T) bool) bool {
	for _, v := range s {
		if f(v) {
			return true
		}
	}
	return false
}

// anyLine reports whether f holds for a line of raw, without its LF.
func anyLine(raw []byte, f func([]byte) bool) bool {
	for l := range bytes.SplitSeq(raw, []byte("\n")) {
		if f(l) {
			return true
		}
	}
	return false
}

// longestLine is the length of raw's longest line, its LF included.
func longestLine(raw []byte) (n int) {
	for l := range bytes.SplitSeq(raw, []byte("\n")) {
		n = max(n, len(l)+1)
	}
	return n
}

// countFields counts the lines of raw that are a field named name.
func countFields(raw []byte, name string) (n int) {
	anyLine(raw, func(l []byte) bool {
		if k, _, ok := bytes.Cut(l, []byte(":")); ok && httpsyntax.EqualFold(k, name) {
			n++
		}
		return false
	})
	return n
}

// hasBareLF reports whether a line of raw ends in LF without CR.
func hasBareLF(raw []byte) bool {
	for i, c := range raw {
		if c == '\n' && (i == 0 || raw[i-1] != '\r') {
			return true
		}
	}
	return false
}

// String names an allowed difference in test output.
func (d *allowedDifference) String() string { return fmt.Sprintf("%v (%s)", d.err, d.reason) }
