package main

import (
	"strings"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(i))
	}
	for _, c := range []struct{ p, want int }{{50, 100}, {99, 198}, {100, 200}, {1, 2}} {
		if got := percentile(d, c.p); got != time.Duration(c.want) {
			t.Errorf("p%d of 1..200 = %d, want %d", c.p, got, c.want)
		}
	}
	if got := percentile(d[:1], 99); got != 1 {
		t.Errorf("p99 of one value = %d", got)
	}
}

func TestWakeNoteSubtractsPerToken(t *testing.T) {
	t0 := time.Now()
	written := map[string]time.Time{"a": t0, "b": t0.Add(time.Second)}
	answers := []answer{
		{password: "a", at: t0.Add(2 * time.Millisecond)},
		{password: "b", at: t0.Add(time.Second + 40*time.Millisecond)},
		{password: "unrecorded", at: t0.Add(time.Hour)},
	}
	got := wakeNote(answers, written)
	if !strings.Contains(got, "p50 2.0 ms") || !strings.Contains(got, "p99 40 ms") {
		t.Errorf("wakeNote = %q, want p50 2.0 ms and p99 40 ms", got)
	}
}
