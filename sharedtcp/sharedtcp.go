// Package sharedtcp is a Caddy network, "sharedtcp", whose listening
// socket passes from one config to the next on a reload without losing a
// connection.
//
// Caddy's own tcp listeners on Linux open a new SO_REUSEPORT socket for
// every config and close the old config's socket when it is unloaded. The
// kernel spreads new connections over every socket bound to the port, so
// the ones queued on the old socket but not yet accepted when it closes
// are reset (unless net.ipv4.tcp_migrate_req is 1). An ilp-plugin-http peer
// turns that reset into a final F02 for its packet. A sharedtcp address
// instead keeps one socket for as long as any config uses it:
//
//   - one goroutine accepts on it, and hands each connection to the newest
//     config still listening, so from the moment a new config listens the
//     old one gets no new connections;
//   - the kernel completes a connection's accept only once its first bytes
//     are there (TCP_DEFER_ACCEPT), so a config reads a request at once;
//   - a plaintext connection the old config closes while a newer config
//     listens is handed to the newer one instead, with what was read from
//     it since its last answer: a keep-alive connection closed as idle
//     (HTTP/1.1's race, where the peer sends its next request just as the
//     server closes) and a request net/http read and dropped because its
//     server began to shut down are both served by the new config.
//
// TLS connections cannot move (their session state is in the old
// config's crypto/tls): for them only the first two hold.
//
// Use it in a listen address, as `bind sharedtcp/127.0.0.1` in a Caddyfile
// site or "listen": ["sharedtcp/:7768"] in JSON.
package sharedtcp

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/ilp-edge/caddy-ilp/internal/deferaccept"
)

// Network is the network name of shared TCP listen addresses.
const Network = "sharedtcp"

// sockets holds the listening sockets, keyed by host:port, for as long
// as any config uses them.
var sockets = caddy.NewUsagePool()

// Listen is the caddy.ListenerFunc of the sharedtcp network.
func Listen(ctx context.Context, _, host, portRange string, portOffset uint, cfg net.ListenConfig) (any, error) {
	start, _, _ := strings.Cut(portRange, "-")
	port, err := strconv.ParseUint(start, 10, 16)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(host, strconv.FormatUint(port+uint64(portOffset), 10))
	v, _, err := sockets.LoadOrNew(addr, func() (caddy.Destructor, error) {
		cfg.Control = deferaccept.Control
		ln, err := cfg.Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		s := &socket{ln: ln, done: make(chan struct{})}
		go s.accept()
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	s := v.(*socket)
	l := &listener{socket: s, key: addr, conns: make(chan *conn), closed: make(chan struct{})}
	s.mu.Lock()
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	return l, nil
}

// socket is one listening socket, its accept loop and the configs'
// listeners on it, oldest first.
type socket struct {
	ln        net.Listener
	done      chan struct{} // closed when the last config lets the socket go
	mu        sync.Mutex
	listeners []*listener
}

// accept takes connections off the socket until it is closed.
func (s *socket) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			// EMFILE and the like pass; wait a little, as net/http does.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !s.deliver(&conn{Conn: c, socket: s}, nil) {
			c.Close()
			return
		}
	}
}

// deliver hands c to the newest open listener other than not, waiting
// for it to ask; false when there is none or the socket is closing.
func (s *socket) deliver(c *conn, not *listener) bool {
	for {
		s.mu.Lock()
		var l *listener
		if n := len(s.listeners); n > 0 && s.listeners[n-1] != not {
			l = s.listeners[n-1]
		}
		s.mu.Unlock()
		if l == nil {
			return false
		}
		c.owner = l
		select {
		case l.conns <- c:
			return true
		case <-l.closed: // closed meanwhile: the next newest takes it
		case <-s.done:
			return false
		}
	}
}

// newerThan reports whether a listener newer than l is open.
func (s *socket) newerThan(l *listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.listeners)
	return n > 0 && s.listeners[n-1] != l
}

