package h2

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// echo answers "METHOD path body", with the request's x-echo field back
// as x-echo.
var echo = HandlerFunc(func(w *ResponseWriter, r *Request) {
	w.SetContentType("text/plain")
	if v, ok := r.Lookup("X-Echo"); ok {
		w.AddFieldBytes("x-echo", v)
	}
	w.Write(r.Method)
	w.WriteString(" ")
	w.Write(r.Path)
	w.WriteString(" ")
	w.Write(r.Body)
})

// startServer serves s on a loopback port until the test ends.
func startServer(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// countingListener counts the bytes the server reads on its connections.
type countingListener struct {
	net.Listener
	read   atomic.Int64
	writes atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, l: l}, nil
}

// countingConn is a connection whose reads and writes are counted. It
// has no SyscallConn, so that the server's reads and writes go through
// it (package rawio would make them on the socket).
type countingConn struct {
	net.Conn
	l *countingListener
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.l.writes.Add(1)
	return c.Conn.Write(b)
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.l.read.Add(int64(n))
	return n, err
}

func (c *countingConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// startCounting is startServer, with the bytes the server reads counted.
func startCounting(t testing.TB, s *Server) (string, *countingListener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	done := make(chan error, 1)
	go func() { done <- s.Serve(cl) }()
	t.Cleanup(func() { s.Close(); <-done })
	return ln.Addr().String(), cl
}

// client is a raw HTTP/2 client: frames written and read one by one, to
// test what the server does with each.
type client struct {
	t    testing.TB
	nc   net.Conn
	fr   *http2.Framer
	henc *hpack.Encoder
	hbuf bytes.Buffer
	hdec *hpack.Decoder

	settings map[http2.SettingID]uint32 // the server's
}

// dial connects to addr, with a deadline that bounds the test.
func dial(t testing.TB, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { nc.Close() })
	c := &client{t: t, nc: nc, fr: http2.NewFramer(nc, nc), settings: map[http2.SettingID]uint32{}}
	c.fr.AllowIllegalWrites = true
	c.fr.AllowIllegalReads = true
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.hdec = hpack.NewDecoder(4096, nil)
	return c
}

// handshake sends the preface and SETTINGS, and reads the server's
// SETTINGS and the ACK of ours.
func (c *client) handshake(settings ...http2.Setting) {
	c.t.Helper()
	io.WriteString(c.nc, http2.ClientPreface)
	c.fr.WriteSettings(settings...)
	sawSettings, sawAck := false, false
	for !sawSettings || !sawAck {
		f := c.read()
		sf, ok := f.(*http2.SettingsFrame)
		switch {
		case !ok:
		case sf.IsAck():
			sawAck = true
		default:
			sawSettings = true
			sf.ForeachSetting(func(s http2.Setting) error { c.settings[s.ID] = s.Val; return nil })
			c.fr.WriteSettingsAck()
		}
	}
}

// read reads one frame, failing the test on an error.
func (c *client) read() http2.Frame {
	c.t.Helper()
	f, err := c.fr.ReadFrame()
	if err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

// block encodes fields ("name", "value", ...) as a header block.
func (c *client) block(fields ...string) []byte {
	c.hbuf.Reset()
	for i := 0; i < len(fields); i += 2 {
		c.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(c.hbuf.Bytes())
}

// post is a valid request's fields, with extra ones after.
func post(extra ...string) []string {
	return append([]string{":method", "POST", ":scheme", "http", ":path", "/ilp", ":authority", "a"}, extra...)
}

// headers writes a HEADERS frame.
func (c *client) headers(id uint32, endStream bool, fields ...string) {
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.block(fields...), EndStream: endStream, EndHeaders: true})
}

// request writes a POST with body on stream id.
func (c *client) request(id uint32, body string, extra ...string) {
	c.headers(id, body == "", post(extra...)...)
	if body != "" {
		c.fr.WriteData(id, true, []byte(body))
	}
}

// answer is what the client read on one stream.
type answer struct {
	status string
	fields map[string]string
	body   string
	rst    http2.ErrCode
	reset  bool
}

// event is a frame that tells the result of a test: a stream's end, or
// the connection's.
type event struct {
	id     uint32
	answer *answer
	goAway *http2.GoAwayFrame
	eof    bool
}

// next reads frames until a stream ends (its END_STREAM or RST_STREAM), a
// GOAWAY, or the connection's end. answers accumulates streams' frames.
func (c *client) next(answers map[uint32]*answer) event {
	c.t.Helper()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || strings.Contains(err.Error(), "connection reset") {
				return event{eof: true}
			}
			c.t.Fatalf("reading a frame: %v", err)
		}
		id := f.Header().StreamID
		a := answers[id]
		if a == nil && id != 0 {
			a = &answer{fields: map[string]string{}}
			answers[id] = a
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			g := *f
			return event{goAway: &g}
		case *http2.RSTStreamFrame:
			a.reset, a.rst = true, f.ErrCode
			return event{id: id, answer: a}
		case *http2.HeadersFrame:
			fields, err := c.hdec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				c.t.Fatalf("answer's header block: %v", err)
			}
			for _, hf := range fields {
				if hf.Name == ":status" {
					a.status = hf.Value
				} else {
					a.fields[hf.Name] = hf.Value
				}
			}
			if f.StreamEnded() {
				return event{id: id, answer: a}
			}
		case *http2.DataFrame:
			a.body += string(f.Data())
			if len(f.Data()) > 0 {
				c.fr.WriteWindowUpdate(0, uint32(len(f.Data())))
			}
			if f.StreamEnded() {
				return event{id: id, answer: a}
			}
		}
	}
}

// expectAnswer reads until stream id ends, and returns its answer.
func (c *client) expectAnswer(id uint32) *answer {
	c.t.Helper()
	answers := map[uint32]*answer{}
	for {
		ev := c.next(answers)
		switch {
		case ev.eof:
			c.t.Fatalf("stream %d: connection closed", id)
		case ev.goAway != nil:
			c.t.Fatalf("stream %d: GOAWAY %v %q", id, ev.goAway.ErrCode, ev.goAway.DebugData())
		case ev.id == id:
			return ev.answer
		}
	}
}

// expectRST reads until stream id ends, which must be a RST_STREAM with
// code.
func (c *client) expectRST(id uint32, code http2.ErrCode) {
	c.t.Helper()
	a := c.expectAnswer(id)
	if !a.reset || a.rst != code {
		c.t.Fatalf("stream %d: %+v, want RST_STREAM %v", id, a, code)
	}
}

// expectGoAway reads until a GOAWAY, which must have code, then the
// connection's end.
func (c *client) expectGoAway(code http2.ErrCode) *http2.GoAwayFrame {
	c.t.Helper()
	answers := map[uint32]*answer{}
	for {
		ev := c.next(answers)
		switch {
		case ev.eof:
			c.t.Fatalf("connection closed without GOAWAY %v", code)
		case ev.goAway != nil:
			if ev.goAway.ErrCode != code {
				c.t.Fatalf("GOAWAY %v %q, want %v", ev.goAway.ErrCode, ev.goAway.DebugData(), code)
			}
			g := ev.goAway
			c.expectEOF()
			return g
		}
	}
}

// expectEOF reads until the connection's end.
func (c *client) expectEOF() {
	c.t.Helper()
	for {
		if _, err := c.fr.ReadFrame(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatal("connection not closed")
			}
			return
		}
	}
}
