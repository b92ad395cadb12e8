package deadline

import (
	"testing"
	"time"
)

func TestDue(t *testing.T) {
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	const slack = time.Second
	for _, tc := range []struct {
		name      string
		set, want time.Time
		due       bool
	}{
		{"same", at, at, false},
		{"wanted a little later", at, at.Add(slack - time.Nanosecond), false},
		{"wanted a slack later", at, at.Add(slack), true},
		{"wanted earlier", at, at.Add(-time.Nanosecond), true},
		{"none set", time.Time{}, at, true},
		{"none wanted", at, time.Time{}, true},
		{"none set, none wanted", time.Time{}, time.Time{}, false},
	} {
		if got := Due(tc.set, tc.want, slack); got != tc.due {
			t.Errorf("%s: Due = %v, want %v", tc.name, got, tc.due)
		}
	}
}
