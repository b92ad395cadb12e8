// Package loglimit keeps log lines that can happen for every packet from
// flooding the log.
package loglimit

import (
	"sync"
	"time"
)

// Limiter lets a log line through at most once per key per interval,
// so that what can happen for every packet (an attack's authentication
// failures, packets rerouted past a dead connector) does not flood the
// log. Keys must come from a bounded set: peer names, upstream addresses.
type Limiter struct {
	Interval time.Duration

	mu   sync.Mutex
	last map[string]time.Time
}

// Allow reports whether a line for key may be written at now, and if so
// counts it as written.
func (l *Limiter) Allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = make(map[string]time.Time)
	}
	if t, ok := l.last[key]; ok && now.Sub(t) < l.Interval {
		return false
	}
	l.last[key] = now
	return true
}
