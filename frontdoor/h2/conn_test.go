package h2

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// These tests follow RFC 9113's MUSTs for a server of POSTs, each through
// a real connection and raw frames; doc.go lists them.

func TestPrefaceSettingsAndRequest(t *testing.T) {
	addr := startServer(t, &Server{Handler: echo})
	c := dial(t, addr)
	c.handshake()
	for id, want := range map[http2.SettingID]uint32{
		http2.SettingMaxConcurrentStreams: DefaultMaxConcurrentStreams,
		http2.SettingInitialWindowSize:    DefaultMaxBodyBytes,
		http2.SettingMaxHeaderListSize:    DefaultMaxHeaderBytes,
	} {
		if got, ok := c.settings[id]; !ok || got != want {
			t.Errorf("%v: %d (%v), want %d", id, got, ok, want)
		}
	}
	c.request(1, "hello", "x-echo", "e")
	a := c.expectAnswer(1)
	if a.status != "200" || a.body != "POST /ilp hello" || a.fields["content-type"] != "text/plain" ||
		a.fields["content-length"] != "15" || a.fields["x-echo"] != "e" || a.fields["date"] == "" {
		t.Fatalf("%+v", a)
	}
	c.request(3, "") // no body: HEADERS with END_STREAM
	if a := c.expectAnswer(3); a.body != "POST /ilp " {
		t.Fatalf("%+v", a)
	}
}

// TestRemoteAddr checks that every stream's request has the client's
// address, as net/http formats it.
func TestRemoteAddr(t *testing.T) {
	addr := startServer(t, &Server{Handler: HandlerFunc(func(w *ResponseWriter, r *Request) {
		w.Write([]byte(r.RemoteAddr()))
	})})
	c := dial(t, addr)
	c.handshake()
	for _, id := range []uint32{1, 3} {
		c.request(id, "")
		if a := c.expectAnswer(id); a.body != c.nc.LocalAddr().String() {
			t.Fatalf("stream %d: RemoteAddr %q, want the client's %q", id, a.body, c.nc.LocalAddr())
		}
	}
}

func TestPrefaceRefused(t *testing.T) {
	addr := startServer(t, &Server{Handler: echo})
	c := dial(t, addr)
	io.WriteString(c.nc, "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
	c.expectEOF()

	c = dial(t, addr)
	io.WriteString(c.nc, http2.ClientPreface)
	c.fr.WritePing(false, [8]byte{}) // not SETTINGS first
	c.expectGoAway(http2.ErrCodeProtocol)
}

func TestPrefixServedFirst(t *testing.T) {
	// As package h1 hands over a connection that began with the preface:
	// what was read is given as the prefix.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := &Server{Handler: echo}
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		sniffed := make([]byte, 16)
		if _, err := io.ReadFull(nc, sniffed); err != nil {
			return
		}
		s.ServeConn(nc, sniffed)
	}()
	c := dial(t, ln.Addr().String())
	c.handshake()
	c.request(1, "x")
	if a := c.expectAnswer(1); a.body != "POST /ilp x" {
		t.Fatalf("%+v", a)
	}
	c.nc.Close()
	<-done
}

func TestPingAck(t *testing.T) {
	c := dial(t, startServer(t, &Server{Handler: echo}))
	c.handshake()
	c.fr.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
	for {
		if p, ok := c.read().(*http2.PingFrame); ok {
			if !p.IsAck() || p.Data != [8]byte{1, 2, 3, 4, 5, 6, 7, 8} {
				t.Fatalf("%v", p)
			}
			return
		}
	}
}

func TestInvalidSettings(t *testing.T) {
	addr := startServer(t, &Server{Handler: echo})
	for _, tc := range []struct {
		s    http2.Setting
		code http2.ErrCode
	}{
		{http2.Setting{ID: http2.SettingEnablePush, Val: 2}, http2.ErrCodeProtocol},
		{http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31}, http2.ErrCodeFlowControl},
		{http2.Setting{ID: http2.SettingMaxFrameSize, Val: 100}, http2.ErrCodeProtocol},
	} {
		c := dial(t, addr)
		c.handshake()
		c.fr.WriteSettings(tc.s)
		c.expectGoAway(tc.code)
	}
}

func TestWindowUpdateZeroIncrement(t *testing.T) {
	addr := startServer(t, &Server{Handler: echo})
	c := dial(t, addr)
	c.handshake()
	c.headers(1, false, post()...)
	c.fr.WriteWindowUpdate(1, 0) // stream: stream error
	c.expectRST(1, http2.ErrCodeProtocol)
	c.request(3, "ok")
	c.expectAnswer(3)
	c.fr.WriteWindowUpdate(0, 0) // connection: connection error
	c.expectGoAway(http2.ErrCodeProtocol)
}

