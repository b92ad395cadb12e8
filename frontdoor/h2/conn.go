package h2

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/ilp-edge/caddy-ilp/internal/rawio"
)

// This file is a connection's read loop: the client's preface, then one
// frame at a time, each acted on before the next is read. The loop owns
// the HPACK decoder and the receive side of flow control; what the
// handlers' goroutines share with it (the streams, the writing side) is
// under conn.mu. Each request whose END_STREAM arrives gets a goroutine
// that runs the handler and sends the answer (response.go).

// connError is a connection error (RFC 9113 §5.4.1): GOAWAY with its
// code, then the connection is closed.
type connError struct {
	code   http2.ErrCode
	reason string
}

func (e *connError) Error() string { return "h2: " + e.code.String() + ": " + e.reason }

func connErr(code http2.ErrCode, reason string) error { return &connError{code, reason} }

// What the read loop waits for, which sets its read deadline.
type waitMode uint8

const (
	waitFrame waitMode = iota // the rest of a frame: ReadTimeout
	waitRead                  // a request still arriving, or the client's SETTINGS: ReadTimeout
	waitNone                  // handlers running, nothing expected: no deadline
	waitIdle                  // no stream: IdleTimeout from the last one's end
)

// Lingering: after a GOAWAY, what the client still sends is read and
// dropped for a while, so that closing with unread bytes does not reset
// the connection before the client has read the GOAWAY and the answers.
const (
	lingerTime  = time.Second
	lingerBytes = 64 << 10
)

// maxReadFrame is the largest frame read, SETTINGS_MAX_FRAME_SIZE's
// initial value, which this server does not raise.
const maxReadFrame = 16 << 10

// connReader is what the read loop reads: the prefix, then the
// connection. It keeps the connection's error, so that an error from the
// Framer can be told apart: a frame it refused, or a read that failed.
type connReader struct {
	prefix []byte
	nc     net.Conn
	err    error
}

func (r *connReader) Read(p []byte) (int, error) {
	if len(r.prefix) > 0 {
		n := copy(p, r.prefix)
		r.prefix = r.prefix[n:]
		return n, nil
	}
	n, err := r.nc.Read(p)
	if err != nil {
		r.err = err
	}
	return n, err
}

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}

// conn is one connection.
type conn struct {
	srv *Server
	nc  net.Conn
	tls *tls.ConnectionState // once known: the connection's, for its requests

	remote string // the peer's address, once a request needs it; the read loop's

	// The read loop's own.
	rd           connReader
	br           *bufio.Reader
	fr           *http2.Framer
	hdec         *hpack.Decoder
	hb           headerBlock
	sawSettings  bool
	open         int   // streams in stateOpen
	streamWindow int32 // each stream's receive window, MaxBodyBytes
	connWindow   int32 // the connection's receive window
	recvWindow   int32 // what the client may still send on the connection
	unacked      int32 // received, not yet given back with WINDOW_UPDATE

	// Shared, under mu.
	mu             sync.Mutex
	cond           sync.Cond // windows opened, bytes written, stream reset, connection dead
	streams        map[uint32]*stream
	maxID          uint32 // the highest stream the client opened; written by the read loop
	closed         closedRing
	resetBudget    int
	maxResetBudget int
	fw             *http2.Framer // writes into out
	rw             net.Conn      // nc, or nc with raw reads and writes: what frames go through
	out, spare     []byte
	flushing       bool
	dead           bool
	henc           *hpack.Encoder
	hbuf           bytes.Buffer
	sendWindow     int64 // the client's connection window for our DATA
	peerInitial    int64 // the client's SETTINGS_INITIAL_WINDOW_SIZE
	peerMaxFrame   uint32
	prefaceDone    bool
	goingAway      bool // GOAWAY sent: no new stream
	lingering      bool // the last answer written: reading until the client closes
	waiting        waitMode
	deadline       time.Time
	writeBy        time.Time // the write deadline set, by the goroutine flushing
	idleSince      time.Time
	date           dateCache
	lastLength     int
	lastLengthText string
	handlers       sync.WaitGroup
}

// newConn prepares a connection; prefix is copied.
func newConn(s *Server, nc net.Conn, prefix []byte) *conn {
	c := &conn{srv: s, nc: nc, streams: make(map[uint32]*stream)}
	// Without TLS the frames are read and written with raw system calls
	// (package rawio); nc keeps the deadlines and the rest.
	c.rw = rawio.Wrap(nc)
	c.rd = connReader{prefix: bytes.Clone(prefix), nc: c.rw}
	c.cond.L = &c.mu
	c.idleSince = time.Now()
	return c
}

