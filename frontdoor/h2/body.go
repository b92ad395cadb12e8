package h2

import (
	"encoding/binary"
	"errors"
	"strings"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// This file is a request handed to its handler on its head
// (Server.HandleOnHead), before its body has arrived, as net/http's
// server does: the handler waits for the body (ReadBody) or answers
// without it, which refuses the request before its DATA is awaited,
// let alone read.
//
// The handler of such a stream runs while the stream is still open. The
// read loop goes on adding DATA to its body, under conn.mu, and wakes
// the handler at END_STREAM; a reset of the stream meanwhile (the
// client's, or one of ours) marks it reset without releasing it
// (closeOpenLocked), and the handler's return releases it (answer). An
// answer sent while the stream is still open is followed by RST_STREAM
// NO_ERROR.

// errBodyLost is what ReadBody returns when the body will not arrive:
// the stream was reset or the connection lost.
var errBodyLost = errors.New("h2: stream closed before the whole body arrived")

// BodyPending reports whether the body is still to be read with
// ReadBody: the handler was called on the head (Server.HandleOnHead)
// before the whole request arrived.
func (r *Request) BodyPending() bool { return r.pending }

// ReadBody returns the whole body, waiting for it when it is pending: a
// 100 (Continue) goes out first when the client waits for one ("expect:
// 100-continue") and has sent none of the body yet. The wait is bounded
// by the connection's ReadTimeout, as any request still arriving is. It
// returns an error when the stream is reset or the connection lost
// first: the handler's answer is then dropped.
func (r *Request) ReadBody() ([]byte, error) {
	if !r.pending {
		return r.Body, r.bodyErr
	}
	r.pending = false
	r.Body, r.bodyErr = r.c.awaitBody(r.st, r.expectsContinue())
	return r.Body, r.bodyErr
}

// expectsContinue reports whether the request has "expect: 100-continue".
func (r *Request) expectsContinue() bool {
	v, ok := r.Lookup("expect")
	return ok && strings.EqualFold(string(v), "100-continue")
}

// handleOnHeadLocked starts the handler of st, whose header block is
// whole and whose END_STREAM is still to come.
func (c *conn) handleOnHeadLocked(st *stream) {
	st.early = true
	st.req.pending, st.req.c, st.req.st = true, c, st
	c.handlers.Add(1)
	c.srv.handlerPool.run(c, st)
}

// awaitBody waits for st's END_STREAM, and returns its body.
func (c *conn) awaitBody(st *stream, continue100 bool) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if continue100 && st.state == stateOpen && len(st.body) == 0 && !c.dead {
		c.writeContinueLocked(st.id)
		c.flushLocked()
	}
	for st.state == stateOpen && !c.dead {
		c.cond.Wait()
	}
	if st.state != stateHalfClosed || c.dead {
		return nil, errBodyLost
	}
	return st.body, nil
}

// writeContinueLocked writes a 100 (Continue) on stream id: a header
// block of :status alone, the stream left open for the final answer.
func (c *conn) writeContinueLocked(id uint32) {
	c.hbuf.Reset()
	c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: "100"})
	c.fw.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true})
}

// frameHeaderLen is the length of a frame's header (RFC 9113 §4.1).
const frameHeaderLen = 9

// requestBuffered reports whether the bytes already read hold the rest
// of stream id's request, up to a frame that ends it (END_STREAM), whole.
// Its handler is then started at that END_STREAM, a moment later, with
// the whole body, as without HandleOnHead: a client sends a small
// Prepare's HEADERS and DATA together, and starting its handler on the
// head would only add a wait for the body and a wake-up to every packet.
func (c *conn) requestBuffered(id uint32) bool {
	buf, _ := c.br.Peek(c.br.Buffered())
	for len(buf) >= frameHeaderLen {
		n := frameHeaderLen + (int(buf[0])<<16 | int(buf[1])<<8 | int(buf[2]))
		if n > len(buf) {
			return false
		}
		typ, flags := http2.FrameType(buf[3]), http2.Flags(buf[4])
		if binary.BigEndian.Uint32(buf[5:9])&(1<<31-1) == id &&
			(typ == http2.FrameData || typ == http2.FrameHeaders) && flags.Has(http2.FlagDataEndStream) {
			return true
		}
		buf = buf[n:]
	}
	return false
}
