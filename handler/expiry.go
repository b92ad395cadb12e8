package handler

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// expiryContext is a request's context with the packet's deadline (its
// expiry, or max_hold if sooner), what context.WithDeadline would make, except that the timer
// and channel behind Done are only made when something asks for Done.
// reverse_proxy does; ilp_proxy only reads Deadline and sets it on its
// upstream connection, which saves it a timer, a child registered with the
// server's context and four allocations per packet.
type expiryContext struct {
	context.Context // the request's
	expiry          time.Time

	once  sync.Once
	timed atomic.Pointer[timedContext] // set by the first Done
}

type timedContext struct {
	context.Context
	cancel context.CancelFunc
}

// init sets the parent and the expiry of a zero expiryContext.
func (c *expiryContext) init(parent context.Context, expiry time.Time) {
	c.Context, c.expiry = parent, expiry
}

// Deadline returns the packet's expiry.
func (c *expiryContext) Deadline() (time.Time, bool) { return c.expiry, true }

// Done makes the timed context on first use.
func (c *expiryContext) Done() <-chan struct{} {
	c.once.Do(func() {
		ctx, cancel := context.WithDeadline(c.Context, c.expiry)
		c.timed.Store(&timedContext{ctx, cancel})
	})
	return c.timed.Load().Done()
}

// Err is the timed context's, or, while there is none, what it would be.
func (c *expiryContext) Err() error {
	if t := c.timed.Load(); t != nil {
		return t.Err()
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !now().Before(c.expiry) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value is the timed context's once there is one, so that contexts made
// from this one after Done (which context.WithCancel calls first) attach
// to its cancellation directly instead of through a goroutine each.
func (c *expiryContext) Value(key any) any {
	if t := c.timed.Load(); t != nil {
		return t.Value(key)
	}
	return c.Context.Value(key)
}

// cancel stops the timer, if Done started one.
func (c *expiryContext) cancel() {
	if t := c.timed.Load(); t != nil {
		t.cancel()
	}
}