// serve runs the read loop until the connection ends.
func (c *conn) serve() {
	s := c.srv
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(&c.rd)
	defer c.close()
	c.fr = http2.NewFramer(nil, c.br)
	c.fr.SetMaxReadFrameSize(maxReadFrame)
	c.fr.SetReuseFrames()
	c.fw = http2.NewFramer(outWriter{c}, nil)
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.hdec = hpack.NewDecoder(4096, c.onField)
	c.hdec.SetMaxStringLength(s.MaxHeaderBytes)
	c.streamWindow = int32(max(s.MaxBodyBytes, 65535))
	c.connWindow = int32(min(max(1<<20, 2*int(c.streamWindow)), maxWindow))
	c.recvWindow = c.connWindow
	c.sendWindow = 65535
	c.peerInitial = 65535
	c.peerMaxFrame = 16 << 10
	c.maxResetBudget = resetCost * int(s.MaxConcurrentStreams)
	c.resetBudget = c.maxResetBudget

	// The client's preface, then its SETTINGS, within ReadTimeout.
	c.deadline = time.Now().Add(s.ReadTimeout)
	c.waiting = waitRead
	if c.nc.SetReadDeadline(c.deadline) != nil {
		return
	}
	p, err := c.br.Peek(len(http2.ClientPreface))
	if err != nil || string(p) != http2.ClientPreface {
		return // not HTTP/2: closed without a word (RFC 9113 §3.4)
	}
	c.br.Discard(len(p))
	c.mu.Lock()
	c.fw.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: s.MaxConcurrentStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(c.streamWindow)},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(s.MaxHeaderBytes)},
	)
	c.fw.WriteWindowUpdate(0, uint32(c.connWindow-65535))
	c.prefaceDone = true
	if s.shuttingDown() {
		c.goAwayLocked()
	}
	c.mu.Unlock()

	for c.awaitFrame() {
		err := c.readFrame()
		if err == nil {
			continue
		}
		var ce *connError
		if errors.As(err, &ce) {
			c.fail(ce)
		}
		return
	}
}

// awaitFrame writes what is buffered, then waits for the next frame's
// first byte under the deadline of what is expected.
func (c *conn) awaitFrame() bool {
	if c.br.Buffered() > 0 {
		return true
	}
	c.mu.Lock()
	c.flushLocked()
	switch {
	case !c.sawSettings:
		c.waiting = waitRead // the deadline from the connection's start stands
	case c.open > 0 || c.hb.id != 0:
		c.waiting = waitRead
		c.setReadDeadlineLocked(time.Now().Add(c.srv.ReadTimeout))
	case len(c.streams) > 0:
		c.waiting = waitNone
		c.setReadDeadlineLocked(time.Time{})
	default:
		c.waiting = waitIdle
		c.setReadDeadlineLocked(c.idleSince.Add(c.srv.IdleTimeout))
	}
	c.mu.Unlock()
	_, err := c.br.Peek(1)
	return err == nil
}

// frameDeadline gives the rest of a frame begun ReadTimeout to arrive.
func (c *conn) frameDeadline() {
	if !c.sawSettings {
		return
	}
	c.mu.Lock()
	c.waiting = waitFrame
	c.setReadDeadlineLocked(time.Now().Add(c.srv.ReadTimeout))
	c.mu.Unlock()
}

// readFrame reads one frame and acts on it. It returns a *connError, an
// I/O error, or nil.
func (c *conn) readFrame() error {
	if c.br.Buffered() < 9 {
		c.frameDeadline()
	}
	fh, err := c.fr.ReadFrameHeader()
	if err != nil {
		return c.frameError(fh, err)
	}
	if c.br.Buffered() < int(fh.Length) {
		c.frameDeadline()
	}
	f, err := c.fr.ReadFrameForHeader(fh)
	if err != nil {
		return c.frameError(fh, err)
	}
	if !c.sawSettings {
		if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
			return connErr(http2.ErrCodeProtocol, "first frame not SETTINGS")
		}
		c.sawSettings = true
	}
	return c.dispatch(f)
}

