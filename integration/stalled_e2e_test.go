package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"
)

// TestStalledConnectorLeavesNothingBehind sends 1,000 Prepares at once
// through each front door to a connector that never answers. Every one
// must get R00 once it expires, and when the connector lets go, Caddy's
// goroutines must come back to what they were: nothing held past a
// packet's expiry.
func TestStalledConnectorLeavesNothingBehind(t *testing.T) {
	release := make(chan struct{})
	stalled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		<-release
	}))
	t.Cleanup(stalled.Close)
	startInProcess(t, bothDoors(9080, hostileToken, hostport(stalled), "", ""))

	baseline := settledGoroutines()
	const n = 1000
	const ttl = 2 * time.Second
	for _, door := range []string{"reverse_proxy", "ilp_proxy"} {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}, Timeout: 30 * time.Second}
		answers := make(chan string, n)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var latest time.Duration // the latest answer after its packet's expiry
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				expiry := time.Now().Add(ttl)
				a := sendOnceTTL(client, "http://127.0.0.1:9080/"+door, fmt.Sprintf("g.stall.r%d.x", i), ttl)
				mu.Lock()
				latest = max(latest, time.Since(expiry))
				mu.Unlock()
				answers <- a
			}()
		}
		wg.Wait()
		close(answers)
		counts := map[string]int{}
		for a := range answers {
			counts[a]++
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		t.Logf("%s: %d packets to a stalled connector: %v; the last answer came %v after its packet's expiry; %d goroutines, heap in use %d MB",
			door, n, counts, latest.Round(time.Millisecond), runtime.NumGoroutine(), ms.HeapInuse>>20)
		// R02: a packet that expired before the edge read it, as some
		// do when 1,000 arrive at once on a loaded machine. Either way
		// the peer got its Reject, and nothing is held for it.
		if counts["R00"]+counts["R02"] != n {
			t.Errorf("%s: %d of %d packets got R00 or R02: %v", door, counts["R00"]+counts["R02"], n, counts)
		}
		client.CloseIdleConnections()
	}
	close(release)
	waitGoroutinesBack(t, baseline, "the packets expired and the connector let go")
}

// settledGoroutines is the process's goroutines once transient ones are
// gone.
func settledGoroutines() int {
	runtime.GC()
	time.Sleep(100 * time.Millisecond)
	return runtime.NumGoroutine()
}

// waitGoroutinesBack waits until the process's goroutines are back to
// baseline (with 10 to spare), or fails the test with their stacks after
// 30 s: goroutines of the tests before, in the same process, may still be
// winding down (a stopping config waits for its packets in flight).
func waitGoroutinesBack(t *testing.T, baseline int, after string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		now := settledGoroutines()
		if now <= baseline+10 {
			t.Logf("goroutines: %d before, %d after", baseline, now)
			return
		}
		if time.Now().After(deadline) {
			var stacks bytes.Buffer
			pprof.Lookup("goroutine").WriteTo(&stacks, 1)
			t.Fatalf("goroutines: %d before, still %d after %s:\n%s", baseline, now, after, stacks.String())
		}
	}
}
