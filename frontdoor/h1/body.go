package h1

import (
	"errors"
	"time"
)

// This file is a request's body when it has not all arrived with its
// head: read before the handler is called, or, with
// Server.HandleOnHead, by the handler itself (ReadBody), as net/http
// lets a handler answer before the body is read. A handler that refuses
// a request on its head (a 401 or 405) then answers at once, without the
// client being asked for the body ("100 Continue") nor waited on for it;
// the connection is closed after that answer.

// errBodyLost is what ReadBody returns when the body did not arrive: the
// connection failed or BodyTimeout passed.
var errBodyLost = errors.New("h1: connection lost before the whole body arrived")

// BodyPending reports whether the body is still to be read with
// ReadBody: the handler was called on the head (Server.HandleOnHead)
// before the whole body arrived.
func (r *Request) BodyPending() bool { return r.pending != nil }

// ReadBody returns the whole body, reading it first when it is pending:
// "100 Continue" goes out first when the client waits for it, then the
// body must arrive within BodyTimeout. The head's slices stay valid. On
// an error the connection is lost: it is closed once the handler
// returns, without its answer.
func (r *Request) ReadBody() ([]byte, error) {
	c := r.pending
	if c == nil {
		return r.Body, r.bodyErr
	}
	r.pending = nil
	if !c.readBody(r) {
		r.bodyErr = errBodyLost
		return nil, r.bodyErr
	}
	return r.Body, nil
}

// awaitBody prepares a request whose body has not all arrived for the
// handler: it makes room for the whole request at once, so that reading
// the body later moves nothing and the head's slices stay where the
// handler saw them, then parses the head where it now is.
func (c *conn) awaitBody(req *Request, headLen int) {
	c.makeRoom(headLen + int(req.ContentLength))
	req.parseHead(c.buf.rb[c.r0:c.r1], &c.srv.limits)
	req.pending, req.headLen = c, headLen
}

// readBody reads the rest of req's body into the room awaitBody made,
// and reports whether it all arrived.
func (c *conn) readBody(req *Request) bool {
	b := c.buf
	if req.expectContinue {
		b.out = append(b.out, "HTTP/1.1 100 Continue\r\n\r\n"...) // written by readMore's flush
	}
	if !c.setDeadline(&c.readBy, c.srv.BodyTimeout) {
		return false
	}
	total := req.headLen + int(req.ContentLength)
	for c.r1-c.r0 < total {
		if !c.readMore(total) {
			return false
		}
	}
	req.Body = b.rb[c.r0+req.headLen : c.r0+total]
	return true
}

// closeUnread sends the answer to a request whose handler did not read
// the body it announced, and closes the connection: the body's bytes may
// still be on their way, and nothing after them can be taken for the
// next request.
//
// The alternative, reading the body to keep the connection, would hold
// the answer, or the connection, for as long as the client takes to send
// a body the handler refused, up to BodyTimeout: the wait that answering
// on the head avoids, for a client the handler just refused. net/http
// reads up to 256 KiB of such a body before it answers, unless the
// handler says Connection: close (ilp_edge does on its 401 and 405, for
// that reason) or the client still waits for its 100 Continue; then it
// closes the connection, as this does. Before the close, linger reads
// and drops what still comes, at most lingerBytes within lingerTime, so
// that the close does not reset the connection before the client has
// read the answer.
func (c *conn) closeUnread(req *Request) bool {
	b := c.buf
	req.pending = nil // the pooled request keeps no closed connection
	head := string(req.Method) == "HEAD"
	b.out = b.w.appendResponse(b.out, head, true, false, c.date.get(time.Now()))
	if c.flush() {
		c.linger()
	}
	return false
}
