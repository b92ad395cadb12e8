// Command epollfloor is gofloor (../gofloor) on raw epoll: the least an
// event-loop HTTP/1.1 forwarder does per packet, to measure the floor of
// the "one event loop per core" design before building it.
//
// It runs one loop per GOMAXPROCS, each a goroutine locked to its thread
// with its own epoll set and its own SO_REUSEPORT listening socket on the
// same address, so that the kernel spreads connections over the loops and
// no connection ever moves between them. A loop owns everything it
// touches (its clients, and its own keep-alive pool per upstream, dialed
// non-blocking on demand), so it needs no locks.
//
// Per request it does what gofloor does: it parses the head (request line,
// headers, Content-Length), ranks ILP-Destination over the upstreams with
// ilpdest.Rank, writes the request on a pooled connection in one write,
// reads the reply (status line, Content-Length body) and writes the answer
// in one write. It forwards ILP-Destination (gofloor does not) and the
// reply's status line. Anything outside this subset (another version, no
// Content-Length, Transfer-Encoding, bad lines) gets 400 and a close; an
// upstream that fails before its reply gets the client a 502. A client
// that shuts down while its request is at the upstream is taken as gone
// (as nginx does): the reply is read, dropped, and the connection pooled.
// No timeouts, no limits beyond the sizes, no metrics, no retries: a
// measuring tool for loopback.
//
// On SIGINT or SIGTERM it prints, per loop, the connections it accepted
// and the syscalls it made per request. -loops overrides the number of
// loops (to try fewer loops than GOMAXPROCS).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/internal/httpsyntax"
)

const (
	maxHead = 8 << 10 // a request's or reply's head
	maxBody = 1 << 16 // as gofloor
	// maxIn bounds a connection's input buffer: one whole message fits.
	maxIn = maxHead + maxBody
)

var (
	answer400 = []byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
	answer502 = []byte("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on (loopback)")
	upstreams := flag.String("upstreams", "", "comma-separated host:port of the stubs")
	loops := flag.Int("loops", runtime.GOMAXPROCS(0), "event loops (default GOMAXPROCS)")
	flag.Parse()
	s, err := start(*listen, strings.Split(*upstreams, ","), *loops)
	if err != nil {
		log.Fatalf("epollfloor: %v", err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	s.Close()
	// How the kernel spread the connections matters to the numbers.
	for i, l := range s.loops {
		r := float64(max(l.requests, 1))
		fmt.Fprintf(os.Stderr, "epollfloor: loop %d: %d clients, %d upstream dials, %d requests, %d blocked writes; per request %.2f epoll_wait (%.2f events), %.2f read, %.2f write\n",
			i, l.accepted, l.dials, l.requests, l.blocked, float64(l.waits)/r, float64(l.events)/r, float64(l.reads)/r, float64(l.writes)/r)
	}
}

// server is the running loops.
type server struct {
	addr  string
	loops []*loop
	wg    sync.WaitGroup
	once  sync.Once
}

// start listens on listen with n loops forwarding to upstreams. With port
// 0, the first socket picks the port and the others bind the same one.
func start(listen string, upstreams []string, n int) (*server, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, err
	}
	la, err := net.ResolveTCPAddr("tcp", listen)
	if err != nil {
		return nil, err
	}
	var ups []*net.TCPAddr
	for _, a := range upstreams {
		ua, err := net.ResolveTCPAddr("tcp", a)
		if err != nil {
			return nil, err
		}
		ups = append(ups, ua)
	}
	s := &server{}
	sa := sockaddr(la)
	for i := range n {
		l := &loop{names: upstreams, idle: make([][]*conn, len(upstreams)), lfd: -1, efd: -1, epfd: -1}
		for _, ua := range ups {
			// Each loop its own: Connect writes into a Sockaddr.
			l.addrs = append(l.addrs, sockaddr(ua))
		}
		s.loops = append(s.loops, l)
		if err := l.init(sa); err != nil {
			s.closeFDs()
			return nil, err
		}
		if i == 0 {
			got, err := unix.Getsockname(l.lfd)
			if err != nil {
				s.closeFDs()
				return nil, err
			}
			port := 0
			switch got := got.(type) {
			case *unix.SockaddrInet4:
				port = got.Port
				sa.(*unix.SockaddrInet4).Port = port
			case *unix.SockaddrInet6:
				port = got.Port
				sa.(*unix.SockaddrInet6).Port = port
			}
			s.addr = net.JoinHostPort(host, strconv.Itoa(port))
		}
	}
	for _, l := range s.loops {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			l.run()
		}()
	}
	return s, nil
}

