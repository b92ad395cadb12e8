package integration

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest"
	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// draft3Peer is an RFC 35 draft 3 receiver, written from the draft's
// text: it answers a Prepare carrying a Request-Id and a Callback-Url
// with 202 at once, then POSTs the Fulfill (the fixture's fulfillment)
// to the Callback-Url with the same Request-Id and its own token. A
// callback answered 5xx, or not at all, is tried again (50 ms, doubling
// to 400 ms) until half a second past the Prepare's expiry; any other
// status ends it. It takes only the edge's token.
type draft3Peer struct {
	url  string
	opts draft3Options

	mu        sync.Mutex
	prepares  int
	ids       map[string]bool
	taken     int              // callbacks answered 200
	callbacks map[string][]int // each id's callbacks' statuses, in order (0: no answer)
	edges     map[string]string
	auths     []string // the Authorization of each Prepare
}

// draft3Options are a draft3Peer's deviations.
type draft3Options struct {
	// Wait this long before the callback.
	Hold time.Duration
	// Post every reply a second time once the first is answered, as a
	// peer that lost the first answer would.
	Twice bool
	// A new connection per callback (no keep-alive), so that a balancer
	// in front of several edges spreads them.
	FreshConnections bool
	// Take any Authorization from the edge (a JWT, say), recorded.
	AnyCredential bool
}

func startDraft3Peer(t *testing.T, token, edgeToken string, opts draft3Options) *draft3Peer {
	t.Helper()
	p := &draft3Peer{opts: opts, ids: map[string]bool{}, callbacks: map[string][]int{}, edges: map[string]string{}}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: opts.FreshConnections}}
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id, callback := r.Header.Get("Request-Id"), r.Header.Get("Callback-Url")
		p.mu.Lock()
		p.auths = append(p.auths, r.Header.Get("Authorization"))
		p.mu.Unlock()
		if !opts.AnyCredential && r.Header.Get("Authorization") != "Bearer "+edgeToken {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		prepare, err := ilpdest.ReadPrepare(body)
		if id == "" || callback == "" || err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		u, _ := url.Parse(callback)
		p.mu.Lock()
		p.prepares++
		p.ids[id] = true
		p.edges[id] = u.Query().Get("edge")
		p.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		wg.Go(func() {
			time.Sleep(opts.Hold)
			status := p.callBack(client, callback, id, token, prepare.ExpiresAt.Add(500*time.Millisecond))
			if status == http.StatusOK && opts.Twice {
				p.post(client, callback, id, token)
			}
		})
	}))
	t.Cleanup(func() { wg.Wait(); srv.Close(); client.CloseIdleConnections() })
	p.url = srv.URL + "/ilp"
	return p
}

// callBack POSTs the reply until it is answered with other than 5xx, or
// until, and returns the last status.
func (p *draft3Peer) callBack(client *http.Client, callback, id, token string, until time.Time) int {
	wait := 50 * time.Millisecond
	for {
		status := p.post(client, callback, id, token)
		if status != 0 && status < 500 || !time.Now().Add(wait).Before(until) {
			return status
		}
		time.Sleep(wait)
		wait = min(2*wait, 400*time.Millisecond)
	}
}

// post makes one try, and records its status (0: no answer).
func (p *draft3Peer) post(client *http.Client, callback, id, token string) int {
	req, _ := http.NewRequest(http.MethodPost, callback, bytes.NewReader(ilptest.Fulfill([]byte("bob"))))
	req.Header.Set("Request-Id", id)
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	status := 0
	if res, err := client.Do(req); err == nil {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		status = res.StatusCode
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.callbacks[id] = append(p.callbacks[id], status)
	if status == http.StatusOK {
		p.taken++
	}
	return status
}

func (p *draft3Peer) counts() (prepares, ids, taken int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.prepares, len(p.ids), p.taken
}

// history returns each Request-Id's callback statuses and the edge its
// Callback-Url named.
func (p *draft3Peer) history() (map[string][]int, map[string]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	calls := make(map[string][]int, len(p.callbacks))
	for id, s := range p.callbacks {
		calls[id] = append([]int(nil), s...)
	}
	edges := make(map[string]string, len(p.edges))
	for id, e := range p.edges {
		edges[id] = e
	}
	return calls, edges
}

// authorizations returns the Authorization of each Prepare bob got.
func (p *draft3Peer) authorizations() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.auths...)
}
