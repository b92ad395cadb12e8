package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// TestShutdownAnswersInFlight sends 200 Prepares, 100 through each front
// door, to a connector that takes 500 ms over each, and SIGTERMs Caddy
// once the connector holds all of them: every packet must get its Fulfill
// before Caddy exits (within its grace_period), and new connections must
// be refused afterwards, not accepted and dropped.
func TestShutdownAnswersInFlight(t *testing.T) {
	var holding atomic.Int32
	conn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		holding.Add(1)
		time.Sleep(500 * time.Millisecond)
		w.Write(ilptest.Fulfill([]byte("late")))
	}))
	t.Cleanup(conn.Close)
	caddy, addr, _ := runEdge(t, "\tgrace_period 10s", hostport(conn))
	base := "http://" + addr + "/"
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	holding.Store(0)

	const n = 200
	answers := make(chan string, n)
	var wg sync.WaitGroup
	for i := range n {
		door := []string{"reverse_proxy", "ilp_proxy"}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers <- sendOnce(client, base+door, fmt.Sprintf("g.shut.r%d.x", i))
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); holding.Load() < n; {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d packets reached the connector", holding.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := caddy.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(answers)
	counts := map[string]int{}
	for a := range answers {
		counts[a]++
	}
	t.Logf("%d packets in flight at SIGTERM: %v", n, counts)
	if counts["fulfill"] != n {
		t.Errorf("%d of %d in-flight packets got their Fulfill: %v", counts["fulfill"], n, counts)
	}
	exited := make(chan error, 1)
	go func() { exited <- caddy.wait() }()
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		t.Fatal("Caddy did not exit within its grace period")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("the port still accepts connections after Caddy exited")
	}
}