// Addr is the host:port the loops listen on.
func (s *server) Addr() string { return s.addr }

// Close stops the loops, which close their connections, and waits for them.
func (s *server) Close() {
	s.once.Do(func() {
		one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
		for _, l := range s.loops {
			unix.Write(l.efd, one)
		}
		s.wg.Wait()
		s.closeFDs()
	})
}

// closeFDs closes the eventfds, which only Close writes, after the loops.
func (s *server) closeFDs() {
	for _, l := range s.loops {
		for _, fd := range []int{l.lfd, l.epfd, l.efd} {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}
}

func sockaddr(a *net.TCPAddr) unix.Sockaddr {
	if ip4 := a.IP.To4(); ip4 != nil || a.IP == nil {
		sa := &unix.SockaddrInet4{Port: a.Port}
		copy(sa.Addr[:], ip4)
		return sa
	}
	sa := &unix.SockaddrInet6{Port: a.Port}
	copy(sa.Addr[:], a.IP.To16())
	return sa
}

const connEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

type kind uint8

const (
	kindListener kind = iota
	kindWake
	kindClient
	kindUpstream
)

// conn is a client or upstream connection (or the listener or eventfd,
// which only need fd and kind).
type conn struct {
	fd    int // -1 once closed
	gen   uint32
	kind  kind
	in    []byte // input read; in[start:] is not consumed yet
	start int
	out   []byte // output not written yet
	// readable: the socket may hold unread input (edge-triggered, we must
	// remember it ourselves). eof: the peer shut down or the socket has an
	// error, so a short read does not mean drained: read on until 0.
	readable, eof bool

	// client
	up       *conn // the upstream the request in flight went to
	closing  bool  // close once out is written
	draining bool  // written and shut down: discard input until EOF

	// upstream
	pool       int   // index in loop.names
	client     *conn // the client waiting for the reply; nil: discard it
	busy       bool  // a request is in flight (not in the pool)
	connecting bool  // non-blocking connect not finished
}

// loop is one event loop: an epoll set, a listening socket, an eventfd to
// stop it, and everything its connections need.
type loop struct {
	names          []string
	addrs          []unix.Sockaddr
	idle           [][]*conn // per upstream, LIFO
	epfd, lfd, efd int
	conns          []*conn // by fd: fds are small ints
	gen            uint32
	order          []int
	stop           bool

	// Counters, read after the loop ends: clients accepted, upstream
	// connections dialed, requests forwarded, writes the socket did not
	// take whole, replies discarded because the client had gone.
	accepted, dials, requests, blocked, discarded int64
	// Syscalls: epoll_wait, the events it returned, reads, writes.
	waits, events, reads, writes int64
}

func (l *loop) init(sa unix.Sockaddr) error {
	var err error
	if l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return err
	}
	if l.efd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		return err
	}
	family := unix.AF_INET
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		family = unix.AF_INET6
	}
	if l.lfd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0); err != nil {
		return err
	}
	unix.SetsockoptInt(l.lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err = unix.SetsockoptInt(l.lfd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return err
	}
	if err = unix.Bind(l.lfd, sa); err != nil {
		return err
	}
	if err = unix.Listen(l.lfd, 4096); err != nil {
		return err
	}
	// Input only: an eventfd is always writable, so EPOLLOUT would wake
	// the loop (and stop it) at once.
	if err = l.add(&conn{fd: l.lfd, kind: kindListener}, unix.EPOLLIN|unix.EPOLLET); err != nil {
		return err
	}
	return l.add(&conn{fd: l.efd, kind: kindWake}, unix.EPOLLIN|unix.EPOLLET)
}

