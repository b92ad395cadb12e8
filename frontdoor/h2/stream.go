package h2

import (
	"sync"
	"time"
)

// This file is a stream's state, from its HEADERS to its release, and
// what the connection remembers of streams once closed: which ones were
// closed recently and how, and the budget of streams a client may reset
// before their answer (CVE-2023-44487, rapid reset).

// A stream's states, as RFC 9113 §5.1 names them for a server that only
// answers: open while its request arrives, half-closed (remote) once the
// client's END_STREAM is in and its handler runs. A stream is closed once
// released: it is then out of conn.streams.
type streamState uint8

const (
	stateOpen       streamState = iota // receiving its header block and body (an early handler may run)
	stateHalfClosed                    // END_STREAM received: its handler runs, then its answer is sent
	stateReset                         // reset while its handler runs: the answer is dropped
)

// answerable reports whether st's handler's answer is still to be sent:
// its stream is neither reset nor closed.
func (st *stream) answerable() bool { return st.state == stateOpen || st.state == stateHalfClosed }

// stream is one request and its answer. Its buffers are pooled: a stream
// that has carried a request before costs no allocation.
type stream struct {
	id    uint32
	state streamState

	recvWindow int32 // what the client may still send on it (read loop only)
	sendWindow int64 // what may still be sent on it, under conn.mu

	contentLength int64 // -1 without one
	hdr           []byte
	body          []byte
	req           Request
	w             ResponseWriter

	// early says its handler was started on its head (HandleOnHead,
	// body.go), and may run while the stream is open; closedHow says how
	// it was closed while that handler ran, which its release then uses.
	early     bool
	closedHow closedHow
}

// maxPooled is the largest buffer a pooled stream keeps: a body or answer
// of unusual size leaves no buffer of its size in the pool.
const maxPooled = 64 << 10

var streamPool = sync.Pool{New: func() any {
	return &stream{hdr: make([]byte, 0, 512), body: make([]byte, 0, 1024)}
}}

// newStream returns a stream for id, from the pool.
func newStream(id uint32, recvWindow int32, sendWindow int64) *stream {
	st := streamPool.Get().(*stream)
	st.id = id
	st.state = stateOpen
	st.recvWindow = recvWindow
	st.sendWindow = sendWindow
	st.contentLength = -1
	st.early = false
	st.closedHow = closedNone
	st.w.reset()
	return st
}

// free returns st to the pool.
func (st *stream) free() {
	st.hdr = st.hdr[:0]
	st.body = st.body[:0]
	if cap(st.body) > maxPooled {
		st.body = nil
	}
	fields := st.req.fields[:0]
	st.req = Request{fields: fields}
	if cap(st.w.body) > maxPooled {
		st.w.body = nil
	}
	streamPool.Put(st)
}

// How a stream was closed, for the frames that still come on it.
type closedHow uint8

const (
	closedNone     closedHow = iota // not among the recently closed
	closedAnswered                  // client's END_STREAM, then our answer's
	closedByClient                  // the client's RST_STREAM
	closedByUs                      // our RST_STREAM or an answer before the whole request
)

// closedRing remembers the last streams closed, so that a frame on one
// of them gets what RFC 9113 §5.1 says of its way of closing; a frame on
// an older closed stream is judged as on one closed long ago.
type closedRing struct {
	ids  [32]uint32
	hows [32]closedHow
	next int
}

func (r *closedRing) add(id uint32, how closedHow) {
	r.ids[r.next] = id
	r.hows[r.next] = how
	r.next = (r.next + 1) % len(r.ids)
}

func (r *closedRing) how(id uint32) closedHow {
	for i, x := range r.ids {
		if x == id {
			return r.hows[i]
		}
	}
	return closedNone
}

// The rapid-reset budget (CVE-2023-44487): a stream the client resets
// before its answer, or one refused for MaxConcurrentStreams, costs
// resetCost; an answered stream gives back one, up to the budget's
// starting value, resetCost × MaxConcurrentStreams. A client may thus
// reset a burst of MaxConcurrentStreams streams, then one for every
// resetCost it lets finish; past that the connection is closed with
// GOAWAY ENHANCE_YOUR_CALM. Handlers of reset streams are counted as
// open until they return, so they never run more than
// MaxConcurrentStreams at once.
const resetCost = 4

// chargeReset spends the budget for one stream reset or refused early,
// and reports whether the connection may go on.
func (c *conn) chargeReset() bool {
	c.resetBudget -= resetCost
	return c.resetBudget >= 0
}

// releaseLocked closes st: it leaves the connection's streams, and goes
// back to the pool. With c.mu held; its handler, if it ran, has returned.
func (c *conn) releaseLocked(st *stream, how closedHow) {
	delete(c.streams, st.id)
	c.closed.add(st.id, how)
	if how == closedAnswered && c.resetBudget < c.maxResetBudget {
		c.resetBudget++
	}
	if len(c.streams) == 0 {
		c.idleSince = time.Now()
		if c.goingAway {
			c.drainLocked()
		} else if c.waiting == waitNone {
			c.setReadDeadlineLocked(c.idleSince.Add(c.srv.IdleTimeout))
		}
	}
	st.free()
}
