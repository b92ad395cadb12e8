package h2

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// ilpAnswer answers as an edge does: a Fulfill of a few dozen bytes.
var ilpAnswer = HandlerFunc(func(w *ResponseWriter, r *Request) {
	w.SetContentType("application/octet-stream")
	w.Write(r.Body[:40])
})

// BenchmarkRoundTrip16Streams is one request and its answer, 16 streams
// at once on one keep-alive h2c connection; the client is raw frames
// that allocate nothing, so allocs/op are the server's.
func BenchmarkRoundTrip16Streams(b *testing.B) {
	benchmarkRoundTrip(b, startServer(b, &Server{Handler: ilpAnswer}))
}

// BenchmarkRoundTrip16StreamsDeepHandler is the same with a handler that
// needs an 8 KiB stack, as ilp_edge and ilp_proxy with their upstream
// write do: what a goroutine's stack costs a stream.
func BenchmarkRoundTrip16StreamsDeepHandler(b *testing.B) {
	benchmarkRoundTrip(b, startServer(b, &Server{Handler: HandlerFunc(func(w *ResponseWriter, r *Request) {
		useStack(8)
		ilpAnswer(w, r)
	})}))
}

// BenchmarkRoundTrip16StreamsOnHead is the same with HandleOnHead, as the
// front door serves, and a handler that reads the body with ReadBody.
// The 16 requests of a round fit one read, so each is handed over whole
// (requestBuffered): this is what HandleOnHead costs the common case. A
// request handed over on its head, its body in a later read, costs a
// wait and a wake-up more (about 0.5 µs a stream with 2 KB packets).
func BenchmarkRoundTrip16StreamsOnHead(b *testing.B) {
	benchmarkRoundTrip(b, startServer(b, &Server{HandleOnHead: true, Handler: HandlerFunc(func(w *ResponseWriter, r *Request) {
		body, err := r.ReadBody()
		if err != nil {
			return
		}
		w.SetContentType("application/octet-stream")
		w.Write(body[:40])
	})}))
}

// useStack uses about kib KiB of stack.
//
//go:noinline
func useStack(kib int) byte {
	var frame [1000]byte
	if kib <= 1 {
		return frame[kib]
	}
	return useStack(kib-1) + frame[kib]
}

// BenchmarkRoundTrip16StreamsNetHTTP is the same exchange with net/http's
// HTTP/2 server (h2c), for comparison.
func BenchmarkRoundTrip16StreamsNetHTTP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	s := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body[:40])
	})}
	go s.Serve(ln)
	defer s.Close()
	benchmarkRoundTrip(b, ln.Addr().String())
}

const benchStreams = 16

func benchmarkRoundTrip(b *testing.B, addr string) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	packet := bytes.Repeat([]byte{0x0c}, 200) // an ILP Prepare's size

	// The preface, SETTINGS with the largest stream window, and the
	// largest connection window, so that the client never sends a
	// WINDOW_UPDATE.
	var out bytes.Buffer
	fw := http2.NewFramer(&out, nil)
	out.WriteString(http2.ClientPreface)
	fw.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	fw.WriteWindowUpdate(0, 1<<31-1-65535)
	fw.WriteSettingsAck()
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	block := func() []byte {
		hbuf.Reset()
		for _, f := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
			{Name: ":path", Value: "/ilp"}, {Name: ":authority", Value: addr},
			{Name: "content-type", Value: "application/octet-stream"},
			{Name: "content-length", Value: strconv.Itoa(len(packet))}} {
			enc.WriteField(f)
		}
		return bytes.Clone(hbuf.Bytes())
	}
	first, indexed := block(), block() // the second: all from the dynamic table
	id := uint32(1)
	request := func(blk []byte) {
		fw.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndHeaders: true})
		fw.WriteData(id, true, packet)
		id += 2
	}
	request(first)
	br := bufio.NewReader(nc)
	var head [9]byte
	// readAnswers reads frames until n streams have ended.
	readAnswers := func(n int) {
		for n > 0 {
			if _, err := io.ReadFull(br, head[:]); err != nil {
				b.Fatal(err)
			}
			length := int(binary.BigEndian.Uint32(head[:4]) >> 8)
			typ, flags := http2.FrameType(head[3]), http2.Flags(head[4])
			if _, err := br.Discard(length); err != nil {
				b.Fatal(err)
			}
			switch {
			case typ == http2.FrameRSTStream || typ == http2.FrameGoAway:
				b.Fatalf("%v", typ)
			case (typ == http2.FrameData || typ == http2.FrameHeaders) && flags.Has(http2.FlagDataEndStream):
				n--
			}
		}
	}
	if _, err := nc.Write(out.Bytes()); err != nil {
		b.Fatal(err)
	}
	readAnswers(1)

	// Each round: 16 requests in one write, then their answers.
	out.Reset()
	for range benchStreams {
		request(indexed)
	}
	round := bytes.Clone(out.Bytes())
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += benchStreams {
		// Patch the stream ids: HEADERS and DATA, per request.
		for i, off := 0, 0; i < benchStreams; i++ {
			for range 2 {
				binary.BigEndian.PutUint32(round[off+5:], id)
				off += 9 + int(binary.BigEndian.Uint32(round[off:])>>8)
			}
			id += 2
		}
		if _, err := nc.Write(round); err != nil {
			b.Fatal(err)
		}
		readAnswers(benchStreams)
	}
}
