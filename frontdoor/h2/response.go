package h2

import (
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// This file builds answers: what a handler sets on a ResponseWriter, then
// the HEADERS frame (:status, content-type, content-length, date, the
// added fields) and the DATA frames, sent once the handler returns; and
// the header-only answers this package gives a request it refuses.

// ResponseWriter is what a handler answers one request with: a status
// (200 unless set), header fields and a body, all buffered and sent with
// a content-length once the handler returns.
type ResponseWriter struct {
	status      int
	contentType string
	fields      []hpack.HeaderField
	body        []byte
}

// reset makes w ready for the next request, keeping its buffers.
func (w *ResponseWriter) reset() {
	w.status = http.StatusOK
	w.contentType = ""
	clear(w.fields)
	w.fields = w.fields[:0]
	w.body = w.body[:0]
}

// SetStatus sets the answer's status code, 200 to 599.
func (w *ResponseWriter) SetStatus(code int) {
	if code < 200 || code > 599 {
		panic("h2: status code " + strconv.Itoa(code) + " not 200 to 599")
	}
	w.status = code
}

// SetContentType sets the content-type field. It returns false, and sets
// nothing, for a value with a control character or whitespace at either
// end.
func (w *ResponseWriter) SetContentType(value string) bool {
	if !validValue(value) {
		return false
	}
	w.contentType = value
	return true
}

// AddField adds a header field, such as www-authenticate or allow; the
// name is sent in lower case. It adds nothing and returns false when name
// is not a token, is a pseudo-header or one this package writes
// (content-length, content-type: SetContentType, date) or one HTTP/2
// forbids (connection, keep-alive, proxy-connection, transfer-encoding,
// upgrade, te), or when value holds a control character or whitespace at
// either end.
func (w *ResponseWriter) AddField(name, value string) bool {
	name = lowerName(name)
	if !validName(name) || !validValue(value) {
		return false
	}
	w.fields = append(w.fields, hpack.HeaderField{Name: name, Value: value})
	return true
}

// AddFieldBytes is AddField for a value in bytes.
func (w *ResponseWriter) AddFieldBytes(name string, value []byte) bool {
	return w.AddField(name, string(value))
}

// Write appends p to the body.
func (w *ResponseWriter) Write(p []byte) (int, error) {
	w.body = append(w.body, p...)
	return len(p), nil
}

// WriteString appends s to the body.
func (w *ResponseWriter) WriteString(s string) (int, error) {
	w.body = append(w.body, s...)
	return len(s), nil
}

// validName reports whether a handler may add a field named name, in
// lower case.
func validName(name string) bool {
	if name == "" {
		return false
	}
	for i := range len(name) {
		if chars[name[i]]&nameChar == 0 {
			return false
		}
	}
	switch name {
	case "content-length", "content-type", "date",
		"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te":
		return false
	}
	return true
}

// commonNames are the lower-case forms of names handlers add in
// canonical case, so that lowering them allocates nothing.
var commonNames = func() map[string]string {
	m := make(map[string]string)
	for _, n := range []string{"Allow", "Cache-Control", "Content-Encoding", "Location",
		"Retry-After", "Server", "Vary", "Www-Authenticate", "WWW-Authenticate", "X-Content-Type-Options",
		"Request-Id", "Ilp-Destination", "ILP-Destination", "Ilp-Peer-Name", "ILP-Peer-Name"} {
		m[n] = strings.ToLower(n)
	}
	return m
}()

// lowerName returns name in lower case.
func lowerName(name string) string {
	for i := range len(name) {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			if l, ok := commonNames[name]; ok {
				return l
			}
			return strings.ToLower(name)
		}
	}
	return name
}

