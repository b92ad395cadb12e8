package frontdoor

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/ilp-edge/caddy-ilp/frontdoor/h1"
	"github.com/ilp-edge/caddy-ilp/frontdoor/h2"
	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/handler/proxy"
	"github.com/ilp-edge/caddy-ilp/internal/deferaccept"
	"github.com/ilp-edge/caddy-ilp/internal/loglimit"
	"github.com/ilp-edge/caddy-ilp/internal/rawio"
)

// Server is one front door: listeners, and the handlers every request
// on them goes through.
type Server struct {
	// The addresses to listen on, in Caddy's network address form
	// (`127.0.0.1:9090`, `:9090`, `tcp/[::1]:9090-9092`, `unix//run/ilp.sock`).
	Listen []string `json:"listen,omitempty"`

	// The handlers: an optional `ilp_edge`, then `ilp_proxy`, with the
	// same options as in a Caddy HTTP route.
	HandlersRaw []json.RawMessage `json:"handle,omitempty" caddy:"namespace=http.handlers inline_key=handler"`

	// How long a request's head may take to arrive from its first byte:
	// a peer that drips its headers is cut off. Default: 10s.
	ReadHeaderTimeout caddy.Duration `json:"read_header_timeout,omitempty"`

	// How long a body may take to arrive after its head. Default: 10s.
	ReadBodyTimeout caddy.Duration `json:"read_body_timeout,omitempty"`

	// How long an idle keep-alive connection stays open. Default: 75s.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`

	// How long writing an answer may take. Default: 10s.
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`

	// The largest request head in bytes, above which the answer is 431;
	// over HTTP/2, the decoded header list. Default: 8 KiB.
	MaxHeaderBytes int `json:"max_header_bytes,omitempty"`

	// HTTP/2: the most streams a connection may have open at once, past
	// which a stream is refused (REFUSED_STREAM). Default: 128.
	MaxConcurrentStreams uint32 `json:"max_concurrent_streams,omitempty"`

	// Serve HTTPS rather than plaintext HTTP/1.1.
	TLS *TLS `json:"tls,omitempty"`

	// Log every request, as a site's access log does, to the logger
	// ilp.log.access: the request (no headers), the peer as user_id, the
	// status, size and duration, and the packet's destination, amount,
	// result, Reject code and triggeredBy, and connector.
	AccessLog bool `json:"access_log,omitempty"`

	name   string
	key    string          // the listen addresses, for newest
	ctx    context.Context // the handlers' requests' parent
	edge   *handler.Edge   // nil: no ilp_edge
	proxy  *proxy.Proxy
	chain  caddyhttp.Handler
	srv    *h1.Server
	srv2   *h2.Server // for connections that start with HTTP/2's preface
	logger *zap.Logger
	// accessLog is nil without AccessLog.
	accessLog     *zap.Logger
	refusalLog    *loglimit.Limiter
	needsReplacer bool // a request's replacer is read: see answer
}

// provision loads the handlers and checks that they are ones that run
// outside Caddy's HTTP server.
func (s *Server) provision(ctx caddy.Context, name string) error {
	s.name = name
	// Not ctx: Caddy cancels a config's context as it stops, while its
	// packets in flight must still get their answers.
	s.ctx = context.Background()
	s.logger = ctx.Logger().With(zap.String("server", name))
	if s.AccessLog {
		s.accessLog = ctx.Logger().Named(accessLoggerName).With(zap.String("server", name))
	}
	s.refusalLog = &loglimit.Limiter{Interval: time.Second}
	if err := handler.RegisterCollectors(ctx.GetMetricsRegistry(), metricRefusals, openConns); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	if len(s.Listen) == 0 {
		return errors.New("no listen addresses")
	}
	for _, addr := range s.Listen {
		if _, err := caddy.ParseNetworkAddress(addr); err != nil {
			return fmt.Errorf("listen %q: %w", addr, err)
		}
	}
	mods, err := ctx.LoadModule(s, "HandlersRaw")
	if err != nil {
		return fmt.Errorf("loading handlers: %w", err)
	}
	handlers := mods.([]any)
	switch len(handlers) {
	case 2:
		edge, ok := handlers[0].(*handler.Edge)
		if !ok {
			return fmt.Errorf("handler 1 is %T: want ilp_edge, then ilp_proxy", handlers[0])
		}
		s.edge = edge
		fallthrough
	case 1:
		p, ok := handlers[len(handlers)-1].(*proxy.Proxy)
		if !ok {
			return fmt.Errorf("handler %d is %T: want ilp_proxy last", len(handlers), handlers[len(handlers)-1])
		}
		s.proxy = p
	default:
		return fmt.Errorf("%d handlers: want ilp_proxy, after ilp_edge or alone", len(handlers))
	}
	s.chain = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return s.proxy.ServeHTTP(w, r, nil)
	})
	if s.edge != nil {
		next := s.chain
		s.chain = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			return s.edge.ServeHTTP(w, r, next)
		})
	}
	s.needsReplacer = s.AccessLog || s.proxy.NeedsReplacer()
	if s.TLS != nil {
		if err := s.TLS.provision(ctx); err != nil {
			return err
		}
	}
	s.key = strings.Join(slices.Sorted(slices.Values(s.Listen)), " ")
	s.setupServers()
	return nil
}

// setupServers makes the HTTP/1.1 and HTTP/2 servers that hand the
// requests to the handlers.
//
// A body over what ilp_edge accepts is refused (413) before it is read,
// as Caddy's HTTP server lets ilp_edge refuse it. Both servers hand over
// a request whose body is still to come on its head (HandleOnHead), as
// net/http does: ilp_edge checks the method and authenticates the peer
// (by its credentials, or the TLS state of its connection) before it
// reads the body, so a 405 or 401 goes out at once, the body never
// awaited and "100 Continue" never sent, and the peer is authenticated
// once, by ilp_edge's own ServeHTTP, whose answers are those of a Caddy
// site.
func (s *Server) setupServers() {
	maxBody := handler.DefaultMaxPacketSize
	if s.edge != nil {
		maxBody = int(s.edge.MaxPacketSize)
	}
	s.srv2 = &h2.Server{
		Handler:              h2.HandlerFunc(s.serveH2),
		Refused:              s.refusedH2,
		HandleOnHead:         true,
		MaxBodyBytes:         maxBody,
		MaxConcurrentStreams: s.MaxConcurrentStreams,
		MaxHeaderBytes:       s.MaxHeaderBytes,
		ReadTimeout:          time.Duration(s.ReadBodyTimeout),
		IdleTimeout:          time.Duration(s.IdleTimeout),
		WriteTimeout:         time.Duration(s.WriteTimeout),
	}
	s.srv = &h1.Server{
		Handler:           h1.HandlerFunc(s.serveH1),
		Refused:           s.refusedH1,
		Handoff:           s.handoff,
		HTTP2:             s.srv2.ServeConn,
		HandleOnHead:      true,
		Limits:            h1.Limits{MaxHeaderBytes: s.MaxHeaderBytes, MaxBodyBytes: maxBody},
		ReadHeaderTimeout: time.Duration(s.ReadHeaderTimeout),
		BodyTimeout:       time.Duration(s.ReadBodyTimeout),
		IdleTimeout:       time.Duration(s.IdleTimeout),
		WriteTimeout:      time.Duration(s.WriteTimeout),
	}
}

// newest holds, by listen addresses, the server of the newest config
// that listens on them: a stopping config's server hands its connections
// to it, so that a config reload closes none.
var newest sync.Map // key → *Server

// handoff gives a connection the stopping server lets go of, between two
// requests, to the newest server on the same addresses, or closes it when
// there is none (Caddy is exiting, or the new config listens elsewhere).
func (s *Server) handoff(nc net.Conn, next []byte) {
	if n, ok := newest.Load(s.key); ok && n.(*Server) != s {
		go n.(*Server).srv.ServeConn(nc, next)
		return
	}
	nc.Close()
}

// start listens on every address and serves.
func (s *Server) start(ctx context.Context) error {
	if s.TLS != nil {
		if err := s.TLS.manage(); err != nil {
			return err
		}
	}
	newest.Store(s.key, s)
	openConns.add(s)
	for _, addr := range s.Listen {
		na, err := caddy.ParseNetworkAddress(addr)
		if err != nil {
			return fmt.Errorf("listen %q: %w", addr, err)
		}
		for port := range na.PortRangeSize() {
			// Peers speak first: a connection is accepted with its
			// first bytes there to read (package deferaccept; a
			// sharedtcp address does it for its shared socket).
			ln, err := na.Listen(ctx, port, net.ListenConfig{Control: deferaccept.Control})
			if err != nil {
				return fmt.Errorf("listen %q: %w", addr, err)
			}
			l, ok := ln.(net.Listener)
			if !ok {
				return fmt.Errorf("listen %q: not a stream listener", addr)
			}
			if s.TLS != nil {
				// crypto/tls reads and writes the socket with raw
				// system calls (package rawio), as the plaintext
				// connections do.
				l = tls.NewListener(rawListener{l}, s.TLS.config)
			}
			go func() {
				if err := s.srv.Serve(l); err != nil && !errors.Is(err, h1.ErrServerClosed) {
					s.logger.Error("serving stopped", zap.String("address", l.Addr().String()), zap.Error(err))
				}
			}()
			s.logger.Info("ilp front door listening", zap.String("address", l.Addr().String()))
		}
	}
	return nil
}

// stop shuts the server down within ctx: its HTTP/1.1 connections are
// handed to the newest server on its addresses, and its HTTP/2 ones told
// GOAWAY, so that their clients open new ones.
func (s *Server) stop(ctx context.Context) {
	var wg sync.WaitGroup
	for _, shutdown := range []func(context.Context) error{s.srv.Shutdown, s.srv2.Shutdown} {
		wg.Go(func() {
			if err := shutdown(ctx); err != nil {
				s.logger.Warn("packets still in flight at the end of the grace period: their connections closed", zap.Error(err))
			}
		})
	}
	wg.Wait()
	newest.CompareAndDelete(s.key, s)
	openConns.remove(s)
}

// rawListener hands out its connections with raw reads and writes
// (package rawio), for crypto/tls to make its own over.
type rawListener struct{ net.Listener }

func (l rawListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return rawio.Wrap(c), nil
}
