package integration

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildStub builds the stub connector once per test binary.
var buildStub = buildOnce("./stubconnector")

// stubFleet is n stub connectors (integration/stubconnector) on loopback
// that log every packet they receive, and can be killed and restarted on
// their ports.
type stubFleet struct {
	t         *testing.T
	bin       string
	ports     []int
	upstreams string // "127.0.0.1:p1 127.0.0.1:p2 …"

	mu   sync.Mutex
	live []*process
	all  []*process // every stub process ever started, killed ones too
}

func startStubFleet(t *testing.T, n int) *stubFleet {
	t.Helper()
	bin, err := buildStub()
	if err != nil {
		t.Fatal(err)
	}
	f := &stubFleet{t: t, bin: bin, live: make([]*process, n)}
	var ups []string
	for i := range n {
		f.ports = append(f.ports, freePort(t))
		ups = append(ups, fmt.Sprintf("127.0.0.1:%d", f.ports[i]))
		f.startStub(i)
	}
	f.upstreams = strings.Join(ups, " ")
	return f
}

func (f *stubFleet) startStub(i int) {
	p := start(f.t, f.bin, "-listen", fmt.Sprintf("127.0.0.1:%d", f.ports[i]), "-name", fmt.Sprintf("c%d", i), "-log-packets")
	p.waitReady(f.t)
	f.mu.Lock()
	f.live[i] = p
	f.all = append(f.all, p)
	f.mu.Unlock()
}

// killEvery SIGKILLs one connector every interval, in turn, and restarts
// it down later, until stop is closed; it returns how many it killed.
func (f *stubFleet) killEvery(interval, down time.Duration, stop <-chan struct{}) <-chan int {
	killed := make(chan int, 1)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				killed <- n
				return
			case <-time.After(interval):
			}
			i := n % len(f.ports)
			f.mu.Lock()
			p := f.live[i]
			f.mu.Unlock()
			p.stop() // SIGKILL
			time.Sleep(down)
			f.startStub(i)
			n++
		}
	}()
	return killed
}

// received counts, per destination, the packets every connector ever
// started has received.
func (f *stubFleet) received() map[string]int {
	seen := map[string]int{}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.all {
		p.mu.Lock()
		for _, l := range p.lines {
			if dest, ok := strings.CutPrefix(l, "RECV "); ok {
				seen[dest]++
			}
		}
		p.mu.Unlock()
	}
	return seen
}