// add registers c once with events; connections, edge-triggered, for
// input and output (connEvents). Registering
// EPOLLOUT for good costs nothing (it is reported only with another event
// or after a write found the socket full) and saves the epoll_ctl(MOD)
// per partial write that level-triggered interest would need, as nginx and
// Go's netpoller do. The generation in the event's spare 32 bits makes an
// event for a closed fd, reused by a later accept or dial in the same
// batch, recognisable.
func (l *loop) add(c *conn, events uint32) error {
	l.gen++
	c.gen = l.gen
	for c.fd >= len(l.conns) {
		l.conns = append(l.conns, nil)
	}
	l.conns[c.fd] = c
	ev := unix.EpollEvent{Events: events, Fd: int32(c.fd), Pad: int32(c.gen)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		l.conns[c.fd] = nil
		return err
	}
	return nil
}

func (l *loop) run() {
	// Locked, the loop keeps its thread (and its caches) for good; Go's
	// scheduler still hands its P to others while it sleeps in epoll_wait.
	runtime.LockOSThread()
	events := make([]unix.EpollEvent, 128)
	for !l.stop {
		n, err := l.wait(events)
		l.events += int64(n)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			log.Printf("epollfloor: epoll_wait: %v", err)
			break
		}
		for i := range n {
			l.handle(&events[i])
		}
	}
	for _, c := range l.conns {
		if c != nil && (c.kind == kindClient || c.kind == kindUpstream) {
			l.close(c)
		}
	}
}

// sysRead, sysWrite and wait are the loop's syscalls, counted. (Making
// read and write raw syscalls, which skip telling the scheduler, and
// polling epoll_wait(0) before blocking, as cloudwego/netpoll does, made
// no measurable difference here.)
func (l *loop) sysRead(fd int, p []byte) (int, error) {
	l.reads++
	return unix.Read(fd, p)
}

func (l *loop) sysWrite(fd int, p []byte) (int, error) {
	l.writes++
	return unix.Write(fd, p)
}

func (l *loop) wait(events []unix.EpollEvent) (int, error) {
	l.waits++
	return unix.EpollWait(l.epfd, events, -1)
}

func (l *loop) handle(ev *unix.EpollEvent) {
	fd := int(ev.Fd)
	if fd >= len(l.conns) || l.conns[fd] == nil || l.conns[fd].gen != uint32(ev.Pad) {
		return // closed earlier in this batch
	}
	c := l.conns[fd]
	if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.readable = true
		c.eof = c.eof || ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
	}
	switch c.kind {
	case kindListener:
		l.accept()
	case kindWake:
		l.stop = true
	case kindClient:
		l.serveClient(c)
	case kindUpstream:
		l.serveUpstream(c, ev.Events)
	}
}