func TestWindowUpdateOverflow(t *testing.T) {
	addr := startServer(t, &Server{Handler: echo})
	c := dial(t, addr)
	c.handshake()
	c.headers(1, false, post()...)
	c.fr.WriteWindowUpdate(1, 1<<31-1)
	c.expectRST(1, http2.ErrCodeFlowControl)
	c.fr.WriteWindowUpdate(0, 1<<31-1)
	c.expectGoAway(http2.ErrCodeFlowControl)
}

func TestPriorityAndUnknownFramesIgnored(t *testing.T) {
	c := dial(t, startServer(t, &Server{Handler: echo}))
	c.handshake()
	c.fr.WritePriority(1, http2.PriorityParam{StreamDep: 0, Weight: 200}) // on an idle stream
	c.fr.WriteRawFrame(0xfa, 0xff, 1, []byte("unknown frame type"))       // RFC 9113 §4.1
	c.fr.WriteRawFrame(0xfb, 0, 0, nil)
	c.request(1, "p")
	if a := c.expectAnswer(1); a.body != "POST /ilp p" {
		t.Fatalf("%+v", a)
	}
	c.fr.WritePriority(3, http2.PriorityParam{StreamDep: 3}) // depends on itself: stream error
	c.expectRST(3, http2.ErrCodeProtocol)
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: c.block(post()...), EndStream: true, EndHeaders: true,
		Priority: http2.PriorityParam{StreamDep: 5, Weight: 1}})
	c.expectRST(5, http2.ErrCodeProtocol)
	c.request(7, "q")
	c.expectAnswer(7)
}

func TestStreamIDs(t *testing.T) {
	addr := startServer(t, &Server{Handler: echo})

	c := dial(t, addr)
	c.handshake()
	c.request(2, "") // even: server-initiated
	c.expectGoAway(http2.ErrCodeProtocol)

	c = dial(t, addr)
	c.handshake()
	c.request(5, "")
	c.expectAnswer(5)
	c.request(3, "") // lower than one already opened
	c.expectGoAway(http2.ErrCodeProtocol)

	c = dial(t, addr)
	c.handshake()
	c.request(1, "")
	c.expectAnswer(1)
	c.request(1, "") // HEADERS on a closed stream
	c.expectGoAway(http2.ErrCodeStreamClosed)

	c = dial(t, addr)
	c.handshake()
	c.fr.WriteData(1, true, []byte("x")) // DATA on an idle stream
	c.expectGoAway(http2.ErrCodeProtocol)

	c = dial(t, addr)
	c.handshake()
	c.fr.WriteRSTStream(1, http2.ErrCodeCancel) // RST_STREAM on an idle stream
	c.expectGoAway(http2.ErrCodeProtocol)

	c = dial(t, addr)
	c.handshake()
	c.fr.WriteContinuation(1, true, nil) // CONTINUATION without HEADERS
	c.expectGoAway(http2.ErrCodeProtocol)

	c = dial(t, addr)
	c.handshake()
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block(post()...)})
	c.fr.WritePing(false, [8]byte{}) // inside a header block
	c.expectGoAway(http2.ErrCodeProtocol)

	c = dial(t, addr)
	c.handshake()
	c.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: c.block(post()...), EndHeaders: true})
	c.expectGoAway(http2.ErrCodeProtocol)
}

func TestDataOnHalfClosedStream(t *testing.T) {
	release := make(chan struct{})
	s := &Server{Handler: HandlerFunc(func(w *ResponseWriter, r *Request) { <-release })}
	c := dial(t, startServer(t, s))
	defer close(release)
	c.handshake()
	c.request(1, "body")
	c.fr.WriteData(1, true, []byte("more")) // after END_STREAM, its handler running
	c.expectRST(1, http2.ErrCodeStreamClosed)
}

