// Command stubconnector is a stand-in ILP connector for benchmarks and the
// demo: it answers every ILP-over-HTTP Prepare with the same Fulfill, over
// HTTP/1.1 and h2c on one port, doing as little work per packet as it can
// so that what a benchmark measures is the proxy in front of it.
//
// The Fulfill's data is the connector's -name, so a client can tell which
// connector answered. A body that is not a Prepare gets a Reject F01, as a
// real connector would answer. GET /health answers 200 for active health
// checks.
//
// It prints "READY <host:port>" on stdout once it accepts connections and
// exits on SIGINT or SIGTERM. With -log-packets it also prints
// "RECV <destination>" for every Prepare it reads, before answering it, so
// that a fault test can tell which packets reached which connector even
// if the stub is killed mid-exchange.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
)

// Fulfillment is the preimage every stub fulfills with. It is printable
// ASCII so that a whole Fulfill can be written into a JSON config (the
// benchmark's Caddy `respond` floor).
const Fulfillment = "caddy-ilp stub connector fulfill"

// maxPacket bounds what the stub reads, like a connector's own limit.
const maxPacket = 1 << 16

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (loopback only in tests)")
	name := flag.String("name", "stub", "connector name, returned as the Fulfill's data")
	logPackets := flag.Bool("log-packets", false, `print "RECV <destination>" for every Prepare read`)
	flag.Parse()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("stubconnector: %v", err)
	}
	s := newStub(*name)
	if *logPackets {
		s.received = func(dest []byte) { fmt.Printf("RECV %s\n", dest) }
	}

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: s, Protocols: &protocols, ErrorLog: log.New(io.Discard, "", 0)}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	fmt.Printf("READY %s\n", ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("stubconnector: %v", err)
	}
}

// stub is the connector's http.Handler.
type stub struct {
	fulfill  []byte
	reject   []byte // F01, for bodies that are not Prepares
	bufs     sync.Pool
	received func(dest []byte) // nil: packets are not logged
}

func newStub(name string) *stub {
	s := &stub{
		fulfill: ilpdest.AppendFulfill(nil, []byte(Fulfillment), []byte(name)),
		reject: ilpdest.AppendReject(nil, ilpdest.Reject{
			Code:        ilpdest.CodeF01,
			TriggeredBy: "private.stub",
			Message:     "not an ILP Prepare",
		}),
	}
	s.bufs.New = func() any { b := make([]byte, 0, 2048); return &b }
	return s
}

func (s *stub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/health" {
		w.WriteHeader(http.StatusOK)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "ILP over HTTP takes POST", http.StatusMethodNotAllowed)
		return
	}
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	body, err := readBody(r, (*bp)[:0])
	*bp = body[:0]
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	reply := s.fulfill
	if p, err := ilpdest.ReadPrepareHeader(body); err != nil {
		reply = s.reject
	} else if s.received != nil {
		s.received(p.Destination)
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/octet-stream"}
	h["Content-Length"] = []string{strconv.Itoa(len(reply))}
	w.Write(reply)
}

// readBody reads the request body into buf, refusing more than maxPacket
// bytes.
func readBody(r *http.Request, buf []byte) ([]byte, error) {
	body := io.LimitedReader{R: r.Body, N: maxPacket + 1}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			if len(buf) > maxPacket {
				return buf, errors.New("packet too large")
			}
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
