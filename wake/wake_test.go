package wake

import (
	"sync/atomic"
	"testing"
	"time"
)

// thread stands in for the broker thread: signals count the wake-ups, and a tick runs after the
// signal the test chooses, as when earlier signals landed before the thread entered its wait.
type thread struct {
	signals atomic.Int32
	tickAt  int32 // the signal whose wake-up runs the tick; 0: never
	pending atomic.Bool
}

func (th *thread) signal() {
	n := th.signals.Add(1)
	if n == th.tickAt {
		th.pending.Store(false)
	}
}

func (th *thread) ticked() bool { return !th.pending.Load() }

func TestAlarm(t *testing.T) {
	cases := []struct {
		name   string
		tickAt int32
		wait   time.Duration
		// the signals sent, and whether the alarm must still be signalling at the end
		min, max int32
	}{
		{"the first signal wakes it", 1, 50 * time.Millisecond, 1, 1},
		{"the first signal is lost: the retry after 1 ms wakes it", 2, 50 * time.Millisecond, 2, 2},
		{"four lost: retries at 1, 2, 4, 8 ms", 5, 100 * time.Millisecond, 5, 5},
		// At 0, then 1, 3, 7, 15, 31, 63 and 127 ms, then every 64 ms: 12 within 400 ms on time, fewer
		// when the timers run late; never more.
		{"never ticks: it keeps signalling, at most every 64 ms", 0, 400 * time.Millisecond, 9, 12},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			th := &thread{tickAt: c.tickAt}
			a := New(th.signal, th.ticked)
			defer a.Close()
			th.pending.Store(true)
			a.Ring()
			time.Sleep(c.wait)
			if n := th.signals.Load(); n < c.min || n > c.max {
				t.Fatalf("%d signals in %v, want %d to %d", n, c.wait, c.min, c.max)
			}
		})
	}
}

// Ring is called from the goroutines that produce work; it must never wait for the signal.
func TestRingNeverBlocks(t *testing.T) {
	slow := func() { time.Sleep(10 * time.Millisecond) }
	a := New(slow, func() bool { return true })
	defer a.Close()
	start := time.Now()
	for range 1000 {
		a.Ring()
	}
	if d := time.Since(start); d > 5*time.Millisecond {
		t.Fatalf("1000 rings took %v with a 10 ms signal", d)
	}
}

func TestClose(t *testing.T) {
	th := &thread{}
	a := New(th.signal, th.ticked)
	th.pending.Store(true)
	a.Ring()
	time.Sleep(10 * time.Millisecond)
	a.Close()
	a.Close() // twice is fine
	n := th.signals.Load()
	time.Sleep(150 * time.Millisecond)
	if m := th.signals.Load(); m != n {
		t.Fatalf("%d signals after Close, want none", m-n)
	}
	a.Ring() // after Close: nothing, and no block
}

// A ring that comes while the alarm is still retrying an earlier one (whose tick ran, but was followed
// by new work at once) is served at once, not at the next retry, which may be 64 ms away.
func TestRingWhileRetryingIsServedAtOnce(t *testing.T) {
	th := &thread{}
	a := New(th.signal, th.ticked)
	defer a.Close()
	th.pending.Store(true)
	a.Ring()
	time.Sleep(200 * time.Millisecond) // retries are 64 ms apart by now
	before := th.signals.Load()
	a.Ring()
	time.Sleep(10 * time.Millisecond)
	if th.signals.Load() == before {
		t.Fatal("no signal within 10 ms of a new ring")
	}
}