// statusText holds the :status values, so that none is formatted per
// answer.
var statusText = func() (t [600]string) {
	for i := 200; i < len(t); i++ {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

// answer sends st's answer once its handler has returned, unless the
// stream was reset or the connection lost meanwhile, and releases st.
func (c *conn) answer(st *stream) {
	c.mu.Lock()
	how := closedByClient
	if st.closedHow != closedNone {
		how = st.closedHow // closed while its early handler ran
	}
	if st.answerable() && !c.dead {
		w := &st.w
		body := w.body
		if w.status == http.StatusNoContent || w.status == http.StatusNotModified {
			body = nil
		}
		c.writeHeadersLocked(st.id, w.status, w.contentType, len(body), w.fields, len(body) == 0)
		if c.writeDataLocked(st, body) && st.state == stateHalfClosed {
			how = closedAnswered
		}
	}
	if st.state == stateOpen {
		// Answered before the client's END_STREAM: a handler called on
		// the head refused the request without its body. As after a
		// refusal of this package's own, RST_STREAM NO_ERROR tells the
		// client to stop sending it (RFC 9113 §8.1), and what it already
		// sent is ignored.
		if !c.dead {
			c.rstLocked(st.id, http2.ErrCodeNo)
		}
		c.open--
		how = closedByUs
	}
	c.releaseLocked(st, how)
	if !c.flushing && len(c.out) > 0 && len(c.streams) > c.open {
		// Other handlers of this connection are running: let those
		// ready to answer too append theirs before the write.
		c.flushing = true
		c.mu.Unlock()
		runtime.Gosched()
		c.mu.Lock()
		c.flushing = false
		c.cond.Broadcast() // to one waiting for the write in progress (waitWrittenLocked)
	}
	c.flushLocked()
	c.mu.Unlock()
}

// refuseLocked answers a request this package will not serve with a
// header-only answer, status, then closes the stream: with RST_STREAM
// NO_ERROR when the client is still sending it (RFC 9113 §8.1), so that it
// stops. With c.mu held, from the read loop, before any handler ran;
// clientDone says the frame just read carried END_STREAM.
func (c *conn) refuseLocked(st *stream, status int, clientDone bool) {
	if c.srv.Refused != nil {
		c.srv.Refused(c.nc.RemoteAddr(), statusText[status], "")
	}
	c.writeHeadersLocked(st.id, status, "", 0, nil, true)
	if !clientDone {
		c.rstLocked(st.id, http2.ErrCodeNo)
	}
	c.closeOpenLocked(st, closedByUs)
}

// writeHeadersLocked encodes an answer's header block and writes it as
// HEADERS, then CONTINUATION frames if it is larger than the client's
// SETTINGS_MAX_FRAME_SIZE.
func (c *conn) writeHeadersLocked(id uint32, status int, contentType string, length int, fields []hpack.HeaderField, endStream bool) {
	c.hbuf.Reset()
	c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusText[status]})
	if contentType != "" {
		c.henc.WriteField(hpack.HeaderField{Name: "content-type", Value: contentType})
	}
	if status != http.StatusNoContent {
		c.henc.WriteField(hpack.HeaderField{Name: "content-length", Value: c.lengthText(length)})
	}
	c.henc.WriteField(hpack.HeaderField{Name: "date", Value: c.date.get(time.Now())})
	for _, f := range fields {
		c.henc.WriteField(f)
	}
	block := c.hbuf.Bytes()
	max := int(c.peerMaxFrame)
	first := block[:min(len(block), max)]
	c.fw.WriteHeaders(http2.HeadersFrameParam{
		StreamID:      id,
		BlockFragment: first,
		EndStream:     endStream,
		EndHeaders:    len(first) == len(block),
	})
	for rest := block[len(first):]; len(rest) > 0; {
		n := min(len(rest), max)
		c.fw.WriteContinuation(id, n == len(rest), rest[:n])
		rest = rest[n:]
	}
}

// lengthText formats a content-length, the last one kept: the answers on
// a connection are often of one size, and the string is kept by the HPACK
// encoder's table, so it cannot be a reused buffer.
func (c *conn) lengthText(n int) string {
	if n < 100 {
		return strconv.Itoa(n) // no allocation below 100
	}
	if n != c.lastLength || c.lastLengthText == "" {
		c.lastLength = n
		c.lastLengthText = strconv.Itoa(n)
	}
	return c.lastLengthText
}

// dateCache is a connection's date value, formatted once a second.
type dateCache struct {
	sec int64
	s   string
}

// get returns the date value for now.
func (d *dateCache) get(now time.Time) string {
	if s := now.Unix(); s != d.sec || d.s == "" {
		d.sec = s
		d.s = now.UTC().Format(http.TimeFormat)
	}
	return d.s
}
