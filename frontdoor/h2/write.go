package h2

import (
	"time"

	"golang.org/x/net/http2"

	"github.com/ilp-edge/caddy-ilp/internal/deadline"
)

// This file is a connection's writing side: every frame is appended,
// under conn.mu, to one buffer by the Framer, and the buffer is written
// by whichever goroutine finds no write in progress (a group commit):
// while one goroutine writes, the answers of the others pile up behind
// it and go out together in the next write. A handler that answers while
// others of its connection run yields once before it writes, so that
// those whose upstream answers came in the same poll append theirs first:
// 16 streams answered at once then cost a write or two, not one each.
// The read loop writes its control frames (SETTINGS ACK, PING ACK,
// WINDOW_UPDATE, RST_STREAM) only before it blocks on a read, so that
// those of a batch of frames read at once share a write too. Here too is the flow control of
// answers: DATA never exceeds the client's windows.

// maxWindow is the largest flow-control window, 2^31-1.
const maxWindow = 1<<31 - 1

// maxQueued is how many bytes of frames may wait to be written before the
// read loop stops reading to let them drain: a client that sends PINGs
// or frames that make RST_STREAMs and reads nothing fills no memory.
const maxQueued = 256 << 10

// outWriter is where the Framer writes: the connection's buffer.
type outWriter struct{ c *conn }

func (w outWriter) Write(p []byte) (int, error) {
	w.c.out = append(w.c.out, p...)
	return len(p), nil
}

// flushLocked writes the buffered frames, unless another goroutine is
// writing: then they go out with its next write. With c.mu held, which
// it releases while it writes.
func (c *conn) flushLocked() {
	if c.flushing || c.dead {
		return
	}
	c.flushing = true
	for len(c.out) > 0 && !c.dead {
		buf := c.out
		c.out = c.spare[:0]
		c.mu.Unlock()
		var err error
		if t := time.Now().Add(c.srv.WriteTimeout); deadline.Due(c.writeBy, t, c.srv.WriteTimeout/10) {
			c.writeBy = t // by the one goroutine flushing
			err = c.nc.SetWriteDeadline(t)
		}
		if err == nil {
			_, err = c.rw.Write(buf)
		}
		c.mu.Lock()
		c.spare = buf[:0]
		if err != nil {
			c.dieLocked()
		}
		c.cond.Broadcast() // to a read loop waiting for the queue to drain
	}
	c.flushing = false
}

// flush is flushLocked for a caller without c.mu.
func (c *conn) flush() {
	c.mu.Lock()
	c.flushLocked()
	c.mu.Unlock()
}

// drainQueueLocked waits while too many bytes are queued, writing them
// itself when no one else is.
func (c *conn) drainQueueLocked() { c.waitWrittenLocked(maxQueued) }

// waitWrittenLocked waits until at most limit bytes are queued and, for
// a limit of 0, no write is in progress.
func (c *conn) waitWrittenLocked(limit int) {
	for (len(c.out) > limit || limit == 0 && c.flushing) && !c.dead {
		if !c.flushing {
			c.flushLocked()
			continue
		}
		c.cond.Wait()
	}
}

// dieLocked marks the connection dead and closes it: the read loop's
// read fails, and every goroutine waiting on c.cond gives up.
func (c *conn) dieLocked() {
	if !c.dead {
		c.dead = true
		c.nc.Close()
	}
	c.cond.Broadcast()
}

// writeDataLocked sends body as DATA frames on st, the last with
// END_STREAM, each at most the client's SETTINGS_MAX_FRAME_SIZE and
// within its windows, waiting for WINDOW_UPDATEs when they are spent. It
// reports false when the stream was reset or the connection lost first.
func (c *conn) writeDataLocked(st *stream, body []byte) bool {
	for len(body) > 0 {
		if !st.answerable() || c.dead {
			return false
		}
		n := min(int64(len(body)), c.sendWindow, st.sendWindow, int64(c.peerMaxFrame))
		if n <= 0 {
			if !c.awaitWindowLocked(st) {
				return false
			}
			continue
		}
		c.fw.WriteData(st.id, n == int64(len(body)), body[:n])
		c.sendWindow -= n
		st.sendWindow -= n
		body = body[n:]
	}
	return true
}

// awaitWindowLocked writes what is buffered and waits for a window to
// open on st and the connection, for at most WriteTimeout: past it the
// connection is closed, as for a write that does not end.
func (c *conn) awaitWindowLocked(st *stream) bool {
	c.flushLocked()
	timedOut := false
	t := time.AfterFunc(c.srv.WriteTimeout, func() {
		c.mu.Lock()
		timedOut = true
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer t.Stop()
	for (c.sendWindow <= 0 || st.sendWindow <= 0) && st.answerable() && !c.dead {
		if timedOut {
			c.dieLocked()
			return false
		}
		c.cond.Wait()
	}
	return st.answerable() && !c.dead
}

// rstLocked writes RST_STREAM.
func (c *conn) rstLocked(id uint32, code http2.ErrCode) {
	if c.srv.Refused != nil && code != http2.ErrCodeNo { // NO_ERROR follows a refusal, told already
		c.srv.Refused(c.nc.RemoteAddr(), "RST_STREAM "+code.String(), "")
	}
	c.fw.WriteRSTStream(id, code)
}

// setReadDeadlineLocked sets the read deadline, unless the one set is
// earlier by less than a tenth of ReadTimeout (deadline.Due) or the
// connection is lingering towards its close.
func (c *conn) setReadDeadlineLocked(t time.Time) {
	if c.lingering || !deadline.Due(c.deadline, t, c.srv.ReadTimeout/10) {
		return
	}
	c.deadline = t
	c.nc.SetReadDeadline(t)
}