func TestMalformedRequests(t *testing.T) {
	c := dial(t, startServer(t, &Server{Handler: echo}))
	c.handshake()
	id := uint32(1)
	for _, tc := range []struct {
		name   string
		fields []string
	}{
		{"no :method", []string{":scheme", "http", ":path", "/"}},
		{"no :scheme", []string{":method", "POST", ":path", "/"}},
		{"no :path", []string{":method", "POST", ":scheme", "http"}},
		{"empty :path", []string{":method", "POST", ":scheme", "http", ":path", ""}},
		{"path not origin-form", []string{":method", "POST", ":scheme", "http", ":path", "http://a/"}},
		{"bad escape in path", []string{":method", "POST", ":scheme", "http", ":path", "/%zz"}},
		{"pseudo after regular", []string{":method", "POST", ":scheme", "http", "x-a", "1", ":path", "/"}},
		{"repeated pseudo", post(":path", "/b")},
		{"unknown pseudo", post(":protocol", "websocket")},
		{"response pseudo", post(":status", "200")},
		{"upper case name", post("X-Upper", "1")},
		{"connection", post("connection", "close")},
		{"keep-alive", post("keep-alive", "5")},
		{"proxy-connection", post("proxy-connection", "x")},
		{"transfer-encoding", post("transfer-encoding", "chunked")},
		{"upgrade", post("upgrade", "h2c")},
		{"te gzip", post("te", "gzip")},
		{"CR in value", post("x-a", "a\rb")},
		{"NUL in value", post("x-a", "a\x00b")},
		{"leading space", post("x-a", " a")},
		{"name not a token", post("x(a)", "1")},
		{"content-length not a number", post("content-length", "1x")},
		{"content-length twice", post("content-length", "1", "content-length", "1")},
		{"authority with a space", []string{":method", "POST", ":scheme", "http", ":path", "/", ":authority", "a b"}},
	} {
		c.headers(id, true, tc.fields...)
		a := c.expectAnswer(id)
		if !a.reset || a.rst != http2.ErrCodeProtocol {
			t.Errorf("%s: %+v, want RST_STREAM PROTOCOL_ERROR", tc.name, a)
		}
		id += 2
	}
	// Accepted: te: trailers, OPTIONS *, GET without :authority.
	c.headers(id, true, post("te", "trailers")...)
	if a := c.expectAnswer(id); a.status != "200" {
		t.Errorf("te: trailers: %+v", a)
	}
	id += 2
	c.headers(id, true, ":method", "OPTIONS", ":scheme", "http", ":path", "*")
	if a := c.expectAnswer(id); a.body != "OPTIONS * " {
		t.Errorf("OPTIONS *: %+v", a)
	}
	id += 2
	// CONNECT is refused with 405.
	c.headers(id, true, ":method", "CONNECT", ":authority", "a:443")
	if a := c.expectAnswer(id); a.status != "405" {
		t.Errorf("CONNECT: %+v", a)
	}
}

func TestContentLengthMismatch(t *testing.T) {
	c := dial(t, startServer(t, &Server{Handler: echo}))
	c.handshake()
	c.request(1, "abc", "content-length", "5") // less than said
	c.expectRST(1, http2.ErrCodeProtocol)
	c.request(3, "abc", "content-length", "2") // more than said
	c.expectRST(3, http2.ErrCodeProtocol)
	c.request(5, "", "content-length", "1") // none of what was said
	c.expectRST(5, http2.ErrCodeProtocol)
	c.request(7, "abc", "content-length", "3")
	if a := c.expectAnswer(7); a.body != "POST /ilp abc" {
		t.Fatalf("%+v", a)
	}
}

func TestTrailers(t *testing.T) {
	c := dial(t, startServer(t, &Server{Handler: echo}))
	c.handshake()
	c.headers(1, false, post()...)
	c.fr.WriteData(1, false, []byte("body"))
	c.headers(1, true, "x-checksum", "1") // trailers: checked, dropped
	if a := c.expectAnswer(1); a.body != "POST /ilp body" {
		t.Fatalf("%+v", a)
	}
	c.headers(3, false, post()...)
	c.headers(3, true, ":path", "/x") // pseudo-header in trailers
	c.expectRST(3, http2.ErrCodeProtocol)
	c.headers(5, false, post()...)
	c.headers(5, false, "x-a", "1") // trailers without END_STREAM
	c.expectRST(5, http2.ErrCodeProtocol)
}

func TestBodyTooLarge(t *testing.T) {
	c := dial(t, startServer(t, &Server{Handler: echo, MaxBodyBytes: 100}))
	c.handshake()
	c.headers(1, false, post("content-length", "101")...)
	if a := c.expectAnswer(1); a.status != "413" {
		t.Fatalf("%+v", a)
	}
	c.expectRST(1, http2.ErrCodeNo)            // stop sending
	c.fr.WriteData(1, true, make([]byte, 101)) // in flight: ignored
	c.headers(3, false, post()...)
	c.fr.WriteData(3, false, make([]byte, 60))
	c.fr.WriteData(3, false, make([]byte, 60))
	if a := c.expectAnswer(3); a.status != "413" {
		t.Fatalf("%+v", a)
	}
	c.request(5, strings.Repeat("x", 100))
	if a := c.expectAnswer(5); a.status != "200" {
		t.Fatalf("%+v", a)
	}
}

