package h1

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ilp-edge/caddy-ilp/frontdoor/internal/acceptloop"
)

// This file is the server: it accepts connections, runs each one's loop
// on its own goroutine, keeps track of them, and shuts them down, idle
// ones at once and busy ones after their answer.

// Handler answers one request. It runs on the connection's goroutine and
// may block; the next request on the connection waits for it. The
// request's slices and the writer are valid until it returns. A handler
// that panics takes the program down: the caller wraps one that may.
type Handler interface {
	ServeH1(w *ResponseWriter, r *Request)
}

// HandlerFunc is a function as a Handler.
type HandlerFunc func(w *ResponseWriter, r *Request)

// ServeH1 calls f.
func (f HandlerFunc) ServeH1(w *ResponseWriter, r *Request) { f(w, r) }

// The default timeouts.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultBodyTimeout       = 10 * time.Second
	DefaultIdleTimeout       = 75 * time.Second // nginx's keepalive_timeout
	DefaultWriteTimeout      = 10 * time.Second
)

// ErrServerClosed is what Serve returns after Shutdown or Close.
var ErrServerClosed = errors.New("h1: server closed")

// Server serves HTTP/1.x on the connections it accepts or is given. Set
// its fields before it serves; a zero field takes its default.
type Server struct {
	Handler Handler
	Limits  Limits

	// ReadHeaderTimeout bounds the time from a request's first byte to
	// the end of its head.
	ReadHeaderTimeout time.Duration
	// BodyTimeout bounds the time to read a body, from its head's end.
	BodyTimeout time.Duration
	// IdleTimeout bounds the wait for a request's first byte after an
	// answer, or on a new connection.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write of answers.
	WriteTimeout time.Duration

	// HandleOnHead calls Handler as soon as a request's head is parsed,
	// when its body has not all arrived with it, rather than once the
	// body is read: the handler reads it with Request.ReadBody, which
	// sends "100 Continue" first when the client waits for it, or
	// answers without it, as a handler refusing the request on its head
	// does (a 401, a 405). Such an answer goes out at once, and the
	// connection is closed after it (body.go). Without HandleOnHead,
	// Request.Body is always the whole body.
	HandleOnHead bool

	// Handoff, if set, is given the connections Shutdown would close
	// between two requests, with what was already read of the next one,
	// so that a newer server serves them on (ServeConn) and the client
	// sees no close: at a config reload, a keep-alive client may be
	// sending on its connection at the moment the old server lets go of
	// it. It owns the connection.
	Handoff func(nc net.Conn, next []byte)

	// HTTP2, if set, is given a connection whose first bytes are HTTP/2's
	// connection preface (h2c with prior knowledge, or h2 negotiated by
	// TLS's ALPN), with what was read of it, rather than refusing it with
	// 505. It owns the connection.
	HTTP2 func(nc net.Conn, prefix []byte)

	// Refused, if set, is told of every request the server answers
	// itself with an error status, before any handler: the client's
	// address, the status and why. It must not block.
	Refused func(remote net.Addr, status int, reason string)

	setup    sync.Once
	limits   Limits    // Limits with defaults
	bigPool  sync.Pool // read buffers of the largest request's size
	shutting atomic.Bool

	mu        sync.Mutex
	listeners acceptloop.Listeners
	conns     map[*conn]struct{}
}

// init applies the defaults, once.
func (s *Server) init() {
	s.setup.Do(func() {
		s.limits = s.Limits.withDefaults()
		for _, d := range []struct {
			t   *time.Duration
			def time.Duration
		}{
			{&s.ReadHeaderTimeout, DefaultReadHeaderTimeout},
			{&s.BodyTimeout, DefaultBodyTimeout},
			{&s.IdleTimeout, DefaultIdleTimeout},
			{&s.WriteTimeout, DefaultWriteTimeout},
		} {
			if *d.t <= 0 {
				*d.t = d.def
			}
		}
		size := s.limits.MaxHeaderBytes + s.limits.MaxBodyBytes
		s.bigPool.New = func() any {
			b := make([]byte, size)
			return &b
		}
		s.conns = make(map[*conn]struct{})
	})
}

// shuttingDown reports whether Shutdown or Close was called.
func (s *Server) shuttingDown() bool { return s.shutting.Load() }

// Serve accepts connections on ln and serves each on its own goroutine,
// until Shutdown or Close (then it returns ErrServerClosed) or an accept
// error that is not temporary. It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	return s.listeners.Serve(ln, s.shuttingDown, ErrServerClosed, func(nc net.Conn) { s.ServeConn(nc, nil) })
}

// ServeConn serves one connection until it closes, and returns then.
// prefix is what was already read from nc, such as bytes sniffed to
// choose a protocol: it is served first. ServeConn closes nc.
func (s *Server) ServeConn(nc net.Conn, prefix []byte) {
	s.init()
	c := &conn{srv: s, nc: nc}
	s.mu.Lock()
	if s.shuttingDown() {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	c.initIdle()
	c.serve(prefix)
}

// OpenConns returns how many connections the server is serving.
func (s *Server) OpenConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// forget removes a closed connection.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// shutdownPoll is how often Shutdown looks for connections gone idle.
const shutdownPoll = 10 * time.Millisecond

// Shutdown stops accepting, closes idle connections at once, and lets
// each busy one finish its request, answered with Connection: close;
// with Handoff set, it gives them to Handoff instead, idle ones at once
// and busy ones after their answer.
// It returns once every connection is closed, or when ctx is done: then
// it closes the rest, and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.shutting.Store(true)
	s.listeners.Close()
	t := time.NewTicker(shutdownPoll)
	defer t.Stop()
	for {
		if s.closeIdle() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close stops accepting and closes every connection now.
func (s *Server) Close() error {
	s.init()
	s.shutting.Store(true)
	s.listeners.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.state.Store(stateClosed)
		c.nc.Close()
	}
	return nil
}

// closeIdle closes the idle connections, or wakes them to be handed
// off, and returns how many are left.
func (s *Server) closeIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	end := s.endState()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, end) {
			if end == stateHandoff {
				c.nc.SetReadDeadline(time.Now()) // its goroutine hands it off
			} else {
				c.nc.Close()
			}
		}
	}
	return len(s.conns)
}

// endState is what Shutdown makes of a connection between requests.
func (s *Server) endState() int32 {
	if s.Handoff != nil {
		return stateHandoff
	}
	return stateClosed
}
