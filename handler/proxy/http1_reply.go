package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"

	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/internal/httpsyntax"
)

// This file reads a connector's HTTP/1.x reply for ilp_proxy's client
// (http1.go): framing exactly as net/http's ReadResponse decides it, or a
// refusal where that is safer for a proxy (FuzzReadReplyMatchesNetHTTP
// lists each), reading no more than handler.MaxReplySize of any reply and
// leaving the connection at the reply's exact end.

// errMalformedReply is wrapped by every error that says the connector's
// reply is not HTTP this client can read, as opposed to a broken
// connection.
var errMalformedReply = errors.New("malformed reply")

// The ways a reply is malformed. Those from errReplyTooLarge on are where
// this client is stricter than net/http's ReadResponse; the allowed
// differences of FuzzReadReplyMatchesNetHTTP say why.
var (
	errBadStatusLine = fmt.Errorf("%w: bad HTTP status line", errMalformedReply)
	errBadHeader     = fmt.Errorf("%w: bad HTTP header", errMalformedReply)
	errBadLength     = fmt.Errorf("%w: bad Content-Length", errMalformedReply)
	errBadEncoding   = fmt.Errorf("%w: Transfer-Encoding other than one chunked", errMalformedReply)
	errBadChunk      = fmt.Errorf("%w: bad chunked encoding", errMalformedReply)
	// As net/http, which looks for the end of a trailer section in the
	// next 4 KiB.
	errTrailerTooLarge = fmt.Errorf("%w: trailer section over %d bytes", errMalformedReply, maxLine)

	errReplyTooLarge  = fmt.Errorf("%w: over %d bytes", errMalformedReply, handler.MaxReplySize)
	errHeaderTooLarge = fmt.Errorf("%w: header sections over %d bytes", errMalformedReply, handler.MaxReplySize)
	errLineTooLong    = fmt.Errorf("%w: HTTP line over %d bytes", errMalformedReply, maxLine)
	errBadVersion     = fmt.Errorf("%w: HTTP version other than 1.0 or 1.1", errMalformedReply)
	errBadStatus      = fmt.Errorf("%w: status code not 100 to 999", errMalformedReply)
	errObsFold        = fmt.Errorf("%w: folded header line", errMalformedReply)
	errBadFieldName   = fmt.Errorf("%w: header field name not a token", errMalformedReply)
	errRepeatedLength = fmt.Errorf("%w: Content-Length repeated", errMalformedReply)
	errChunkedLength  = fmt.Errorf("%w: both chunked and a Content-Length", errMalformedReply)
	errEncodingHTTP10 = fmt.Errorf("%w: Transfer-Encoding in HTTP/1.0", errMalformedReply)
	errBadTrailer     = fmt.Errorf("%w: trailer line not ending in CRLF", errMalformedReply)
)

// maxLine is the longest line of a reply, its CRLF included, and the
// largest trailer section: the size of a connection's read buffer.
const maxLine = 4096

// replyHead is what one response's status line and header section say.
type replyHead struct {
	status       int
	http10       bool
	length       int64 // -1: no Content-Length
	chunked      bool
	close        bool // Connection: close
	keepAlive    bool // Connection: keep-alive
	framingTrail bool // Trailer names a framing field
}

// reusable reports whether the connection carries another exchange after
// this response, as net/http decides it (RFC 9112 §9.3).
func (h *replyHead) reusable() bool {
	if h.http10 {
		return h.keepAlive && !h.close
	}
	return !h.close
}

// readReply reads one HTTP/1.x response, skipping interim 1xx responses,
// and leaves br at its exact end. The body is read into buf's spare
// capacity, or a new buffer if that is too small. It frames the reply as
// net/http's ReadResponse does, or refuses it (FuzzReadReplyMatchesNetHTTP
// checks both).
func readReply(br *bufio.Reader, buf []byte) (reply upstreamReply, keepAlive bool, err error) {
	budget := handler.MaxReplySize // for the header sections of all responses
	for {
		h, err := readHead(br, &budget)
		if err != nil {
			return reply, false, err
		}
		if h.status < 200 && h.status != http.StatusSwitchingProtocols {
			continue // 100 Continue, 103 Early Hints: the real reply follows
		}
		reply.status = h.status
		reply.body = buf[:0]
		keepAlive = h.reusable()
		switch {
		case !bodyAllowed(h.status):
			// RFC 9112 §6.3: complete at the end of the header section,
			// whatever it says. After a 101 the connection speaks another
			// protocol.
			return reply, keepAlive && h.status != http.StatusSwitchingProtocols, nil
		case h.chunked:
			reply.body, err = readChunked(br, buf[:0])
		case h.length > handler.MaxReplySize:
			return reply, false, errReplyTooLarge
		case h.length >= 0:
			reply.body = slices.Grow(buf[:0], int(h.length))[:h.length]
			_, err = io.ReadFull(br, reply.body)
		default:
			keepAlive = false // the body runs to the end of the connection
			reply.body, err = readAllInto(br, buf[:0])
		}
		return reply, keepAlive && err == nil, cutShort(err)
	}
}

