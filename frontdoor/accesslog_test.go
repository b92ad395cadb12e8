package frontdoor

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ilp-edge/caddy-ilp/async"
	"github.com/ilp-edge/caddy-ilp/handler"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestAccessLogRequestID: the access log line of an asynchronous
// Prepare's 202 has its Request-Id, to find the edge's line about its
// reply by; a synchronous one's has none.
func TestAccessLogRequestID(t *testing.T) {
	const id = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
	cb := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(cb.Close)
	e := &handler.Edge{Address: "test.edge", DisableMetrics: true, Peers: []*handler.Peer{{Name: "alice", Tokens: []string{onHeadToken},
		CallbackPolicy: async.CallbackPolicy{Prefixes: []string{cb.URL + "/cb/"}}}}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := e.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Cleanup() })
	// Lines encoded as they are written, as in production: the request
	// they show is the exchange's, reused once answered.
	buf := new(lockedBuffer)
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), buf, zap.InfoLevel)
	s := &Server{name: "access-log-test", ctx: context.Background(), logger: zap.NewNop(), edge: e,
		accessLog: zap.New(core), needsReplacer: true}
	s.chain = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return e.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			_, err := w.Write(ilptest.Fulfill([]byte("ok")))
			return err
		}))
	})
	s.setupServers()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })

	for _, headers := range [][]string{{"Request-Id", id, "Callback-Url", cb.URL + "/cb/"}, nil} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/", bytes.NewReader(ilptest.Prepare("g.a.b", time.Minute)))
		req.Header.Set("Authorization", "Bearer "+onHeadToken)
		for i := 0; i < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	// A line is written once the answer went out: wait for both.
	var lines map[float64]map[string]any // by status
	for deadline := time.Now().Add(5 * time.Second); len(lines) < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("access log lines %v, want 2", lines)
		}
		lines = map[float64]map[string]any{}
		for line := range bytes.Lines(buf.Bytes()) {
			var l map[string]any
			if err := json.Unmarshal(line, &l); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			lines[l["status"].(float64)] = l
		}
	}
	if l := lines[http.StatusAccepted]; l["ilp_request_id"] != id {
		t.Errorf("the asynchronous Prepare's line: %v, want ilp_request_id %s", l, id)
	}
	if l := lines[http.StatusOK]; l["ilp_request_id"] != nil || l["ilp_result"] != "fulfill" {
		t.Errorf("the synchronous Prepare's line: %v, want a fulfill and no ilp_request_id", l)
	}
}

// lockedBuffer is a log's output that a test reads while it is written.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Sync() error { return nil }

// Bytes is a copy of what was written so far.
func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}
