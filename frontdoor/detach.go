package frontdoor

import (
	"context"

	"github.com/ilp-edge/caddy-ilp/handler"
)

// Detach returns what an exchange that outlives its request (an
// asynchronous Prepare answered 202, whose forwarding goes on) may keep
// of the request's context: the server's, which lives as long as the
// config. The requestContext itself goes back to the pool with the
// exchange.
func (c *requestContext) Detach() context.Context { return c.Context }

var _ handler.Detacher = (*requestContext)(nil)