// bodyAllowed reports whether a response with status may have a body:
// 1xx, 204 and 304 responses have none (RFC 9112 §6.3).
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// readHead reads a status line and header section, spending budget on
// them: interim responses are bounded too.
func readHead(br *bufio.Reader, budget *int) (h replyHead, err error) {
	line, err := readHeadLine(br, budget)
	if err != nil {
		return h, err
	}
	if h, err = parseStatusLine(line); err != nil {
		return h, err
	}
	// What a field means is judged only once it is known to be whole: a
	// value folded onto the next line is refused as such.
	var fieldErr error
	for {
		line, err := readHeadLine(br, budget)
		if err != nil {
			return h, err
		}
		if len(line) == 0 {
			break
		}
		name, value, err := parseField(line)
		if err != nil {
			return h, err
		}
		if err := h.addField(name, value); err != nil && fieldErr == nil {
			fieldErr = err
		}
	}
	switch {
	case fieldErr != nil:
		return h, fieldErr
	case h.chunked && h.length >= 0:
		// RFC 9112 §6.1 allows dropping the length, but one reply framed
		// two ways is how responses are smuggled: refused.
		return h, errChunkedLength
	case h.chunked && h.framingTrail:
		return h, fmt.Errorf("%w: Trailer names a framing field", errBadHeader)
	}
	return h, nil
}

// readHeadLine reads a line of a header section and takes its length off
// budget.
func readHeadLine(br *bufio.Reader, budget *int) ([]byte, error) {
	line, n, err := readLine(br)
	if err != nil {
		return nil, err
	}
	if *budget -= n; *budget < 0 {
		return nil, errHeaderTooLarge
	}
	return line, nil
}

// parseStatusLine reads "HTTP/1.1 200 OK" as net/http does, refusing
// versions other than 1.0 and 1.1 and codes under 100.
func parseStatusLine(line []byte) (h replyHead, err error) {
	h.length = -1
	proto, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok {
		return h, errBadStatusLine
	}
	for len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	code, _, _ := bytes.Cut(rest, []byte(" "))
	if len(code) != 3 {
		return h, errBadStatusLine
	}
	switch {
	case string(proto) == "HTTP/1.1":
	case string(proto) == "HTTP/1.0":
		h.http10 = true
	case len(proto) == len("HTTP/1.1") && bytes.HasPrefix(proto, []byte("HTTP/")):
		return h, errBadVersion
	default:
		return h, errBadStatusLine
	}
	for _, c := range code {
		if c < '0' || c > '9' {
			return h, errBadStatus
		}
		h.status = h.status*10 + int(c-'0')
	}
	if h.status < 100 {
		return h, errBadStatus
	}
	return h, nil
}

// parseField splits a header or trailer line into its name, a token, and
// its value without surrounding whitespace, refusing bytes net/http
// refuses and folded lines. It looks at each byte once.
func parseField(line []byte) (name, value []byte, err error) {
	if line[0] == ' ' || line[0] == '\t' {
		return nil, nil, errObsFold
	}
	i := 0
	for i < len(line) && httpsyntax.Chars[line[i]]&httpsyntax.Token != 0 {
		i++
	}
	switch {
	case i == len(line) || i == 0 && line[0] == ':':
		return nil, nil, errBadHeader
	case line[i] != ':':
		if bytes.IndexByte(line[i:], ':') < 0 {
			return nil, nil, errBadHeader
		}
		return nil, nil, errBadFieldName
	}
	value = trimOWS(line[i+1:])
	for _, c := range value {
		if httpsyntax.Chars[c]&httpsyntax.Value == 0 {
			return nil, nil, errBadHeader
		}
	}
	return line[:i], value, nil
}

