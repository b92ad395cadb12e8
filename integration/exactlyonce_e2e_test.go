package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilp-edge/caddy-ilp/ilpdest/ilptest"
)

// buildStub builds the stub connector once per test binary.
var buildStub = buildOnce("./stubconnector")

// TestExactlyOnceUnderKills sends a steady stream of Prepares, each to a
// destination of its own, through both front doors while one of three
// connectors is SIGKILLed and restarted every 2 s. Every Prepare must get
// exactly one ILP reply, no Prepare may reach two connectors (or one
// twice), and every Fulfill the peer got must be for a packet a connector
// received.
func TestExactlyOnceUnderKills(t *testing.T) {
	stub, err := buildStub()
	if err != nil {
		t.Fatal(err)
	}
	ports := []int{freePort(t), freePort(t), freePort(t)}
	var mu sync.Mutex
	var stubs []*process // every stub process ever started, killed ones too
	startStub := func(i int) *process {
		p := start(t, stub, "-listen", fmt.Sprintf("127.0.0.1:%d", ports[i]), "-name", fmt.Sprintf("c%d", i), "-log-packets")
		p.waitReady(t)
		mu.Lock()
		stubs = append(stubs, p)
		mu.Unlock()
		return p
	}
	live := make([]*process, len(ports))
	var upstreams []string
	for i := range ports {
		live[i] = startStub(i)
		upstreams = append(upstreams, fmt.Sprintf("127.0.0.1:%d", ports[i]))
	}
	ups := strings.Join(upstreams, " ")
	startInProcess(t, bothDoors(9080, hostileToken, ups,
		"lb_retries 2\n fail_duration 1s\n max_fails 1", "fail_duration 1s\n max_fails 1"))

	const perDoor, workers = 1500, 8
	type outcome struct{ dest, answer string }
	var outcomes []outcome
	for _, door := range []string{"reverse_proxy", "ilp_proxy"} {
		stop := make(chan struct{})
		killed := make(chan int, 1)
		go func() { // the chaos: kill one, restart it 300 ms later, every 2 s
			defer close(killed)
			n := 0
			for {
				select {
				case <-stop:
					killed <- n
					return
				case <-time.After(2 * time.Second):
				}
				i := n % len(live)
				live[i].stop() // SIGKILL
				time.Sleep(300 * time.Millisecond)
				live[i] = startStub(i)
				n++
			}
		}()
		results := make(chan outcome, perDoor)
		var wg sync.WaitGroup
		client := &http.Client{Timeout: 30 * time.Second}
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < perDoor; i += workers {
					dest := fmt.Sprintf("g.once.r%d.%s-%d", i%30, door, i)
					results <- outcome{dest, sendOnce(client, "http://127.0.0.1:9080/"+door, dest)}
					time.Sleep(time.Duration(workers) * 5 * time.Millisecond) // about 200 packets/s in all
				}
			}()
		}
		wg.Wait()
		close(stop)
		kills := <-killed
		close(results)
		counts := map[string]int{}
		for o := range results {
			outcomes = append(outcomes, o)
			counts[o.answer]++
		}
		t.Logf("%s: %d connector kills during %d packets: %v", door, kills, perDoor, counts)
		if kills < 2 {
			t.Errorf("%s: only %d kills happened; the test proves little", door, kills)
		}
	}

	// Every packet any connector received, killed ones included.
	seen := map[string]int{}
	mu.Lock()
	for _, p := range stubs {
		p.mu.Lock()
		for _, l := range p.lines {
			if dest, ok := strings.CutPrefix(l, "RECV "); ok {
				seen[dest]++
			}
		}
		p.mu.Unlock()
	}
	mu.Unlock()
	for dest, n := range seen {
		if n > 1 {
			t.Errorf("%s reached connectors %d times", dest, n)
		}
	}
	for _, o := range outcomes {
		switch {
		case o.answer == "fulfill" && seen[o.dest] == 0:
			t.Errorf("%s was fulfilled but no connector received it", o.dest)
		case o.answer != "fulfill" && (len(o.answer) != 3 || !strings.ContainsAny(o.answer[:1], "FTR")):
			t.Errorf("%s: the peer got %s, not one ILP reply", o.dest, o.answer)
		}
	}
}

// sendOnce posts one Prepare to dest, expiring in 10 s, and names the
// answer: "fulfill", the Reject's code, or what went wrong instead.
func sendOnce(c *http.Client, url, dest string) string {
	return sendOnceTTL(c, url, dest, 10*time.Second)
}

// sendOnceTTL is sendOnce for a Prepare that expires in ttl.
func sendOnceTTL(c *http.Client, url, dest string, ttl time.Duration) string {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(ilptest.Prepare(dest, ttl)))
	req.Header.Set("Authorization", "Bearer "+hostileToken)
	res, err := c.Do(req)
	if err != nil {
		return "error: " + err.Error()
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return "error reading the reply: " + err.Error()
	}
	return answerOf(res, body)
}