// frameError turns what the Framer refused into a stream or connection
// error: the Framer checks frame sizes, stream 0, padding, and that a
// header block's frames are contiguous.
func (c *conn) frameError(fh http2.FrameHeader, err error) error {
	if c.rd.err != nil {
		return err // the connection failed, or its deadline passed
	}
	var ce http2.ConnectionError
	var se http2.StreamError
	switch {
	case errors.As(err, &ce):
		reason := "invalid frame"
		if d := c.fr.ErrorDetail(); d != nil {
			reason = d.Error()
		}
		return connErr(http2.ErrCode(ce), reason)
	case errors.As(err, &se):
		// A HEADERS frame refused undecoded would leave HPACK's table
		// behind the client's; a frame on an idle stream is a
		// connection error (RFC 9113 §5.1).
		if fh.Type == http2.FrameHeaders || se.StreamID > c.maxID {
			return connErr(http2.ErrCodeProtocol, "invalid "+fh.Type.String()+" frame")
		}
		c.streamError(se.StreamID, se.Code)
		return nil
	case errors.Is(err, http2.ErrFrameTooLarge):
		return connErr(http2.ErrCodeFrameSize, "frame over SETTINGS_MAX_FRAME_SIZE")
	}
	return connErr(http2.ErrCodeFrameSize, fh.Type.String()+" frame too short")
}

// dispatch acts on one frame.
func (c *conn) dispatch(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.HeadersFrame:
		return c.onHeaders(f)
	case *http2.ContinuationFrame:
		c.hb.frames++
		if c.hb.frames > c.maxContinuations() {
			return connErr(http2.ErrCodeEnhanceYourCalm, "too many CONTINUATION frames")
		}
		return c.fragment(f.HeaderBlockFragment(), f.HeadersEnded())
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		return c.onRSTStream(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			c.mu.Lock()
			c.fw.WritePing(true, f.Data)
			c.drainQueueLocked()
			c.mu.Unlock()
		}
	case *http2.PriorityFrame:
		// Priorities are ignored, but RFC 9113 §5.3.1 still forbids a
		// stream to depend on itself.
		if f.StreamDep == f.StreamID {
			c.streamError(f.StreamID, http2.ErrCodeProtocol)
		}
	case *http2.PushPromiseFrame:
		return connErr(http2.ErrCodeProtocol, "PUSH_PROMISE from a client")
	}
	// GOAWAY: the client opens no more streams; those open finish.
	// Unknown frame types, PRIORITY_UPDATE: ignored (RFC 9113 §4.1, §5.5).
	return nil
}

// onHeaders starts a header block: a new stream's, trailers, or one only
// decoded because its stream is refused.
func (c *conn) onHeaders(f *http2.HeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return connErr(http2.ErrCodeProtocol, "stream id not odd")
	}
	c.mu.Lock()
	st := c.streams[id]
	kind := blockTrailers
	switch {
	case st != nil:
	case id <= c.maxID:
		how := c.closed.how(id)
		c.mu.Unlock()
		switch how {
		case closedNone:
			return connErr(http2.ErrCodeProtocol, "stream id not increasing")
		case closedByUs: // RFC 9113 §5.1: ignored, but decoded
			c.hb.start(id, blockDropped, nil, f.StreamEnded())
			c.hb.silent = true
			return c.fragment(f.HeaderBlockFragment(), f.HeadersEnded())
		}
		return connErr(http2.ErrCodeStreamClosed, "HEADERS on a closed stream")
	default:
		c.maxID = id
		if c.goingAway || len(c.streams) >= int(c.srv.MaxConcurrentStreams) {
			kind = blockDropped
			if !c.goingAway && !c.chargeReset() {
				c.mu.Unlock()
				return connErr(http2.ErrCodeEnhanceYourCalm, "too many streams refused or reset")
			}
		} else {
			st = newStream(id, c.streamWindow, c.peerInitial)
			c.streams[id] = st
			c.open++
			kind = blockRequest
		}
	}
	c.mu.Unlock()
	c.hb.start(id, kind, st, f.StreamEnded())
	c.hb.selfDep = f.HasPriority() && f.Priority.StreamDep == id
	return c.fragment(f.HeaderBlockFragment(), f.HeadersEnded())
}

