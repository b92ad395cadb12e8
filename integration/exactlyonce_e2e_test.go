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

// TestExactlyOnceUnderKills sends a steady stream of Prepares, each to a
// destination of its own, through both front doors while one of three
// connectors is SIGKILLed and restarted every 2 s. Every Prepare must get
// exactly one ILP reply, no Prepare may reach two connectors (or one
// twice), and every Fulfill the peer got must be for a packet a connector
// received.
func TestExactlyOnceUnderKills(t *testing.T) {
	fleet := startStubFleet(t, 3)
	startInProcess(t, bothDoors(9080, hostileToken, fleet.upstreams,
		"lb_retries 2\n fail_duration 1s\n max_fails 1", "fail_duration 1s\n max_fails 1"))

	const perDoor = 1500
	var outcomes []outcome
	for _, door := range []string{"reverse_proxy", "ilp_proxy"} {
		stop := make(chan struct{})
		killed := fleet.killEvery(2*time.Second, 300*time.Millisecond, stop) // the chaos
		results := sendSteadily(t, perDoor, "http://127.0.0.1:9080/"+door, func(i int) string {
			return fmt.Sprintf("g.once.r%d.%s-%d", i%30, door, i)
		})
		close(stop)
		kills := <-killed
		counts := map[string]int{}
		for _, o := range results {
			counts[o.answer]++
		}
		outcomes = append(outcomes, results...)
		t.Logf("%s: %d connector kills during %d packets: %v", door, kills, perDoor, counts)
		if kills < 2 {
			t.Errorf("%s: only %d kills happened; the test proves little", door, kills)
		}
	}

	seen := fleet.received() // killed connectors included
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

// outcome is a packet's destination and the answer the peer got.
type outcome struct{ dest, answer string }

// sendSteadily sends n Prepares to url, the i-th to dest(i), from 8
// workers at about 200 packets per second in all.
func sendSteadily(t *testing.T, n int, url string, dest func(i int) string) []outcome {
	const workers = 8
	results := make(chan outcome, n)
	var wg sync.WaitGroup
	client := testClient(t, 30*time.Second)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				results <- outcome{dest(i), sendOnce(client, url, dest(i))}
				time.Sleep(workers * 5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	close(results)
	var out []outcome
	for o := range results {
		out = append(out, o)
	}
	return out
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
