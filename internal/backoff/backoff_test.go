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
	s := Schedule{First: time.Second, Max: time.Second, Last: 100 * time.Millisecond}
	now := time.Now()
	for _, left := range []time.Duration{0, 50 * time.Millisecond, 100 * time.Millisecond} {
		if w, ok := s.Wait(0, now, now.Add(left)); ok {
			t.Errorf("%v left, Last 100ms: a retry after %v", left, w)
		}
	}
	cut := 0
	for range 200 {
		w, ok := s.Wait(0, now, now.Add(500*time.Millisecond))
		if !ok || w > 400*time.Millisecond {
			t.Fatalf("500ms left: %v, %v; want a retry by 400ms, leaving Last", w, ok)
		}
		if w == 400*time.Millisecond {
			cut++
		}
	}
	// Draws up to 1s, 60% of them past the latest start: cut to it, not
	// given up on.
	if cut == 0 {
		t.Error("no draw was cut to the latest start")
	}
}
