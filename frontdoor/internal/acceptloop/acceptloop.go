// Package acceptloop is the accept loop and listener bookkeeping the
// front door's HTTP/1.1 and HTTP/2 servers share.
package acceptloop

import (
	"errors"
	"net"
	"sync"
	"time"
)

// Listeners are a server's listeners, each served by Serve until Close.
// The zero value is ready to use.
type Listeners struct {
	mu  sync.Mutex
	set map[net.Listener]struct{}
}

// Serve accepts connections on ln and hands each to serve on its own
// goroutine, until closing() is true after an accept error (then it
// returns closedErr), ln is closed, or an accept error that is not
// temporary. It closes ln. A listener given after Close, with closing()
// true, is closed at once.
func (l *Listeners) Serve(ln net.Listener, closing func() bool, closedErr error, serve func(net.Conn)) error {
	l.mu.Lock()
	if closing() {
		l.mu.Unlock()
		ln.Close()
		return closedErr
	}
	if l.set == nil {
		l.set = make(map[net.Listener]struct{})
	}
	l.set[ln] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.set, ln)
		l.mu.Unlock()
		ln.Close()
	}()

	var delay time.Duration // after an error such as EMFILE, as net/http
	for {
		nc, err := ln.Accept()
		switch {
		case err == nil:
			delay = 0
			go serve(nc)
		case closing():
			return closedErr
		case errors.Is(err, net.ErrClosed):
			return err
		default:
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
		}
	}
}

// Close closes the listeners; their Serve returns. The server marks
// itself closing first, so that a Serve that starts after Close sees it.
func (l *Listeners) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ln := range l.set {
		ln.Close()
	}
}