// onData adds a DATA frame's bytes to its stream's body, and ends the
// request at END_STREAM.
func (c *conn) onData(f *http2.DataFrame) error {
	id := f.StreamID
	n := int32(f.Length) // padding included: it counts against the windows
	if n > c.recvWindow {
		return connErr(http2.ErrCodeFlowControl, "DATA over the connection's window")
	}
	c.recvWindow -= n
	c.unacked += n
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unacked >= c.connWindow/4 {
		c.fw.WriteWindowUpdate(0, uint32(c.unacked))
		c.recvWindow += c.unacked
		c.unacked = 0
	}
	defer c.drainQueueLocked()
	st := c.streams[id]
	if st == nil {
		if id > c.maxID {
			return connErr(http2.ErrCodeProtocol, "DATA on an idle stream")
		}
		switch c.closed.how(id) {
		case closedByUs: // RFC 9113 §5.1: ignored
		case closedAnswered:
			return connErr(http2.ErrCodeStreamClosed, "DATA after END_STREAM")
		default:
			c.rstLocked(id, http2.ErrCodeStreamClosed)
		}
		return nil
	}
	switch {
	case st.closedHow == closedByUs:
		return nil // reset by us while its early handler runs: ignored, as once released (RFC 9113 §5.1)
	case st.state != stateOpen:
		c.resetLocked(st, http2.ErrCodeStreamClosed) // half-closed (remote)
		return nil
	}
	if n > st.recvWindow {
		c.resetLocked(st, http2.ErrCodeFlowControl)
		return nil
	}
	st.recvWindow -= n
	data := f.Data()
	end := f.StreamEnded()
	switch {
	case len(st.body)+len(data) > c.srv.MaxBodyBytes:
		c.refuseLocked(st, 413, end)
		return nil
	case st.contentLength >= 0 && int64(len(st.body)+len(data)) > st.contentLength:
		c.resetLocked(st, http2.ErrCodeProtocol)
		return nil
	}
	st.body = append(st.body, data...)
	if end {
		c.endRequestLocked(st)
	} else if pad := n - int32(len(data)); pad > 0 {
		// The body's bytes fit the stream's window; its padding is given back.
		c.fw.WriteWindowUpdate(id, uint32(pad))
		st.recvWindow += pad
	}
	return nil
}

// onSettings applies the client's settings and acknowledges them.
func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range f.NumSettings() {
		s := f.Setting(i)
		if err := s.Valid(); err != nil {
			return connErr(http2.ErrCode(err.(http2.ConnectionError)), "invalid "+s.ID.String())
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.peerInitial
			c.peerInitial = int64(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > maxWindow {
					return connErr(http2.ErrCodeFlowControl, "stream window over 2^31-1")
				}
			}
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = s.Val
		case http2.SettingHeaderTableSize:
			c.henc.SetMaxDynamicTableSizeLimit(s.Val)
		}
	}
	c.fw.WriteSettingsAck()
	c.cond.Broadcast()
	c.drainQueueLocked()
	return nil
}

// onWindowUpdate opens a send window.
func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		c.sendWindow += inc
		if c.sendWindow > maxWindow {
			return connErr(http2.ErrCodeFlowControl, "connection window over 2^31-1")
		}
		c.cond.Broadcast()
		return nil
	}
	st := c.streams[f.StreamID]
	if st == nil {
		if f.StreamID > c.maxID {
			return connErr(http2.ErrCodeProtocol, "WINDOW_UPDATE on an idle stream")
		}
		return nil // closed: ignored
	}
	st.sendWindow += inc
	if st.sendWindow > maxWindow {
		c.resetLocked(st, http2.ErrCodeFlowControl)
		c.drainQueueLocked()
		return nil
	}
	c.cond.Broadcast()
	return nil
}

// onRSTStream closes a stream the client resets, and charges the
// rapid-reset budget when its answer was not yet sent.
func (c *conn) onRSTStream(f *http2.RSTStreamFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.streams[f.StreamID]
	if st == nil {
		if f.StreamID > c.maxID {
			return connErr(http2.ErrCodeProtocol, "RST_STREAM on an idle stream")
		}
		return nil
	}
	switch st.state {
	case stateOpen:
		c.closeOpenLocked(st, closedByClient)
	case stateHalfClosed:
		st.state = stateReset // its handler finishes; its answer is dropped
		c.cond.Broadcast()
	default:
		return nil
	}
	if !c.chargeReset() {
		return connErr(http2.ErrCodeEnhanceYourCalm, "too many streams reset")
	}
	return nil
}

// streamError resets stream id (RFC 9113 §5.4.2).
func (c *conn) streamError(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		c.resetLocked(st, code)
	} else {
		c.rstLocked(id, code)
	}
	c.drainQueueLocked()
	c.mu.Unlock()
}