// trimOWS returns b without the spaces and tabs around it.
func trimOWS[T ~string | ~[]byte](b T) T {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// addField takes in what a header field says about framing and the
// connection.
func (h *replyHead) addField(name, value []byte) error {
	switch {
	case httpsyntax.EqualFold(name, "content-length"):
		if h.length >= 0 {
			return errRepeatedLength
		}
		n, ok := parseLength(value)
		if !ok {
			return errBadLength
		}
		h.length = n
	case httpsyntax.EqualFold(name, "transfer-encoding"):
		switch {
		case h.http10:
			// net/http ignores it; RFC 9112 §6.1 says the framing is faulty.
			return errEncodingHTTP10
		case h.chunked || !httpsyntax.EqualFold(value, "chunked"):
			return errBadEncoding
		}
		h.chunked = true
	case httpsyntax.EqualFold(name, "connection"):
		h.close = h.close || hasToken(value, "close")
		h.keepAlive = h.keepAlive || hasToken(value, "keep-alive")
	case httpsyntax.EqualFold(name, "trailer"):
		h.framingTrail = h.framingTrail || hasToken(value, "content-length") ||
			hasToken(value, "transfer-encoding") || hasToken(value, "trailer")
	}
	return nil
}

// parseLength reads a Content-Length value: decimal digits, at most
// 1<<63-1, as net/http.
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' || n > (math.MaxInt64-int64(c-'0'))/10 {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// hasToken reports whether the comma-separated list holds token, in any
// case.
func hasToken[T ~string | ~[]byte](list T, token string) bool {
	for {
		elem, rest, more := cut(list, ',')
		if httpsyntax.EqualFold(trimOWS(elem), token) {
			return true
		}
		if !more {
			return false
		}
		list = rest
	}
}

// cut is strings.Cut and bytes.Cut for one separator byte.
func cut[T ~string | ~[]byte](s T, sep byte) (before, after T, found bool) {
	for i := range len(s) {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, s[len(s):], false
}

// readChunked reads a chunked body into buf, then its trailer section,
// refusing more than handler.MaxReplySize bytes before reading them.
// Chunk lines are read as net/http reads them.
func readChunked(br *bufio.Reader, buf []byte) ([]byte, error) {
	var excess int64
	for {
		n, err := readChunkSize(br, &excess)
		if err != nil {
			return buf, err
		}
		if n == 0 {
			return buf, readTrailer(br)
		}
		if n > uint64(handler.MaxReplySize-len(buf)) {
			return buf, errReplyTooLarge
		}
		start := len(buf)
		buf = slices.Grow(buf, int(n))[:start+int(n)]
		if _, err := io.ReadFull(br, buf[start:]); err != nil {
			return buf, err
		}
		crlf, err := br.Peek(2)
		if err != nil {
			return buf, err
		}
		if crlf[0] != '\r' || crlf[1] != '\n' {
			return buf, errBadChunk
		}
		br.Discard(2)
	}
}

// readChunkSize reads a chunk-size line, with its extensions, which are
// ignored. As net/http, it refuses a bare LF, and lines that carry much
// more than the data they announce (excess counts that across chunks).
func readChunkSize(br *bufio.Reader, excess *int64) (uint64, error) {
	line, err := br.ReadSlice('\n')
	switch {
	case err == bufio.ErrBufferFull:
		return 0, errLineTooLong
	case err != nil:
		return 0, err
	case !endsInCRLF(line) || bytes.IndexByte(line, '\r') != len(line)-2:
		return 0, errBadChunk
	}
	line = line[:len(line)-2]
	*excess += int64(len(line)) + 2
	for len(line) > 0 && (line[len(line)-1] == ' ' || line[len(line)-1] == '\t') {
		line = line[:len(line)-1]
	}
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	if len(line) == 0 || len(line) > 16 {
		return 0, errBadChunk
	}
	var n uint64
	for _, c := range line {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, errBadChunk
		}
		n = n<<4 | uint64(c)
	}
	*excess = max(*excess-16-2*int64(n), 0)
	if *excess > 16<<10 {
		return 0, fmt.Errorf("%w: chunk lines longer than their data", errBadChunk)
	}
	return n, nil
}

// readTrailer reads the trailer section after the last chunk, to the
// empty line that ends the message, so that the connection is left at the
// next message. Its fields are checked as header fields and dropped.
func readTrailer(br *bufio.Reader) error {
	for size := 0; ; {
		line, err := br.ReadSlice('\n')
		switch {
		case err == bufio.ErrBufferFull:
			return errTrailerTooLarge
		case err != nil:
			return err
		case !endsInCRLF(line):
			return errBadTrailer
		}
		if size += len(line); size > maxLine {
			return errTrailerTooLarge
		}
		if len(line) == 2 {
			return nil
		}
		if _, _, err := parseField(line[:len(line)-2]); err != nil {
			return err
		}
	}
}

// endsInCRLF reports whether a line read up to its LF ends in CRLF.
func endsInCRLF(line []byte) bool {
	return len(line) >= 2 && line[len(line)-2] == '\r'
}

// readLine returns a line without its LF or CRLF, valid until the next
// read, and its length on the wire. A line over maxLine bytes is refused.
func readLine(br *bufio.Reader) (line []byte, n int, err error) {
	line, err = br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, len(line), errLineTooLong
	}
	if err != nil {
		return nil, len(line), cutShort(err)
	}
	n = len(line)
	line = line[:n-1]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, n, nil
}

// cutShort reports a reply that ended early as such: the connection
// closed mid-reply, not a malformed one.
func cutShort(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readAllInto reads r to its end into buf, refusing more than
// handler.MaxReplySize bytes having read at most one more: a huge reply
// costs no more memory than the largest one accepted.
func readAllInto(r io.Reader, buf []byte) ([]byte, error) {
	const limit = handler.MaxReplySize + 1
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(max(len(buf), 512), limit-len(buf)))
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), limit)])
		buf = buf[:len(buf)+n]
		if len(buf) > handler.MaxReplySize {
			return buf, errReplyTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
