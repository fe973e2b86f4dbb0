package yield

import (
	"testing"
	"time"
)

func TestPacer(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	var p Pacer
	for _, step := range []struct {
		at   time.Duration // since t0
		want bool
	}{
		{0, true}, // the first call
		{time.Millisecond, false},
		{Every - time.Nanosecond, false},
		{Every, true}, // counted from the last pass
		{Every + time.Millisecond, false},
		{3 * Every, true}, // after a quiet spell, at once
		{3*Every + Every/2, false},
		{2 * Every, false}, // a clock that steps back waits for it to catch up
		{4 * Every, true},
	} {
		if got := p.Due(t0.Add(step.at)); got != step.want {
			t.Errorf("Due at %v = %v, want %v", step.at, got, step.want)
		}
	}
}
