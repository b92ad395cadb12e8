package h2

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// memConn is a connection whose peer sent in, at most chunk bytes a
// read, then closed; what the server writes is kept.
type memConn struct {
	in    []byte
	chunk int
	out   bytes.Buffer
}

func (c *memConn) Read(b []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(b[:min(len(b), c.chunk)], c.in)
	c.in = c.in[n:]
	return n, nil
}

func (c *memConn) Write(b []byte) (int, error)        { return c.out.Write(b) }
func (c *memConn) Close() error                       { return nil }
func (c *memConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

// fuzzSeeds are frame sequences a client sends after its preface and
// SETTINGS: requests whole and in pieces, and one of each error.
func fuzzSeeds() [][]byte {
	var seeds [][]byte
	seq := func(write func(fr *http2.Framer, block func(fields ...string) []byte)) {
		var buf bytes.Buffer
		fr := http2.NewFramer(&buf, nil)
		fr.AllowIllegalWrites = true
		var hbuf bytes.Buffer
		enc := hpack.NewEncoder(&hbuf)
		write(fr, func(fields ...string) []byte {
			hbuf.Reset()
			for i := 0; i < len(fields); i += 2 {
				enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
			}
			return bytes.Clone(hbuf.Bytes())
		})
		seeds = append(seeds, buf.Bytes())
	}
	seq(func(fr *http2.Framer, block func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(post("content-length", "3")...), EndHeaders: true})
		fr.WriteData(1, true, []byte("abc"))
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block(post()...), EndHeaders: true, EndStream: true})
		fr.WritePing(false, [8]byte{1})
	})
	seq(func(fr *http2.Framer, block func(...string) []byte) {
		b := block(post("x-a", "1")...)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:3]})
		fr.WriteContinuation(1, false, b[3:5])
		fr.WriteContinuation(1, true, b[5:])
		fr.WriteDataPadded(1, false, []byte("ab"), make([]byte, 10))
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("x-trailer", "t"), EndHeaders: true, EndStream: true})
	})
	seq(func(fr *http2.Framer, block func(...string) []byte) {
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 16384})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(post()...), EndHeaders: true, EndStream: true})
		fr.WriteWindowUpdate(1, 5)
		fr.WriteWindowUpdate(0, 5)
		fr.WriteRSTStream(1, http2.ErrCodeCancel)
	})
	seq(func(fr *http2.Framer, block func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(post("Upper", "x")...), EndHeaders: true, EndStream: true})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block(post("connection", "close")...), EndHeaders: true})
		fr.WriteData(3, true, []byte("x"))
		fr.WritePriority(5, http2.PriorityParam{StreamDep: 5})
		fr.WriteData(7, true, nil)
	})
	seq(func(fr *http2.Framer, block func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(post("content-length", "100000")...), EndHeaders: true})
		fr.WriteData(1, false, make([]byte, 100))
		fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		fr.WriteRawFrame(0xee, 0, 1, []byte("?"))
	})
	// For a handler called on the head: refused (x-refuse) with DATA and
	// trailers after; reset while it waits; 100-continue; DATA past the
	// limit while it waits.
	seq(func(fr *http2.Framer, block func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(post("x-refuse", "1", "content-length", "9")...), EndHeaders: true})
		fr.WriteData(1, false, []byte("abcd"))
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("x-trailer", "t"), EndHeaders: true, EndStream: true})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block(post()...), EndHeaders: true})
		fr.WriteRSTStream(3, http2.ErrCodeCancel)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: block(post("expect", "100-continue")...), EndHeaders: true})
		fr.WriteData(5, true, []byte("x"))
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 7, BlockFragment: block(post()...), EndHeaders: true})
		fr.WriteData(7, false, make([]byte, 1001))
		fr.WriteData(7, true, []byte("late"))
	})
	return seeds
}

// FuzzServeConn feeds any frames, in reads of any size, after a valid
// preface and SETTINGS, to a server that hands requests over whole and to
// one that hands them over on their head (HandleOnHead), whose handler
// reads the body or refuses the request (x-refuse) without it: the
// server must not panic nor hang, must leave no goroutine behind, and
// what it writes must be frames x/net's Framer reads, their header blocks
// decodable in order.
func FuzzServeConn(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s, uint8(255))
		f.Add(s, uint8(6))
	}
	var start bytes.Buffer
	start.WriteString(http2.ClientPreface)
	http2.NewFramer(&start, nil).WriteSettings()
	preface := start.Bytes()
	servers := []*Server{
		{Handler: echo, MaxBodyBytes: 1000, MaxHeaderBytes: 1000, MaxConcurrentStreams: 8},
		{Handler: &onHead{}, HandleOnHead: true, MaxBodyBytes: 1000, MaxHeaderBytes: 1000, MaxConcurrentStreams: 8},
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		for _, s := range servers {
			checkServeConn(t, s, append(bytes.Clone(preface), in...), int(chunk)+1)
		}
	})
}

// checkServeConn serves in, chunk bytes a read, on a connection of s,
// and checks what s wrote and that nothing of the connection is left.
func checkServeConn(t *testing.T, s *Server, in []byte, chunk int) {
	t.Helper()
	goroutines := runtime.NumGoroutine()
	c := &memConn{in: in, chunk: chunk}
	s.ServeConn(c, nil)
	// ServeConn waits for its handlers: nothing of the connection is
	// left. The fuzzing engine's own goroutines come and go, so a count
	// above the one before is given a moment to come back.
	for i := 0; runtime.NumGoroutine() > goroutines; i++ {
		if i == 100 {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after ServeConn, %d before:\n%s", runtime.NumGoroutine(), goroutines, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
	fr := http2.NewFramer(nil, &c.out)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	for {
		if _, err := fr.ReadFrame(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("the server wrote what its peer cannot read: %v", err)
			}
			return
		}
	}
}
