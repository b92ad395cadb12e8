package h2

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ilp-edge/caddy-ilp/frontdoor/internal/acceptloop"
)

// This file is the server: it accepts connections, runs each one's read
// loop on its own goroutine, keeps track of them, and shuts them down
// with a GOAWAY that lets the streams in flight finish.

// Handler answers one request. It runs on a goroutine of its own, as many
// at once on a connection as its streams (at most MaxConcurrentStreams),
// and may block. The request's slices and the writer are valid until it
// returns. A handler that panics takes the program down: this package
// recovers nothing, so the caller wraps a handler that may panic.
type Handler interface {
	ServeH2(w *ResponseWriter, r *Request)
}

// HandlerFunc is a function as a Handler.
type HandlerFunc func(w *ResponseWriter, r *Request)

// ServeH2 calls f.
func (f HandlerFunc) ServeH2(w *ResponseWriter, r *Request) { f(w, r) }

// The defaults.
const (
	DefaultMaxConcurrentStreams = 128
	DefaultMaxBodyBytes         = 64 << 10 // an ILP packet is at most 40,000 bytes
	DefaultMaxHeaderBytes       = 8 << 10
	DefaultReadTimeout          = 10 * time.Second
	DefaultIdleTimeout          = 75 * time.Second // nginx's keepalive_timeout
	DefaultWriteTimeout         = 10 * time.Second
)

// ErrServerClosed is what Serve returns after Shutdown or Close.
var ErrServerClosed = errors.New("h2: server closed")

// Server serves HTTP/2 over cleartext TCP (h2c with prior knowledge), or
// over any connection handed to ServeConn, such as one a TLS listener
// negotiated "h2" on. Set its fields before it serves; a zero field takes
// its default.
type Server struct {
	Handler Handler

	// MaxConcurrentStreams bounds the streams a connection may have open
	// at once, handlers still running included: it is advertised in
	// SETTINGS, and a stream over it is refused (RST_STREAM
	// REFUSED_STREAM).
	MaxConcurrentStreams uint32
	// MaxBodyBytes bounds a request's body: a content-length over it, or
	// DATA past it, is answered 413 at once. It is also each stream's
	// receive window, so that a client never waits for a WINDOW_UPDATE to
	// send a body it may send.
	MaxBodyBytes int
	// MaxHeaderBytes bounds a request's decoded header list, as RFC 9113
	// §6.5.2 counts it (name, value and 32 bytes a field): advertised as
	// SETTINGS_MAX_HEADER_LIST_SIZE, answered 431 over it. A header block
	// of more than twice as many bytes on the wire closes the connection.
	MaxHeaderBytes int

	// ReadTimeout bounds the client's preface and first SETTINGS from the
	// connection's start, each frame from its first byte, and the wait
	// for the next frame while a request is still arriving.
	ReadTimeout time.Duration
	// IdleTimeout closes a connection that has had no stream open for
	// that long. While handlers run, nothing is expected from the client,
	// and no read deadline is set.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write, and an answer's wait for the
	// client's flow-control window: past it, the connection is closed.
	WriteTimeout time.Duration

	// HandleOnHead calls Handler as soon as a request's header block is
	// in, when the rest of its request has not arrived with it, rather
	// than at its END_STREAM: the handler reads the body with
	// Request.ReadBody, which sends a 100 (Continue) first when the
	// client waits for one, or answers without it, as a handler refusing
	// the request on its head does (a 401, a 405). Such an answer goes
	// out at once, followed by RST_STREAM NO_ERROR so that the client
	// stops sending the body (body.go). Without HandleOnHead,
	// Request.Body is always the whole body.
	HandleOnHead bool

	// Refused, if set, is told of every request or connection the server
	// refuses itself, before any handler: the client's address, and the
	// answer, an HTTP status ("431"), "RST_STREAM" or "GOAWAY" with its
	// error code ("RST_STREAM PROTOCOL_ERROR"), and for a GOAWAY why. It
	// is called with the connection's lock held, and must not block.
	Refused func(remote net.Addr, answer, reason string)

	setup    sync.Once
	shutting atomic.Bool

	mu          sync.Mutex
	listeners   acceptloop.Listeners
	conns       map[*conn]struct{}
	handlerPool handlerPool
}

// init applies the defaults, once.
func (s *Server) init() {
	s.setup.Do(func() {
		if s.MaxConcurrentStreams == 0 {
			s.MaxConcurrentStreams = DefaultMaxConcurrentStreams
		}
		if s.MaxBodyBytes <= 0 {
			s.MaxBodyBytes = DefaultMaxBodyBytes
		}
		s.MaxBodyBytes = min(s.MaxBodyBytes, maxWindow)
		if s.MaxHeaderBytes <= 0 {
			s.MaxHeaderBytes = DefaultMaxHeaderBytes
		}
		s.MaxHeaderBytes = min(s.MaxHeaderBytes, 1<<24)
		for _, d := range []struct {
			t   *time.Duration
			def time.Duration
		}{
			{&s.ReadTimeout, DefaultReadTimeout},
			{&s.IdleTimeout, DefaultIdleTimeout},
			{&s.WriteTimeout, DefaultWriteTimeout},
		} {
			if *d.t <= 0 {
				*d.t = d.def
			}
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

// ServeConn serves one connection until it closes and every handler it
// started has returned. prefix is what was already read from nc, such as
// the preface package h1 sniffed (h1.ErrHTTP2Preface): it is read first.
// ServeConn closes nc.
func (s *Server) ServeConn(nc net.Conn, prefix []byte) {
	s.init()
	c := newConn(s, nc, prefix)
	s.mu.Lock()
	if s.shuttingDown() {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.handlerPool.connOpened()
	c.serve()
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
	s.handlerPool.connClosed()
}

// shutdownPoll is how often Shutdown looks for connections gone.
const shutdownPoll = 10 * time.Millisecond

// Shutdown stops accepting and sends every connection a GOAWAY naming the
// last stream it took: the streams up to it finish and are answered,
// later ones are refused (REFUSED_STREAM, safe to retry elsewhere), and
// the connection closes once its last stream is answered. Shutdown
// returns once every connection is closed, or when ctx is done: then it
// closes the rest, and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.shutting.Store(true)
	s.listeners.Close()
	t := time.NewTicker(shutdownPoll)
	defer t.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		for c := range s.conns {
			c.goAway() // idempotent: a connection past its preface since the last poll gets its own
		}
		s.mu.Unlock()
		if n == 0 {
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

// Close stops accepting and closes every connection now; their handlers
// still running finish, their answers dropped.
func (s *Server) Close() error {
	s.init()
	s.shutting.Store(true)
	s.listeners.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.nc.Close()
	}
	return nil
}
