package async

import (
	"sync"
)

// InFlight bounds the asynchronous exchanges accepted and not yet ended
// (answered by callback, or abandoned), per peer and in all, so that a
// peer that sends faster than its replies can be delivered, or a fleet
// that stalls, holds a bounded amount of memory: past a bound, a new
// Prepare is refused (429) before it is accepted.
type InFlight struct {
	PerPeer int // 0: no bound per peer
	Total   int // 0: no bound in all

	mu     sync.Mutex
	byPeer map[string]int
	total  int
	wg     sync.WaitGroup
}

// Acquire takes a place for one of peer's exchanges, or reports that
// there is none.
func (f *InFlight) Acquire(peer string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byPeer == nil {
		f.byPeer = map[string]int{}
	}
	if f.Total > 0 && f.total >= f.Total || f.PerPeer > 0 && f.byPeer[peer] >= f.PerPeer {
		return false
	}
	f.total++
	f.byPeer[peer]++
	f.wg.Add(1)
	metricInFlight.Inc()
	return true
}

// Release gives back a place Acquire took.
func (f *InFlight) Release(peer string) {
	f.mu.Lock()
	f.total--
	if f.byPeer[peer]--; f.byPeer[peer] == 0 {
		delete(f.byPeer, peer)
	}
	f.mu.Unlock()
	metricInFlight.Dec()
	f.wg.Done()
}

// Count is the number of exchanges in flight.
func (f *InFlight) Count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.total
}

// Wait returns once every exchange in flight has ended, or done is
// closed, whichever is first, and reports whether they all ended.
func (f *InFlight) Wait(done <-chan struct{}) bool {
	ended := make(chan struct{})
	go func() {
		f.wg.Wait()
		close(ended)
	}()
	select {
	case <-ended:
		return true
	case <-done:
		return false
	}
}
