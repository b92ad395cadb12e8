package backoff

import (
	"testing"
	"time"
)

func TestWaitGrowsToItsCap(t *testing.T) {
	s := Schedule{First: 100 * time.Millisecond, Max: time.Second}
	now := time.Now()
	far := now.Add(time.Hour)
	for n, ceiling := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		ceiling *= time.Millisecond
		for range 200 {
			w, ok := s.Wait(n, now, far)
			if !ok || w < 0 || w > ceiling {
				t.Fatalf("retry %d: waits %v (%v), want up to %v", n, w, ok, ceiling)
			}
		}
	}
	if w, ok := s.Wait(1000, now, far); !ok || w > time.Second {
		t.Errorf("retry 1000: %v, %v; want at most the cap", w, ok)
	}
}

func TestWaitStopsAtTheDeadline(t *testing.T) {
	s := Schedule{First: time.Second, Max: time.Second}
	now := time.Now()
	if _, ok := s.Wait(0, now, now); ok {
		t.Error("a retry at the deadline")
	}
	late := 0
	for range 200 {
		if w, ok := s.Wait(0, now, now.Add(500*time.Millisecond)); ok && w >= 500*time.Millisecond {
			late++
		}
	}
	if late > 0 {
		t.Errorf("%d retries would start at or past the deadline", late)
	}
}
