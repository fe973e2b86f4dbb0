// Package wake makes Mosquitto's broker thread run the plugin's tick soon, from any goroutine.
//
// Mosquitto runs a plugin's tick each time its event loop turns: on socket activity, and when its wait
// times out (every 100 ms in a build with websockets, such as Debian's; in a build without, after as
// long as a day on an idle broker). Work that goroutines produce for the broker thread (a delayed
// check's answer, a lease that ends, a re-check's outcome) is carried out at the next tick, so without
// a wake-up it waits for that timeout.
//
// The plugin wakes the thread with a signal whose handler does nothing: the thread's epoll_wait
// returns EINTR and the loop turns. No listener, connection or credential is involved, so it works
// whatever the listeners are (TLS only, websockets, another address, max_keepalive, max_connections).
// A signal can arrive just before the thread enters its wait, after the tick that would have seen the
// work; the wait would then sleep its whole timeout. So an Alarm signals again, at growing intervals,
// until a tick has run.
package wake

import (
	"sync"
	"time"
)

// Intervals between the signals of one ring, while no tick has run: the first again after 1 ms (the
// window it covers lasts microseconds), then doubling up to every 64 ms.
const (
	firstRetry = time.Millisecond
	maxRetry   = 64 * time.Millisecond
)

// Alarm wakes the broker thread. Its methods are safe for concurrent use.
type Alarm struct {
	signal func()
	ticked func() bool
	rings  chan struct{}
	stop   chan struct{}
	once   sync.Once
}

// New starts an alarm. signal interrupts the broker thread's wait; ticked reports whether a tick has
// run since the last Ring.
func New(signal func(), ticked func() bool) *Alarm {
	a := &Alarm{signal: signal, ticked: ticked, rings: make(chan struct{}, 1), stop: make(chan struct{})}
	go a.run()
	return a
}

// Ring asks for a tick. It never blocks: rings that come while one is being served are one ring.
func (a *Alarm) Ring() {
	select {
	case a.rings <- struct{}{}:
	default:
	}
}

// Close stops the alarm's goroutine; later rings do nothing.
func (a *Alarm) Close() { a.once.Do(func() { close(a.stop) }) }

func (a *Alarm) run() {
	t := time.NewTimer(time.Hour)
	t.Stop()
	var retry time.Duration // until the next signal when no tick has run; 0 while nothing is owed
	for {
		var retried <-chan time.Time
		if retry > 0 {
			t.Reset(retry)
			retried = t.C
		}
		select {
		case <-a.stop:
			return
		case <-a.rings:
			// A ring while retrying means a tick ran since the previous ring (a ring is only passed
			// on when none is outstanding): it starts over.
			t.Stop()
			a.signal()
			retry = firstRetry
		case <-retried:
			if a.ticked() {
				retry = 0
				continue
			}
			a.signal()
			retry = min(2*retry, maxRetry)
		}
	}
}