func TestHeaderListTooLarge(t *testing.T) {
	c := dial(t, startServer(t, &Server{Handler: echo, MaxHeaderBytes: 1000}))
	c.handshake()
	if c.settings[http2.SettingMaxHeaderListSize] != 1000 {
		t.Fatalf("%v", c.settings)
	}
	c.headers(1, true, post("x-big", strings.Repeat("a", 1000))...)
	if a := c.expectAnswer(1); a.status != "431" {
		t.Fatalf("%+v", a)
	}
	c.request(3, "x")
	if a := c.expectAnswer(3); a.status != "200" {
		t.Fatalf("%+v", a) // HPACK's state survived the refused block
	}
}

func TestFrameTooLarge(t *testing.T) {
	c := dial(t, startServer(t, &Server{Handler: echo}))
	c.handshake()
	c.headers(1, false, post()...)
	c.fr.WriteData(1, true, make([]byte, 16<<10+1))
	c.expectGoAway(http2.ErrCodeFrameSize)
}

func TestDataOverStreamWindow(t *testing.T) {
	c := dial(t, startServer(t, &Server{Handler: echo, MaxBodyBytes: 1 << 20}))
	c.handshake()
	// The stream's window is MaxBodyBytes; padding past it breaks it.
	c.headers(1, false, post()...)
	for range 4 {
		c.fr.WriteDataPadded(1, false, make([]byte, 16000), make([]byte, 255))
	}
	c.request(3, "after") // padding given back: the connection's window holds
	if a := c.expectAnswer(3); a.status != "200" {
		t.Fatalf("%+v", a)
	}
}

func TestMaxConcurrentStreams(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	s := &Server{MaxConcurrentStreams: 3, Handler: HandlerFunc(func(w *ResponseWriter, r *Request) {
		started <- struct{}{}
		<-release
		w.Write(r.Body)
	})}
	c := dial(t, startServer(t, s))
	c.handshake()
	if c.settings[http2.SettingMaxConcurrentStreams] != 3 {
		t.Fatal(c.settings)
	}
	for id := uint32(1); id <= 5; id += 2 {
		c.request(id, "x")
		<-started
	}
	c.request(7, "x")
	c.expectRST(7, http2.ErrCodeRefusedStream)
	close(release)
	answers := map[uint32]*answer{}
	for range 3 {
		if ev := c.next(answers); ev.answer == nil || ev.answer.body != "x" {
			t.Fatalf("%+v", ev)
		}
	}
	c.request(9, "y") // room again
	if a := c.expectAnswer(9); a.body != "y" {
		t.Fatalf("%+v", a)
	}
}

func TestAnswerFlowControl(t *testing.T) {
	body := strings.Repeat("0123456789", 4000) // 40,000 bytes
	s := &Server{Handler: HandlerFunc(func(w *ResponseWriter, r *Request) { w.WriteString(body) })}
	c := dial(t, startServer(t, s))
	c.handshake(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1000})
	c.request(1, "")
	got, window := 0, 1000
	for got < len(body) {
		switch f := c.read().(type) {
		case *http2.DataFrame:
			n := len(f.Data())
			if n > window || n > 16<<10 {
				t.Fatalf("DATA of %d bytes, window %d", n, window)
			}
			window -= n
			got += n
			if window == 0 {
				window += 3000 // a WINDOW_UPDATE lets more through
				c.fr.WriteWindowUpdate(1, 3000)
				c.fr.WriteWindowUpdate(0, 3000)
			}
			if f.StreamEnded() != (got == len(body)) {
				t.Fatalf("END_STREAM at %d of %d bytes", got, len(body))
			}
		}
	}

	// A larger window: DATA split at SETTINGS_MAX_FRAME_SIZE.
	c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	c.fr.WriteWindowUpdate(0, 1<<20)
	c.request(3, "")
	for got = 0; got < len(body); {
		if f, ok := c.read().(*http2.DataFrame); ok {
			if len(f.Data()) > 16<<10 {
				t.Fatalf("DATA of %d bytes", len(f.Data()))
			}
			got += len(f.Data())
		}
	}
}

