package h2

import (
	"bufio"
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// onHead refuses a request with x-refuse on its head (401, its body
// unread), and echoes the others, their body read, as echo does. It
// records whether the last request's body was pending and what reading
// it returned; with failed set, a handler whose ReadBody fails sends the
// error there and waits for release before it returns.
type onHead struct {
	mu      sync.Mutex
	pending bool
	err     error
	failed  chan error
	release chan struct{}
}

func (h *onHead) ServeH2(w *ResponseWriter, r *Request) {
	pending := r.BodyPending()
	if _, ok := r.Lookup("x-refuse"); ok {
		h.record(pending, nil)
		w.SetStatus(401)
		w.AddField("www-authenticate", "Bearer")
		return
	}
	body, err := r.ReadBody()
	h.record(pending, err)
	if err != nil {
		if h.failed != nil {
			h.failed <- err
			<-h.release
		}
		return
	}
	w.SetContentType("text/plain")
	w.Write(r.Method)
	w.WriteString(" ")
	w.Write(r.Path)
	w.WriteString(" ")
	w.Write(body)
}

// awaitFailure waits for a handler's ReadBody to fail, for at most 5 s.
func (h *onHead) awaitFailure(t *testing.T) {
	t.Helper()
	select {
	case err := <-h.failed:
		if err == nil {
			t.Fatal("ReadBody failed with a nil error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no handler's ReadBody failed")
	}
}

func (h *onHead) record(pending bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pending, h.err = pending, err
}

func (h *onHead) last() (pending bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pending, h.err
}

// nextEvent reads until the next stream's end or GOAWAY, which must be
// stream id's end: a frame on another stream (a RST_STREAM where frames
// were to be ignored) fails the test.
func (c *client) nextEvent(id uint32) *answer {
	c.t.Helper()
	ev := c.next(map[uint32]*answer{})
	if ev.id != id || ev.answer == nil {
		c.t.Fatalf("%+v (GOAWAY %v), want stream %d's end", ev, ev.goAway, id)
	}
	return ev.answer
}

// TestHandleOnHeadRefusal: a handler called on the head that answers
// without the body has its answer sent at once, with END_STREAM, then
// RST_STREAM NO_ERROR; the DATA and trailers the client still sends on
// the stream are ignored, and the connection serves on.
func TestHandleOnHeadRefusal(t *testing.T) {
	h := &onHead{}
	c := dial(t, startServer(t, &Server{Handler: h, HandleOnHead: true}))
	c.handshake()
	c.headers(1, false, post("x-refuse", "1", "content-length", "100")...)
	a := c.nextEvent(1)
	if pending, _ := h.last(); a.status != "401" || a.fields["www-authenticate"] != "Bearer" || a.reset || !pending {
		t.Fatalf("%+v, pending %v; want 401 on the head", a, pending)
	}
	if a := c.nextEvent(1); !a.reset || a.rst != http2.ErrCodeNo {
		t.Fatalf("%+v, want RST_STREAM NO_ERROR", a)
	}
	c.fr.WriteData(1, false, make([]byte, 60))
	c.headers(1, true, "x-trailer", "t")
	c.request(3, "hi")
	if a := c.nextEvent(3); a.status != "200" || a.body != "POST /ilp hi" {
		t.Fatalf("%+v", a)
	}
}

// TestHandleOnHeadContinue: a handler called on the head reads the body;
// a client that expects 100-continue gets a 100 then, and not once it has
// sent some of the body.
func TestHandleOnHeadContinue(t *testing.T) {
	h := &onHead{}
	c := dial(t, startServer(t, &Server{Handler: h, HandleOnHead: true}))
	c.handshake()
	c.headers(1, false, post("expect", "100-continue", "content-length", "5")...)
	if f, ok := c.read().(*http2.HeadersFrame); !ok || f.StreamEnded() {
		t.Fatalf("%v, want a 100's HEADERS", f)
	} else if fields, err := c.hdec.DecodeFull(f.HeaderBlockFragment()); err != nil || len(fields) != 1 || fields[0].Value != "100" {
		t.Fatalf("%v %v, want :status 100 alone", fields, err)
	}
	c.fr.WriteData(1, true, []byte("hello"))
	if a := c.nextEvent(1); a.status != "200" || a.body != "POST /ilp hello" {
		t.Fatalf("%+v", a)
	}
	if pending, err := h.last(); !pending || err != nil {
		t.Fatalf("pending %v, %v; want the body read on demand", pending, err)
	}

	c.headers(3, false, post("expect", "100-continue")...)
	c.fr.WriteData(3, false, []byte("he"))
	c.fr.WriteData(3, true, []byte("llo"))
	if a := c.nextEvent(3); a.status != "200" || a.body != "POST /ilp hello" {
		t.Fatalf("%+v, want no 100 once the body began", a)
	}
}

// TestHandleOnHeadReset: a stream reset while its handler waits for the
// body (by the client, or by this package: 413) fails ReadBody, and its
// answer is dropped; until the handler returns, the stream counts against
// MaxConcurrentStreams, and frames on one this package reset are
// ignored.
func TestHandleOnHeadReset(t *testing.T) {
	h := &onHead{failed: make(chan error), release: make(chan struct{})}
	c := dial(t, startServer(t, &Server{Handler: h, HandleOnHead: true, MaxConcurrentStreams: 2, MaxBodyBytes: 100}))
	c.handshake()

	c.headers(1, false, post()...)
	c.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	h.awaitFailure(t)
	c.headers(3, false, post()...) // its handler waits for the body
	c.request(5, "x")              // stream 1's handler still runs: a third stream
	c.expectRST(5, http2.ErrCodeRefusedStream)
	h.release <- struct{}{}
	c.fr.WriteData(3, true, []byte("late"))
	if a := c.nextEvent(3); a.status != "200" || a.body != "POST /ilp late" {
		t.Fatalf("%+v", a)
	}

	c.headers(7, false, post()...)
	c.fr.WriteData(7, false, make([]byte, 101))
	if a := c.nextEvent(7); a.status != "413" {
		t.Fatalf("%+v, want 413", a)
	}
	if a := c.nextEvent(7); !a.reset || a.rst != http2.ErrCodeNo {
		t.Fatalf("%+v, want RST_STREAM NO_ERROR", a)
	}
	h.awaitFailure(t)
	c.fr.WriteData(7, false, []byte("in flight")) // its handler still runs: ignored
	c.headers(7, true, "x-trailer", "t")
	h.release <- struct{}{}
	c.request(9, "y")
	if a := c.nextEvent(9); a.status != "200" || a.body != "POST /ilp y" {
		t.Fatalf("%+v", a)
	}
}

// TestRequestBuffered checks which buffered frames hold the rest of a
// request: a frame of its stream with END_STREAM, whole, after any
// others.
func TestRequestBuffered(t *testing.T) {
	frames := func(write func(fr *http2.Framer)) []byte {
		var buf bytes.Buffer
		write(http2.NewFramer(&buf, nil))
		return buf.Bytes()
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want bool
	}{
		{"nothing", nil, false},
		{"DATA with END_STREAM", frames(func(fr *http2.Framer) { fr.WriteData(1, true, []byte("abc")) }), true},
		{"DATA without END_STREAM", frames(func(fr *http2.Framer) { fr.WriteData(1, false, []byte("abc")) }), false},
		{"after other frames", frames(func(fr *http2.Framer) {
			fr.WriteData(3, true, []byte("x"))
			fr.WritePing(false, [8]byte{})
			fr.WriteData(1, false, []byte("ab"))
			fr.WriteData(1, true, []byte("c"))
		}), true},
		{"another stream's end", frames(func(fr *http2.Framer) { fr.WriteData(3, true, []byte("x")) }), false},
		{"trailers", frames(func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x82}, EndStream: true, EndHeaders: true})
		}), true},
		{"partial", frames(func(fr *http2.Framer) { fr.WriteData(1, true, []byte("abc")) })[:10], false},
	} {
		c := &conn{br: bufio.NewReader(bytes.NewReader(tc.in))}
		c.br.Peek(1) // fill the buffer
		if got := c.requestBuffered(1); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestHandleOnHeadBodyWhole: a request whose END_STREAM came with its
// head, or in the same read, is handed over with its body.
func TestHandleOnHeadBodyWhole(t *testing.T) {
	h := &onHead{}
	c := dial(t, startServer(t, &Server{Handler: h, HandleOnHead: true}))
	c.handshake()
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block(post()...), EndHeaders: true})
	fr.WriteData(1, true, []byte(strings.Repeat("z", 10)))
	c.nc.Write(buf.Bytes()) // one write: most likely one read
	if a := c.nextEvent(1); a.status != "200" || a.body != "POST /ilp zzzzzzzzzz" {
		t.Fatalf("%+v", a)
	}
	c.request(3, "")
	if a := c.nextEvent(3); a.status != "200" {
		t.Fatalf("%+v", a)
	}
	if pending, _ := h.last(); pending {
		t.Fatal("a request whose END_STREAM came on its HEADERS was handed over on its head")
	}
}