// Destruct closes the socket once no config uses it.
func (s *socket) Destruct() error {
	close(s.done)
	return s.ln.Close()
}

// listener is one config's view of a shared socket.
type listener struct {
	*socket
	key       string
	conns     chan *conn // unbuffered: a connection goes to a listener that asked
	closed    chan struct{}
	closeOnce sync.Once
}

// Accept returns the next connection, until this listener is closed.
func (l *listener) Accept() (net.Conn, error) {
	select {
	case <-l.closed:
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops this listener; the socket stays open while another config
// uses it.
func (l *listener) Close() error {
	err := net.ErrClosed
	l.closeOnce.Do(func() {
		close(l.closed)
		l.mu.Lock()
		l.listeners = slices.DeleteFunc(l.listeners, func(o *listener) bool { return o == l })
		l.mu.Unlock()
		_, err = sockets.Delete(l.key)
	})
	return err
}

// Addr is the socket's address.
func (l *listener) Addr() net.Addr { return l.ln.Addr() }

// maxReplay bounds what a connection keeps of the bytes read from it since
// its last write: the request a closing config read but did not answer.
const maxReplay = 64 << 10

// conn is an accepted connection that remembers what was read from it
// since it last wrote, so that a closing config can pass it, with that
// request, to the next config.
type conn struct {
	net.Conn
	socket *socket
	owner  *listener // the listener it was handed to

	readMu sync.Mutex // held across a read of Conn: Close waits for it

	mu         sync.Mutex
	replay     []byte // to be read before Conn, after a handover
	unanswered []byte // read since the last write
	overflow   bool   // unanswered is incomplete: no handover
	tls        bool   // the peer speaks TLS: its session cannot move
	read       bool   // anything was read yet
	closed     bool
}

func (c *conn) Read(b []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	if len(c.replay) > 0 {
		n := copy(b, c.replay)
		c.replay = c.replay[n:]
		c.remember(b[:n])
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	c.remember(b[:n])
	c.mu.Unlock()
	return n, err
}

// remember keeps b as read and not yet answered; c.mu is held.
func (c *conn) remember(b []byte) {
	if len(b) == 0 {
		return
	}
	if !c.read {
		c.read, c.tls = true, b[0] == 0x16 // a TLS handshake record
	}
	if c.overflow {
		return
	}
	if len(c.unanswered)+len(b) > maxReplay {
		c.overflow, c.unanswered = true, nil
		return
	}
	c.unanswered = append(c.unanswered, b...)
}

func (c *conn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	c.unanswered, c.overflow = c.unanswered[:0], false
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// Close closes the connection, unless a config newer than its owner
// listens (a reload is under way) and the connection can move: then the
// newer config gets it, and first reads what was read since the last
// answer. That covers a keep-alive connection closed as idle (nothing
// unanswered: its peer's next request goes to the new config) and a
// request net/http read and dropped because its server is shutting down.
// A connection left mid-request would only be closed by the new config
// in its turn; one closed after a final answer is closed by its peer.
func (c *conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	movable := !c.tls && !c.overflow
	c.mu.Unlock()
	if !movable || !c.socket.newerThan(c.owner) {
		return c.Conn.Close()
	}
	// Wake a read the old config has blocked (an idle keep-alive
	// connection waits for its next request) and wait for it to return,
	// so that no byte goes to it; what it did get is in unanswered.
	if c.Conn.SetReadDeadline(time.Now()) != nil {
		return c.Conn.Close()
	}
	c.readMu.Lock()
	c.readMu.Unlock()
	c.mu.Lock()
	next := &conn{Conn: c.Conn, socket: c.socket, replay: c.unanswered, read: c.read}
	c.mu.Unlock()
	if c.Conn.SetDeadline(time.Time{}) != nil {
		return c.Conn.Close()
	}
	// The handover does not hold up the old config's Close while the new
	// one gets round to Accept.
	go func() {
		if !c.socket.deliver(next, c.owner) {
			next.Conn.Close()
		}
	}()
	return nil
}

var _ net.Listener = (*listener)(nil)
