package h2

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// h2cClient is Go's HTTP/2 client speaking h2c with prior knowledge,
// counting the connections it dials.
func h2cClient(dials *atomic.Int32) *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
}

func TestGoClient200ConcurrentPOSTs(t *testing.T) {
	// 200 streams at once on one connection: x/net's client opens a
	// second connection past MaxConcurrentStreams, and with
	// StrictMaxConcurrentStreams its reservations deadlock when more
	// requests than the limit start at once (its stream count includes
	// the requests still waiting for its header lock).
	s := &Server{MaxConcurrentStreams: 256, Handler: HandlerFunc(func(w *ResponseWriter, r *Request) {
		w.SetContentType("application/octet-stream")
		w.AddField("X-Length", fmt.Sprint(len(r.Body)))
		w.WriteString("echo:")
		w.Write(r.Body)
	})}
	addr := startServer(t, s)
	var dials atomic.Int32
	client := h2cClient(&dials)
	defer client.CloseIdleConnections()

	// One request first, so that the 200 share its connection.
	if resp, err := client.Post("http://"+addr+"/ilp", "application/octet-stream", bytes.NewReader([]byte("warm"))); err != nil {
		t.Fatal(err)
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Go(func() {
			size := 80 + i*7
			if i%10 == 0 {
				size = 40000 // the largest ILP packet: past the 64 KiB connection window in total
			}
			body := bytes.Repeat([]byte{byte('a' + i%26)}, size)
			copy(body, fmt.Sprint(i))
			resp, err := client.Post("http://"+addr+"/ilp", "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			switch {
			case err != nil:
				errs <- err
			case resp.StatusCode != 200 || resp.ProtoMajor != 2:
				errs <- fmt.Errorf("%d: %s %s", i, resp.Status, resp.Proto)
			case !bytes.Equal(got, append([]byte("echo:"), body...)):
				errs <- fmt.Errorf("%d: body of %d bytes, want %d", i, len(got), 5+len(body))
			case resp.Header.Get("X-Length") != fmt.Sprint(size) || resp.ContentLength != int64(5+size):
				errs <- fmt.Errorf("%d: %v", i, resp.Header)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}