// accept takes every pending connection: edge-triggered, the listener
// reports none again until a new one arrives.
func (l *loop) accept() {
	for {
		fd, _, err := unix.Accept4(l.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch err {
		case nil:
		case unix.EINTR, unix.ECONNABORTED:
			continue
		case unix.EAGAIN:
			return
		default: // EMFILE and the like: the next connection retries
			log.Printf("epollfloor: accept: %v", err)
			return
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) // as Go's net does
		if err := l.add(&conn{fd: fd, kind: kindClient, in: make([]byte, 0, 4096)}, connEvents); err != nil {
			unix.Close(fd)
			continue
		}
		l.accepted++
	}
}

// serveClient advances a client as far as it can without blocking: write
// pending output, then forward the next buffered request, reading more
// input only when no whole request is buffered. It returns when it waits
// for the socket or for the upstream, which calls it again.
func (l *loop) serveClient(c *conn) {
	for c.fd >= 0 {
		if len(c.out) > 0 {
			done, err := l.flush(c)
			if err != nil {
				l.close(c)
				return
			}
			if !done {
				return // EPOLLOUT calls us again
			}
		}
		if c.up != nil {
			// The upstream's reply calls us again. But if the client
			// shut down, find out now (reading past any pipelined
			// requests): EOF means it is gone, as nginx takes it (a
			// half-close looks the same), and the reply is discarded.
			if c.eof && c.readable {
				if err := l.fill(c); err != nil && err != errFull {
					l.close(c)
				} else if err == nil {
					continue
				}
			}
			return
		}
		if c.closing && !c.draining {
			// Closing with unread input would send a RST that can
			// destroy the answer before the client reads it: send FIN
			// and discard what it still sends until it closes.
			unix.Shutdown(c.fd, unix.SHUT_WR)
			c.draining = true
		}
		if c.draining {
			c.in, c.start = c.in[:0], 0
			if err := l.fill(c); err != nil {
				l.close(c)
				return
			}
			if !c.readable {
				return
			}
			continue
		}
		h, err := parseHead(c.in[c.start:], true)
		if err == nil && h.n > 0 && h.length < 0 {
			err = errLength
		}
		if err != nil {
			c.out, c.closing = append(c.out[:0], answer400...), true
			continue
		}
		if end := c.start + h.n + h.length; h.n > 0 && end <= len(c.in) {
			body := c.in[c.start+h.n : end]
			c.start, c.closing = end, h.close
			l.requests++
			if !l.forward(c, h.dest, body) {
				c.out = append(c.out, answer502...)
			}
			if c.start == len(c.in) {
				c.in, c.start = c.in[:0], 0
			}
			continue
		}
		if !c.readable {
			return
		}
		if err := l.fill(c); err != nil {
			l.close(c) // EOF or error between requests (or inside one)
			return
		}
	}
}

// forward sends the request to the upstream ranked first, on an idle
// connection of this loop's pool or a new one. False: the client gets 502.
func (l *loop) forward(c *conn, dest, body []byte) bool {
	// Rank does not keep the key: no need to copy it into a string.
	l.order = ilpdest.Rank(unsafe.String(unsafe.SliceData(dest), len(dest)), l.names, l.order[:0])
	i := l.order[0]
	var u *conn
	if n := len(l.idle[i]); n > 0 {
		u = l.idle[i][n-1]
		l.idle[i] = l.idle[i][:n-1]
	} else if u = l.dial(i); u == nil {
		return false
	}
	u.busy, u.client, c.up = true, c, u
	u.out = append(u.out[:0], "POST / HTTP/1.1\r\nHost: stub\r\nContent-Type: application/octet-stream\r\n"...)
	if len(dest) > 0 {
		u.out = append(append(append(u.out, "ILP-Destination: "...), dest...), "\r\n"...)
	}
	u.out = append(u.out, "Content-Length: "...)
	u.out = strconv.AppendInt(u.out, int64(len(body)), 10)
	u.out = append(append(u.out, "\r\n\r\n"...), body...)
	if u.connecting {
		return true // written on EPOLLOUT
	}
	if _, err := l.flush(u); err != nil {
		u.client, c.up = nil, nil
		l.close(u)
		return false
	}
	return true
}

// dial opens a non-blocking connection to upstream i; nil if it failed.
func (l *loop) dial(i int) *conn {
	family := unix.AF_INET
	if _, ok := l.addrs[i].(*unix.SockaddrInet6); ok {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	err = unix.Connect(fd, l.addrs[i])
	if err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return nil
	}
	u := &conn{fd: fd, kind: kindUpstream, pool: i, connecting: err != nil, in: make([]byte, 0, 4096)}
	if l.add(u, connEvents) != nil {
		unix.Close(fd)
		return nil
	}
	l.dials++
	return u
}

// serveUpstream finishes a connect, writes the rest of the request and
// reads the reply; a complete reply goes to the client.
func (l *loop) serveUpstream(u *conn, events uint32) {
	if u.connecting {
		if events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		if errno, err := unix.GetsockoptInt(u.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || errno != 0 {
			l.failUpstream(u)
			return
		}
		u.connecting = false
	}
	if len(u.out) > 0 {
		if _, err := l.flush(u); err != nil {
			l.failUpstream(u)
			return
		}
	}
	for u.readable {
		// An idle connection has nothing to say: input is EOF or junk.
		if err := l.fill(u); err != nil || !u.busy && len(u.in) > 0 {
			l.failUpstream(u)
			return
		}
		h, err := parseHead(u.in[u.start:], false)
		if err != nil || h.n > 0 && h.length < 0 {
			l.failUpstream(u)
			return
		}
		if end := u.start + h.n + h.length; h.n > 0 && end <= len(u.in) {
			l.reply(u, h, u.in[u.start+h.n:end])
			return
		}
	}
}

// reply answers the client (if still there) and pools the upstream, or
// closes it if it asked to or the exchange was not clean.
func (l *loop) reply(u *conn, h head, body []byte) {
	c := u.client
	u.busy, u.client = false, nil
	if c == nil {
		l.discarded++
	} else {
		c.up = nil
		c.out = append(c.out, h.first...)
		c.out = append(c.out, "\r\nContent-Type: application/octet-stream\r\nContent-Length: "...)
		c.out = strconv.AppendInt(c.out, int64(len(body)), 10)
		c.out = append(append(c.out, "\r\n\r\n"...), body...)
	}
	if h.close || u.eof || len(u.out) > 0 || u.start+h.n+len(body) != len(u.in) {
		l.close(u)
	} else {
		u.in, u.start = u.in[:0], 0
		l.idle[u.pool] = append(l.idle[u.pool], u)
	}
	if c != nil {
		l.serveClient(c)
	}
}

// failUpstream drops u and gives its client, if any, a 502.
func (l *loop) failUpstream(u *conn) {
	c := u.client
	l.close(u)
	if c != nil {
		c.up = nil
		c.out = append(c.out, answer502...)
		l.serveClient(c)
	}
}

// fill reads once into c.in, compacting or growing it first. A short read
// means the socket is drained (Linux raises a new edge for any new input),
// which saves the read that would return EAGAIN, as nginx does; not after
// EPOLLRDHUP, when the EOF may be behind the data. An error includes EOF.
func (l *loop) fill(c *conn) error {
	if c.start > 0 {
		c.in = c.in[:copy(c.in, c.in[c.start:])]
		c.start = 0
	}
	if len(c.in) == cap(c.in) {
		if cap(c.in) >= maxIn {
			return errFull
		}
		c.in = append(make([]byte, 0, min(2*cap(c.in), maxIn)), c.in...)
	}
	room := cap(c.in) - len(c.in)
	for {
		n, err := l.sysRead(c.fd, c.in[len(c.in):cap(c.in)])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			c.readable = false
			return nil
		case err != nil:
			return err
		case n == 0:
			return errEOF
		}
		c.in = c.in[:len(c.in)+n]
		if n < room && !c.eof {
			c.readable = false
		}
		return nil
	}
}

var (
	errEOF  = errors.New("EOF")
	errFull = errors.New("input buffer full") // only with whole messages in it
)

// flush writes c.out. It reports whether all of it is written; if not,
// the rest waits for EPOLLOUT.
func (l *loop) flush(c *conn) (bool, error) {
	for len(c.out) > 0 {
		n, err := l.sysWrite(c.fd, c.out)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			l.blocked++
			return false, nil
		case err != nil:
			return false, err
		}
		if n < len(c.out) {
			c.out = c.out[:copy(c.out, c.out[n:])]
			continue // the next write most likely says EAGAIN
		}
		c.out = c.out[:0]
	}
	return true, nil
}

