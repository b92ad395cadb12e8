package h2

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// These tests are the mitigations doc.go lists: rapid reset
// (CVE-2023-44487) and CONTINUATION flood (CVE-2024-27316).

// goAwayReader reads the server's frames on its own goroutine until a
// GOAWAY or the connection's end, and gives the GOAWAY's code and last
// stream, or -1 for a connection closed without one.
func goAwayReader(c *client) <-chan [2]int64 {
	done := make(chan [2]int64, 1)
	go func() {
		for {
			f, err := c.fr.ReadFrame()
			if err != nil {
				done <- [2]int64{-1, -1}
				return
			}
			if g, ok := f.(*http2.GoAwayFrame); ok {
				done <- [2]int64{int64(g.ErrCode), int64(g.LastStreamID)}
				return
			}
		}
	}()
	return done
}

func TestRapidReset(t *testing.T) {
	const maxStreams = 16
	release := make(chan struct{})
	var running, most, calls atomic.Int32
	s := &Server{MaxConcurrentStreams: maxStreams, Handler: HandlerFunc(func(w *ResponseWriter, r *Request) {
		calls.Add(1)
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release // forwarding to a connector that takes its time
		running.Add(-1)
	})}
	addr := startServer(t, s)
	defer close(release)
	c := dial(t, addr)
	c.handshake()
	w := http2.NewFramer(c.nc, nil) // writes while goAwayReader reads
	done := goAwayReader(c)
	block := c.block(post()...)
	opened := 0
	for id := uint32(1); id < 20000; id += 2 {
		if w.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}) != nil ||
			w.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			break // the server closed the connection
		}
		opened++
	}
	g := <-done
	if http2.ErrCode(g[0]) != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", g)
	}
	// The budget: MaxConcurrentStreams resets at once, then a refusal.
	if g[1] > 4*maxStreams {
		t.Errorf("closed after stream %d", g[1])
	}
	if m := most.Load(); m > maxStreams {
		t.Errorf("%d handlers at once, MaxConcurrentStreams %d", m, maxStreams)
	}
	t.Logf("client opened and reset %d streams before its writes failed; GOAWAY after stream %d; %d handler calls, at most %d at once",
		opened, g[1], calls.Load(), most.Load())
}

func TestResetNowAndThenTolerated(t *testing.T) {
	// A client that gives up on a request in ten (a timeout) keeps its
	// connection: an answered stream pays for a reset in four.
	s := &Server{MaxConcurrentStreams: 4, Handler: echo}
	c := dial(t, startServer(t, s))
	c.handshake()
	for i := range 500 {
		id := uint32(2*i + 1)
		if i%10 == 9 {
			c.headers(id, false, post()...)
			c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
			continue
		}
		c.request(id, "x")
		c.expectAnswer(id)
	}
}

// floodHeaders opens stream 1 with a header block that never ends, and
// sends CONTINUATION frames made by frag until the server closes the
// connection or limit bytes are sent; it returns the bytes sent.
func floodHeaders(t *testing.T, c *client, frag func(i int) []byte, limit int) int {
	w := http2.NewFramer(c.nc, nil)
	w.AllowIllegalWrites = true
	w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block(post()...)})
	sent := 0
	for i := 0; sent < limit; i++ {
		p := frag(i)
		if w.WriteContinuation(1, false, p) != nil {
			break
		}
		sent += 9 + len(p)
	}
	return sent
}

func TestContinuationFlood(t *testing.T) {
	for _, tc := range []struct {
		name string
		frag func(c *client) func(i int) []byte
	}{
		{"empty frames", func(*client) func(int) []byte {
			return func(int) []byte { return nil }
		}},
		{"new fields", func(c *client) func(int) []byte {
			// Each frame a field never seen: literal bytes on the wire.
			return func(i int) []byte {
				c.hbuf.Reset()
				c.henc.WriteField(hpack.HeaderField{Name: fmt.Sprintf("x-%d", i), Value: string(make([]byte, 1000))})
				return c.hbuf.Bytes()
			}
		}},
		{"one field repeated", func(c *client) func(int) []byte {
			// Indexed after its first time: 1 byte on the wire, 1,032
			// bytes decoded, each.
			return func(i int) []byte {
				c.hbuf.Reset()
				for range 100 {
					c.henc.WriteField(hpack.HeaderField{Name: "x-same", Value: string(make([]byte, 1000))})
				}
				return c.hbuf.Bytes()
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{Handler: echo}
			addr, cl := startCounting(t, s)
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			c := dial(t, addr)
			c.handshake()
			done := goAwayReader(c)
			sent := floodHeaders(t, c, tc.frag(c), 256<<20)
			g := <-done
			if http2.ErrCode(g[0]) != http2.ErrCodeEnhanceYourCalm {
				t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", g)
			}
			c.nc.Close()
			var after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&after)
			read := cl.read.Load()
			// What the server read: the block up to twice MaxHeaderBytes,
			// frame headers, its read buffer, and lingerBytes dropped
			// after the GOAWAY.
			if bound := int64(2*DefaultMaxHeaderBytes + 100*9 + 4<<10 + 16<<10 + lingerBytes + 4<<10); read > bound {
				t.Errorf("server read %d bytes, bound %d", read, bound)
			}
			if sent >= 256<<20 {
				t.Errorf("the client sent %d bytes, never stopped", sent)
			}
			if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 4<<20 {
				t.Errorf("heap grew by %d bytes", grew)
			}
			t.Logf("client sent %d bytes before its writes failed, server read %d; heap %d → %d bytes",
				sent, read, before.HeapAlloc, after.HeapAlloc)
		})
	}
}

func TestPingsAnsweredInOneWrite(t *testing.T) {
	// The read loop writes its control frames before it blocks on a
	// read: the ACKs of pings read at once go out in one write.
	s := &Server{Handler: echo}
	addr, cl := startCounting(t, s)
	c := dial(t, addr)
	c.handshake()
	c.request(1, "x")
	c.expectAnswer(1)
	writes := cl.writes.Load()
	var batch []byte
	w := http2.NewFramer(writerFunc(func(p []byte) (int, error) { batch = append(batch, p...); return len(p), nil }), nil)
	for i := range 10 {
		w.WritePing(false, [8]byte{byte(i)})
	}
	c.nc.Write(batch)
	got := 0
	for got < 10 {
		if p, ok := c.read().(*http2.PingFrame); ok && p.IsAck() {
			if p.Data[0] != byte(got) {
				t.Fatalf("ACK %d for ping %d", p.Data[0], got)
			}
			got++
		}
	}
	if n := cl.writes.Load() - writes; n != 1 {
		t.Errorf("%d writes for 10 PING ACKs, want 1", n)
	}
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