func TestWindowNeverOpened(t *testing.T) {
	s := &Server{WriteTimeout: 200 * time.Millisecond, Handler: HandlerFunc(func(w *ResponseWriter, r *Request) { w.WriteString("x") })}
	c := dial(t, startServer(t, s))
	c.handshake(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	c.request(1, "")
	c.expectEOF() // the answer waited WriteTimeout for a window, then the connection closed
}

func TestIdleTimeout(t *testing.T) {
	c := dial(t, startServer(t, &Server{Handler: echo, IdleTimeout: 100 * time.Millisecond}))
	c.handshake()
	c.request(1, "x")
	c.expectAnswer(1)
	c.expectEOF()
}

func TestReadTimeout(t *testing.T) {
	addr := startServer(t, &Server{Handler: echo, ReadTimeout: 100 * time.Millisecond, IdleTimeout: time.Minute})
	c := dial(t, addr)
	io.WriteString(c.nc, http2.ClientPreface[:10]) // a stalled preface
	c.expectEOF()

	c = dial(t, addr)
	c.handshake()
	c.nc.Write([]byte{0, 0, 8, 6, 0}) // a stalled frame: 5 bytes of a PING's header
	c.expectEOF()

	c = dial(t, addr)
	c.handshake()
	c.headers(1, false, post()...) // a stalled body
	c.expectEOF()
}

func TestHandlersConcurrent(t *testing.T) {
	arrived := make(chan struct{})
	s := &Server{Handler: HandlerFunc(func(w *ResponseWriter, r *Request) {
		if string(r.Body) == "first" {
			<-arrived // answered only once the second's handler ran
		} else {
			close(arrived)
		}
		w.Write(r.Body)
	})}
	c := dial(t, startServer(t, s))
	c.handshake()
	c.request(1, "first")
	c.request(3, "second")
	answers := map[uint32]*answer{}
	for range 2 {
		if ev := c.next(answers); ev.answer == nil {
			t.Fatalf("%+v", ev)
		}
	}
	if answers[1].body != "first" || answers[3].body != "second" {
		t.Fatalf("%+v %+v", answers[1], answers[3])
	}
}

func TestCompressionError(t *testing.T) {
	c := dial(t, startServer(t, &Server{Handler: echo}))
	c.handshake()
	// An index past HPACK's static and (empty) dynamic tables.
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0x7f}, EndStream: true, EndHeaders: true})
	c.expectGoAway(http2.ErrCodeCompression)
}

func TestFramesAfterClientReset(t *testing.T) {
	h, release, started := blocking()
	defer close(release)
	c := dial(t, startServer(t, &Server{Handler: h}))
	c.handshake()
	c.headers(1, false, post()...)
	c.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	c.fr.WriteData(1, true, []byte("x")) // on a stream the client reset
	c.expectRST(1, http2.ErrCodeStreamClosed)
	c.request(3, "y")
	<-started
	c.headers(3, true, "x-a", "1") // HEADERS on a half-closed (remote) stream
	c.expectRST(3, http2.ErrCodeStreamClosed)
}

func TestNoContent(t *testing.T) {
	s := &Server{Handler: HandlerFunc(func(w *ResponseWriter, r *Request) {
		w.SetStatus(204)
		w.WriteString("dropped")
		if w.AddField("Content-Length", "1") || w.AddField("connection", "close") || w.AddField("x-a", "a\r\nb") {
			panic("a field this package owns or forbids was added")
		}
	})}
	c := dial(t, startServer(t, s))
	c.handshake()
	c.request(1, "")
	a := c.expectAnswer(1)
	if _, ok := a.fields["content-length"]; a.status != "204" || ok || a.body != "" {
		t.Fatalf("%+v", a)
	}
}

// TestRefusedTold checks that the server tells Refused of each refusal it
// makes itself: an HTTP status, a stream reset, a GOAWAY with its reason,
// and nothing for the NO_ERROR reset that follows a refusal.
func TestRefusedTold(t *testing.T) {
	var mu sync.Mutex
	var told []string
	s := &Server{Handler: echo, MaxBodyBytes: 100, Refused: func(remote net.Addr, answer, reason string) {
		mu.Lock()
		defer mu.Unlock()
		if remote == nil {
			t.Error("Refused without the client's address")
		}
		told = append(told, strings.TrimSpace(answer+" "+reason))
	}}
	c := dial(t, startServer(t, s))
	c.handshake()
	c.headers(1, false, post("content-length", "101")...)
	c.expectAnswer(1)
	c.expectRST(1, http2.ErrCodeNo)
	c.headers(3, false, post()...)
	c.fr.WriteWindowUpdate(3, 0)
	c.expectRST(3, http2.ErrCodeProtocol)
	c.fr.WriteWindowUpdate(0, 0)
	g := c.expectGoAway(http2.ErrCodeProtocol)

	mu.Lock()
	defer mu.Unlock()
	want := []string{"413", "RST_STREAM PROTOCOL_ERROR", "GOAWAY PROTOCOL_ERROR " + string(g.DebugData())}
	if strings.Join(told, "|") != strings.Join(want, "|") {
		t.Errorf("Refused told %q, want %q", told, want)
	}
}