// close closes c's fd, which also takes it out of the epoll set, and
// unlinks c from its peer or pool.
func (l *loop) close(c *conn) {
	if c.fd < 0 {
		return
	}
	unix.Close(c.fd)
	l.conns[c.fd] = nil
	c.fd = -1
	switch {
	case c.kind == kindClient && c.up != nil:
		c.up.client = nil // the reply will be read and discarded
	case c.kind == kindUpstream && !c.busy:
		p := l.idle[c.pool]
		for i, u := range p {
			if u == c {
				l.idle[c.pool] = append(p[:i], p[i+1:]...)
				break
			}
		}
	}
}

// head is what the forwarder needs from a request's or reply's head.
type head struct {
	n      int    // bytes, up to the blank line; 0: not all read yet
	first  []byte // the request or status line
	length int    // Content-Length; -1: none
	dest   []byte // ILP-Destination
	close  bool   // Connection: close
}

var (
	errHead   = errors.New("malformed head")
	errLength = errors.New("no usable Content-Length")
)

// parseHead parses the head at the start of b. It accepts HTTP/1.1 only,
// lines ending in CRLF, one Content-Length of at most maxBody, and no
// Transfer-Encoding.
func parseHead(b []byte, request bool) (head, error) {
	h := head{length: -1}
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			if len(b) > maxHead {
				return h, errHead
			}
			return head{}, nil // wait for more
		}
		line := b[i : i+j]
		i += j + 1
		if i > maxHead || len(line) == 0 || line[len(line)-1] != '\r' {
			return h, errHead
		}
		line = line[:len(line)-1]
		if h.first == nil {
			if !validFirst(line, request) {
				return h, errHead
			}
			h.first = line
			continue
		}
		if len(line) == 0 {
			h.n = i
			return h, nil
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !isToken(name) || !isValue(value) {
			return h, errHead
		}
		value = bytes.Trim(value, " \t")
		switch {
		case httpsyntax.EqualFold(name, "content-length"):
			n, err := strconv.Atoi(string(value)) // no allocation: Atoi does not keep it
			if err != nil || value[0] < '0' || value[0] > '9' || n > maxBody || h.length >= 0 && n != h.length {
				return h, errLength
			}
			h.length = n
		case httpsyntax.EqualFold(name, "transfer-encoding"):
			return h, errLength
		case httpsyntax.EqualFold(name, "ilp-destination"):
			h.dest = value
		case httpsyntax.EqualFold(name, "connection"):
			h.close = httpsyntax.EqualFold(value, "close")
		}
	}
}

// validFirst checks a request line "METHOD target HTTP/1.1" or a status
// line "HTTP/1.1 ddd reason".
func validFirst(line []byte, request bool) bool {
	if !request {
		return len(line) >= 12 && string(line[:9]) == "HTTP/1.1 " &&
			isDigits(line[9:12]) && (len(line) == 12 || line[12] == ' ')
	}
	method, rest, ok := bytes.Cut(line, []byte(" "))
	target, version, ok2 := bytes.Cut(rest, []byte(" "))
	return ok && ok2 && isToken(method) && len(target) > 0 &&
		bytes.IndexByte(target, ' ') < 0 && string(version) == "HTTP/1.1"
}

func isToken(b []byte) bool {
	for _, c := range b {
		if httpsyntax.Chars[c]&httpsyntax.Token == 0 {
			return false
		}
	}
	return len(b) > 0
}

func isValue(b []byte) bool {
	for _, c := range b {
		if httpsyntax.Chars[c]&httpsyntax.Value == 0 {
			return false
		}
	}
	return true
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
