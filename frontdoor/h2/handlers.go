package h2

import "sync"

// This file runs handlers on goroutines kept from earlier streams.
//
// A new goroutine starts on a 2 KiB stack. A handler chain such as
// ilp_edge, ilp_proxy and its upstream write outgrows that, and the
// runtime grows the stack by copying it, twice, for every stream: about a
// tenth of the front door's CPU under h2c load. A goroutine that has run
// a handler keeps its grown stack for the next stream (until a garbage
// collection finds it mostly unused and shrinks it).

// maxIdleHandlers bounds the goroutines a server keeps waiting for a
// stream; past it, a handler's goroutine ends with its stream.
const maxIdleHandlers = 512

// handlerPool is a server's goroutines waiting for a stream. They are
// kept only while the server has a connection: when its last one closes,
// they end, so a server that serves nothing holds none.
//
// It counts connections itself rather than read Server.conns: run is
// called with a connection's lock held, and Shutdown takes connections'
// locks under the server's, so the pool's lock must be one of its own,
// taken last.
type handlerPool struct {
	mu    sync.Mutex // never held while taking another lock
	conns int        // connections being served
	idle  []chan handlerJob
}

// handlerJob is a stream whose handler is to run.
type handlerJob struct {
	c  *conn
	st *stream
}

// connOpened counts a connection being served.
func (p *handlerPool) connOpened() {
	p.mu.Lock()
	p.conns++
	p.mu.Unlock()
}

// connClosed counts a connection gone, and ends the idle goroutines when
// it was the last.
func (p *handlerPool) connClosed() {
	p.mu.Lock()
	p.conns--
	var idle []chan handlerJob
	if p.conns == 0 {
		idle, p.idle = p.idle, nil
	}
	p.mu.Unlock()
	for _, jobs := range idle {
		close(jobs)
	}
}

// run runs st's handler on an idle goroutine, the one that waited least
// (its stack the likeliest to be grown), or on a new one.
func (p *handlerPool) run(c *conn, st *stream) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		jobs := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		jobs <- handlerJob{c, st} // buffered: the goroutine may not be receiving yet
		return
	}
	p.mu.Unlock()
	go p.serve(handlerJob{c, st})
}

// serve runs handlers, the first j, until the pool has no place for it.
func (p *handlerPool) serve(j handlerJob) {
	jobs := make(chan handlerJob, 1)
	for {
		j.c.runHandler(j.st)
		j = handlerJob{} // a goroutine waiting keeps no connection alive
		if !p.park(jobs) {
			return
		}
		var ok bool
		if j, ok = <-jobs; !ok {
			return
		}
	}
}

// park puts a goroutine's jobs among the idle ones, unless the pool is
// full or the server has no connection left.
func (p *handlerPool) park(jobs chan handlerJob) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == 0 || len(p.idle) >= maxIdleHandlers {
		return false
	}
	p.idle = append(p.idle, jobs)
	return true
}
