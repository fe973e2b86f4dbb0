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
		{every - time.Nanosecond, false},
		{every, true}, // counted from the last pass
		{every + time.Millisecond, false},
		{3 * every, true}, // after a quiet spell, at once
		{3*every + every/2, false},
		{2 * every, false}, // a clock that steps back waits for it to catch up
		{4 * every, true},
	} {
		if got := p.Due(t0.Add(step.at)); got != step.want {
			t.Errorf("Due at %v = %v, want %v", step.at, got, step.want)
		}
	}
}
