package handler

import (
	"net/http"
	"sync"
)

var responseBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// responseCapture stands in for the client's ResponseWriter while the next
// handler (reverse_proxy, or ilp_proxy) runs: it keeps the status and body
// instead of sending them, so the edge can check that the reply is an ILP
// packet and send a Reject in its place if it is not. Headers go straight
// to the real writer's map; the edge fixes the ones that matter before it
// answers.
type responseCapture struct {
	w        http.ResponseWriter
	status   int
	body     *[]byte
	overflow bool
}

func (c *responseCapture) reset(w http.ResponseWriter) {
	c.w, c.status, c.body, c.overflow = w, 0, nil, false
}

func (c *responseCapture) Header() http.Header { return c.w.Header() }

func (c *responseCapture) WriteHeader(status int) {
	if c.status == 0 && status >= 200 { // 1xx are interim; the final status comes later
		c.status = status
	}
}

func (c *responseCapture) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if c.body == nil {
		c.body = responseBufPool.Get().(*[]byte)
	}
	if len(*c.body)+len(b) > MaxReplySize {
		c.overflow = true
		return len(b), nil
	}
	*c.body = append(*c.body, b...)
	return len(b), nil
}

// Flush does nothing: nothing is sent until the reply is complete.
func (c *responseCapture) Flush() {}

// bytes returns the captured body.
func (c *responseCapture) bytes() []byte {
	if c.body == nil {
		return nil
	}
	return *c.body
}

// release returns the body buffer to the pool; call it once the body has
// been written out.
func (c *responseCapture) release() {
	releaseReply(c.body)
	c.body = nil
}

// releaseReply returns a captured body's buffer to the pool.
func releaseReply(b *[]byte) {
	if b != nil && cap(*b) <= MaxReplySize {
		*b = (*b)[:0]
		responseBufPool.Put(b)
	}
}
