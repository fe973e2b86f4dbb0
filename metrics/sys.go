package metrics

import (
	"strconv"
	"sync"
	"time"
)

// SysBase is where an instance publishes its $SYS topics, as Mosquitto's own example plugins publish
// theirs under $SYS/broker/plugin/NAME/.
const SysBase = "$SYS/broker/plugin/oauth2"

// prefixes are the $SYS prefixes taken by the instances in this process, by number. It is the one
// piece of state the instances share, as they share the broker's topic tree: two instances publishing
// the same topics would overwrite each other's retained values.
var prefixes struct {
	sync.Mutex
	taken map[int]bool
}

// claimPrefix gives an instance its $SYS prefix: SysBase for the first one loaded, SysBase/2 for the
// second, and so on, in the order of mosquitto.conf (the lowest number free, if one was released).
func claimPrefix() (string, int) {
	prefixes.Lock()
	defer prefixes.Unlock()
	if prefixes.taken == nil {
		prefixes.taken = make(map[int]bool)
	}
	n := 1
	for prefixes.taken[n] {
		n++
	}
	prefixes.taken[n] = true
	if n == 1 {
		return SysBase, n
	}
	return SysBase + "/" + strconv.Itoa(n), n
}

// SysTree publishes one instance's counters under its $SYS prefix every interval, as Mosquitto does
// its own $SYS topics: retained, so that a new subscriber gets the latest values at once, and only
// those that changed since the last publication. Its methods other than Prefix run on the broker
// thread.
type SysTree struct {
	prefix   string
	n        int
	interval time.Duration
	next     time.Time
	last     map[string]string // topic to the payload last published
}

// NewSysTree claims a $SYS prefix for an instance that publishes every interval. The first
// publication is due at once.
func NewSysTree(interval time.Duration) *SysTree {
	prefix, n := claimPrefix()
	return &SysTree{prefix: prefix, n: n, interval: interval, last: make(map[string]string)}
}

// Prefix is the topic the instance's counters are published under.
func (t *SysTree) Prefix() string { return t.prefix }

// Publish publishes, when a publication is due at now, the values of read that changed since the
// last one, with publish(topic, payload).
func (t *SysTree) Publish(now time.Time, read func() Snapshot, publish func(topic, payload string)) {
	if now.Before(t.next) {
		return
	}
	t.next = now.Add(t.interval)
	for _, v := range sys(samples(read())) {
		topic := t.prefix + "/" + v.topic
		if t.last[topic] == v.payload {
			continue
		}
		t.last[topic] = v.payload
		publish(topic, v.payload)
	}
}

// Close gives the prefix back.
func (t *SysTree) Close() {
	prefixes.Lock()
	defer prefixes.Unlock()
	delete(prefixes.taken, t.n)
}