// resetLocked sends RST_STREAM for st and closes it, or, when its handler
// runs, drops its answer.
func (c *conn) resetLocked(st *stream, code http2.ErrCode) {
	c.rstLocked(st.id, code)
	switch st.state {
	case stateOpen:
		c.closeOpenLocked(st, closedByUs)
	case stateHalfClosed:
		st.state = stateReset
		c.cond.Broadcast()
	}
}

// closeOpenLocked releases a stream whose request had not ended. One
// whose handler was started on its head is only marked reset, and stays
// among the connection's streams until that handler returns (answer):
// its handler still uses it, and it counts against MaxConcurrentStreams
// until then, as a half-closed one reset does.
func (c *conn) closeOpenLocked(st *stream, how closedHow) {
	c.open--
	if st.early {
		st.state = stateReset
		st.closedHow = how
		c.cond.Broadcast() // to its handler, waiting in ReadBody
		return
	}
	c.releaseLocked(st, how)
}

// endRequestLocked starts the handler of a whole request, or wakes the
// one started on its head, unless its body disagrees with its
// content-length.
func (c *conn) endRequestLocked(st *stream) {
	if st.contentLength >= 0 && st.contentLength != int64(len(st.body)) {
		c.resetLocked(st, http2.ErrCodeProtocol)
		return
	}
	st.state = stateHalfClosed
	c.open--
	if st.early {
		c.cond.Broadcast() // to its handler, waiting in ReadBody
		return
	}
	st.req.Body = st.body
	c.handlers.Add(1)
	c.srv.handlerPool.run(c, st)
}

// runHandler runs on a goroutine of the server's handlerPool.
func (c *conn) runHandler(st *stream) {
	defer c.handlers.Done()
	c.srv.Handler.ServeH2(&st.w, &st.req)
	c.answer(st)
}

// goAway sends the GOAWAY of a shutdown; a connection whose preface has
// not arrived, which has nothing to lose, is closed.
func (c *conn) goAway() {
	c.mu.Lock()
	switch {
	case c.goingAway || c.dead:
	case !c.prefaceDone:
		c.dieLocked()
	default:
		c.goAwayLocked()
	}
	c.mu.Unlock()
}

// goAwayLocked sends GOAWAY NO_ERROR with the last stream taken; the
// connection drains once its last stream is released.
func (c *conn) goAwayLocked() {
	c.goingAway = true
	c.fw.WriteGoAway(c.maxID, http2.ErrCodeNo, nil)
	if len(c.streams) == 0 {
		c.drainLocked()
	} else {
		c.flushLocked()
	}
}

// drainLocked ends a connection gracefully once everything is written:
// its write side is closed, and the read loop reads what still comes for
// at most lingerTime.
func (c *conn) drainLocked() {
	if c.lingering || c.dead {
		return
	}
	c.waitWrittenLocked(0)
	c.lingering = true
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.deadline = time.Now().Add(lingerTime)
	c.nc.SetReadDeadline(c.deadline)
}

// fail sends GOAWAY for a connection error, then lingers and closes.
func (c *conn) fail(e *connError) {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	c.goingAway = true
	if c.srv.Refused != nil {
		c.srv.Refused(c.nc.RemoteAddr(), "GOAWAY "+e.code.String(), e.reason)
	}
	c.fw.WriteGoAway(c.maxID, e.code, []byte(e.reason))
	c.waitWrittenLocked(0)
	c.dead = true // handlers still running write nothing more
	c.cond.Broadcast()
	c.mu.Unlock()
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil || c.nc.SetReadDeadline(time.Now().Add(lingerTime)) != nil {
		return
	}
	io.CopyN(io.Discard, c.br, lingerBytes)
}

// close closes the connection, waits for its handlers, and forgets it.
func (c *conn) close() {
	c.mu.Lock()
	c.dead = true
	c.cond.Broadcast()
	for _, st := range c.streams {
		if st.state == stateOpen {
			c.closeOpenLocked(st, closedByUs)
		}
	}
	c.mu.Unlock()
	c.nc.Close()
	c.handlers.Wait()
	c.br.Reset(nil)
	readerPool.Put(c.br)
	c.br = nil
	c.srv.forget(c)
}

// tlsState is the connection's TLS state, or nil without TLS. The
// handshake is done by the time a request's headers are read.
func (c *conn) tlsState() *tls.ConnectionState {
	if c.tls == nil {
		if tc, ok := c.nc.(*tls.Conn); ok {
			st := tc.ConnectionState()
			c.tls = &st
		}
	}
	return c.tls
}
