// Package yield says when the broker thread should pass through the Go scheduler.
//
// Mosquitto calls the plugin on its own thread, from C, and those calls never go through the Go
// scheduler: the P (the Go runtime's processor) the thread holds between calls keeps the scheduling
// count it had at the first call. The runtime's sysmon takes a P whose count has not moved for 10 ms
// to be running one goroutine too long; when its thread is back in C, sysmon takes the P away, at
// every one of its rounds, and a round that takes a P keeps sysmon waking every 20 µs instead of
// backing off to 10 ms. Under a connect load (warm cache, Mosquitto 2.1.2, 2 CPUs) that was 2300
// wake-ups a second, about 1.8 µs of broker CPU per connect, more than the plugin's own decisions.
// A pass through the scheduler (runtime.Gosched) moves the count: one every few milliseconds keeps
// sysmon backing off, measured at about 100 wake-ups a second, for two thread switches each.
package yield

import "time"

// every is under the runtime's 10 ms, so that a P in steady use is never seen as stuck.
const every = 8 * time.Millisecond

// Pacer says when the next pass is due. The zero Pacer is due at once. Not safe for concurrent use:
// it belongs to the broker thread.
type Pacer struct{ last time.Time }

// Due says whether a pass is due at now, and if so counts it as made.
func (p *Pacer) Due(now time.Time) bool {
	if !p.last.IsZero() && now.Sub(p.last) < every {
		return false
	}
	p.last = now
	return true
}
