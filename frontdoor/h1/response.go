package h1

import (
	"net/http"
	"strconv"
	"time"
)

// This file builds answers: what a handler sets on a ResponseWriter, then
// the status line, Date, Content-Length and Connection this package owns,
// appended to the connection's write buffer.

// ResponseWriter is what a handler answers one request with: a status
// (200 unless set), header fields and a body, all buffered and written
// with a Content-Length once the handler returns.
type ResponseWriter struct {
	status int
	fields []byte // "name: value\r\n" lines
	body   []byte
	close  bool
}

// reset makes w ready for the next request, keeping its buffers.
func (w *ResponseWriter) reset() {
	w.status = http.StatusOK
	w.fields = w.fields[:0]
	w.body = w.body[:0]
	w.close = false
}

// SetStatus sets the answer's status code, 200 to 599; 1xx answers are
// this package's own.
func (w *ResponseWriter) SetStatus(code int) {
	if code < 200 || code > 599 {
		panic("h1: status code " + strconv.Itoa(code) + " not 200 to 599")
	}
	w.status = code
}

// SetContentType adds a Content-Type field.
func (w *ResponseWriter) SetContentType(value string) bool {
	return w.AddField("Content-Type", value)
}

// AddField adds a header field, such as WWW-Authenticate or Allow. It
// adds nothing and returns false when name is not a token or is one this
// package writes (Content-Length, Transfer-Encoding, Connection, Date),
// or when value holds a control character other than HTAB: a value that
// came from a peer cannot split the answer.
func (w *ResponseWriter) AddField(name, value string) bool { return addField(w, name, value) }

// AddFieldBytes is AddField for a value in bytes, such as one copied from
// the request, without converting it.
func (w *ResponseWriter) AddFieldBytes(name string, value []byte) bool {
	return addField(w, name, value)
}

func addField[V string | []byte](w *ResponseWriter, name string, value V) bool {
	if !validName(name) {
		return false
	}
	for i := range len(value) {
		if chars[value[i]]&valueChar == 0 {
			return false
		}
	}
	w.fields = append(w.fields, name...)
	w.fields = append(w.fields, ": "...)
	w.fields = append(w.fields, value...)
	w.fields = append(w.fields, "\r\n"...)
	return true
}

// validName reports whether a handler may add a field named name.
func validName(name string) bool {
	if name == "" {
		return false
	}
	for i := range len(name) {
		if chars[name[i]]&tokenChar == 0 {
			return false
		}
	}
	switch b := []byte(name); {
	case equalFold(b, "content-length"), equalFold(b, "transfer-encoding"),
		equalFold(b, "connection"), equalFold(b, "date"):
		return false
	}
	return true
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

// CloseConn asks for the connection to be closed after this answer.
func (w *ResponseWriter) CloseConn() { w.close = true }

// appendResponse appends w's answer to out. Answers to HEAD, and 204 and
// 304 answers, have no body (RFC 9112 §6.3); 204 has no Content-Length
// either. keepAlive10 is an HTTP/1.0 request's kept connection, which
// must be said.
func (w *ResponseWriter) appendResponse(out []byte, head bool, close, keepAlive10 bool, date []byte) []byte {
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(w.status), 10)
	out = append(out, ' ')
	out = append(out, http.StatusText(w.status)...)
	out = append(out, "\r\nDate: "...)
	out = append(out, date...)
	if w.status != http.StatusNoContent {
		out = append(out, "\r\nContent-Length: "...)
		out = strconv.AppendInt(out, int64(len(w.body)), 10)
	}
	switch {
	case close:
		out = append(out, "\r\nConnection: close"...)
	case keepAlive10:
		out = append(out, "\r\nConnection: keep-alive"...)
	}
	out = append(out, "\r\n"...)
	out = append(out, w.fields...)
	out = append(out, "\r\n"...)
	if !head && w.status != http.StatusNoContent && w.status != http.StatusNotModified {
		out = append(out, w.body...)
	}
	return out
}

// appendRefusal appends the answer to a refused request, which closes
// the connection.
func appendRefusal(out []byte, e *Error, date []byte) []byte {
	w := ResponseWriter{status: e.Status}
	w.fields = append(w.fields, "Content-Type: text/plain; charset=utf-8\r\n"...)
	w.body = append(w.body, e.Reason...)
	w.body = append(w.body, '\n')
	return w.appendResponse(out, false, true, false, date)
}

// dateCache is a connection's Date value, formatted once a second.
type dateCache struct {
	sec int64
	n   int
	buf [len(http.TimeFormat)]byte
}

// get returns the Date value for now.
func (d *dateCache) get(now time.Time) []byte {
	if s := now.Unix(); s != d.sec || d.n == 0 {
		d.sec = s
		d.n = len(now.UTC().AppendFormat(d.buf[:0], http.TimeFormat))
	}
	return d.buf[:d.n]
}
